// The page at "/" (templates/index.html): a room built on client.js.
// Sign-in: a bare user id in development mode; a signed-in Django user gets a
// token from POST /api/token/session/; anyone else signs in with the form
// (POST /api/token/, refreshed through /api/token/refresh/ on 4401).
import { CLOSE_POLICY, PresenceClient } from "./client.js";

const config = JSON.parse(document.getElementById("page-config").textContent);
const $ = (id) => document.getElementById(id);
const WORLD = 10; // metres from the centre to the map's edge
const STEP = 0.5; // metres per arrow key press
const ROOMS_EVERY_MS = 5000;
const RAW_LOG_LINES = 200;
const ADVICE = { stop: "stop", reconnect: "reconnect", refresh: "get a new token", wait: "reconnect later" };
const canvas = $("world");
const ctx = canvas.getContext("2d");

/** @type {PresenceClient|null} */
let client = null;
let countdown = null;
let refreshToken = "";
let spawned = 0;

// --- helpers ---------------------------------------------------------------
const round = (v) => Math.round(v * 100) / 100;
function hash(text) {
  let h = 0x811c9dc5;
  for (const ch of text) h = Math.imul(h ^ ch.charCodeAt(0), 0x01000193) >>> 0;
  return h;
}
const PALETTE = ["#2563eb", "#dc2626", "#16a34a", "#9333ea", "#ea580c", "#0891b2", "#db2777", "#65a30d", "#4f46e5", "#b45309"];
const colour = (id) => PALETTE[hash(id) % PALETTE.length];
function spawnPoint(id) { // a spot on a 4 m ring, so newcomers do not stack at the origin
  const angle = ((hash(id) % 16) * Math.PI) / 8;
  return [Math.round(8 * Math.cos(angle)) / 2, Math.round(8 * Math.sin(angle)) / 2];
}
function el(tag, className, text) { // text goes in as text, never as markup
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}
function logLine(kind, who, text) {
  const log = $("chat-log");
  const li = el("li", kind);
  if (who) li.append(el("span", "who", who));
  li.append(document.createTextNode(text));
  const atBottom = log.scrollTop + log.clientHeight >= log.scrollHeight - 4;
  log.append(li);
  while (log.children.length > 500) log.firstChild.remove();
  if (atBottom) log.scrollTop = log.scrollHeight;
  return li;
}
function rawLog(direction, message) {
  const log = $("raw-log");
  const li = el("li", "", `${direction === "in" ? "\u2190" : "\u2192"} ${JSON.stringify(message)}`);
  li.dataset.direction = direction;
  log.append(li);
  while (log.children.length > RAW_LOG_LINES) log.firstChild.remove();
}
function setStatus(state, text, code) {
  const status = $("status");
  status.dataset.state = state;
  status.textContent = text;
  if (code === undefined) delete status.dataset.closeCode;
  else status.dataset.closeCode = String(code);
}
async function postJSON(url, body, headers = {}) {
  const response = await fetch(url, {
    method: "POST",
    credentials: "same-origin",
    headers: { "content-type": "application/json", ...headers },
    body: JSON.stringify(body),
  });
  const data = await response.json().catch(() => ({}));
  if (!response.ok) {
    const error = new Error(data.detail || `${url} answered ${response.status}`);
    // A refused sign-in will be refused again: the client stops instead of retrying.
    error.permanent = [400, 401, 403].includes(response.status);
    throw error;
  }
  return data;
}

// --- sign-in ----------------------------------------------------------------
const mode = config.username ? "session" : config.devAuth ? "dev" : "login";
$(`auth-${mode}`).hidden = false;
$("signed-in-as").textContent = config.username;

/** How this page gets its credentials: { userId } or { token: async () => string }. */
function credentials(room) {
  if (mode === "dev") return { userId: $("user").value.trim() };
  if (mode === "session") {
    return { token: async () => (await postJSON("/api/token/session/", { room }, { "X-CSRFToken": config.csrfToken })).access };
  }
  let first = true;
  return {
    token: async () => {
      if (first) {
        first = false;
        const pair = await postJSON("/api/token/", { username: $("username").value.trim(), password: $("password").value });
        refreshToken = pair.refresh;
        $("password").value = "";
        return pair.access;
      }
      return (await postJSON("/api/token/refresh/", { refresh: refreshToken })).access;
    },
  };
}

// --- rendering ---------------------------------------------------------------
function render() {
  const room = client?.room;
  const me = room?.me || "";
  const host = room?.host || "";
  $("me").textContent = me || "\u2014";
  $("host").textContent = host && room ? `${room.nameOf(host)} (${host})` : "\u2014";
  const list = $("members");
  list.replaceChildren();
  for (const [id, m] of room?.members || []) {
    const li = el("li");
    Object.assign(li.dataset, {
      clientId: id, name: m.displayName, x: String(round(m.position.x)), z: String(round(m.position.z)),
      host: String(id === host), me: String(id === me), muted: String(m.muted),
    });
    const dot = el("span", "dot");
    dot.style.background = colour(id);
    li.append(dot, el("span", "member-name", m.displayName));
    if (id === host) li.append(el("span", "badge host", "host"));
    if (m.muted) li.append(el("span", "badge muted", "muted"));
    if (id === me) li.append(el("span", "badge", "you"));
    li.append(el("span", "pos", `x ${m.position.x.toFixed(1)}  z ${m.position.z.toFixed(1)}`));
    list.append(li);
  }
  const entities = $("entities");
  entities.replaceChildren();
  for (const [id, e] of room?.entities || []) {
    const li = el("li");
    Object.assign(li.dataset, { entityId: id, owner: e.ownerId, template: e.templateId, x: String(round(e.position.x)), z: String(round(e.position.z)) });
    li.append(el("span", "", `${e.templateId} ${id}`), el("span", "pos", `by ${room.nameOf(e.ownerId)}`));
    if (e.ownerId === me) {
      const remove = el("button", "secondary despawn", "remove");
      remove.type = "button";
      remove.addEventListener("click", () => client.despawn(id).catch(showError).finally(render));
      li.append(remove);
    }
    entities.append(li);
  }
  draw();
}

function draw() {
  const dpr = window.devicePixelRatio || 1;
  const size = canvas.clientWidth || 366;
  if (canvas.width !== size * dpr) { canvas.width = size * dpr; canvas.height = size * dpr; }
  ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
  ctx.clearRect(0, 0, size, size);
  const scale = size / (2 * WORLD);
  const px = (v) => (v + WORLD) * scale;
  ctx.strokeStyle = "#e6e9ee";
  ctx.lineWidth = 1;
  for (let m = -WORLD; m <= WORLD; m += 2) {
    const p = Math.round(px(m)) + 0.5;
    ctx.beginPath(); ctx.moveTo(p, 0); ctx.lineTo(p, size); ctx.stroke();
    ctx.beginPath(); ctx.moveTo(0, p); ctx.lineTo(size, p); ctx.stroke();
  }
  const room = client?.room;
  if (!room) return;
  ctx.font = "12px system-ui, sans-serif";
  ctx.textAlign = "center";
  for (const [, e] of room.entities) {
    ctx.fillStyle = colour(e.ownerId);
    ctx.globalAlpha = 0.55;
    ctx.fillRect(px(e.position.x) - 7, px(e.position.z) - 7, 14, 14);
    ctx.globalAlpha = 1;
  }
  for (const [id, m] of room.members) {
    const x = px(m.position.x);
    const z = px(m.position.z);
    if (id === room.host) {
      ctx.beginPath(); ctx.arc(x, z, 13, 0, 2 * Math.PI);
      ctx.strokeStyle = "#d97706"; ctx.lineWidth = 3; ctx.stroke();
    }
    ctx.beginPath(); ctx.arc(x, z, 8, 0, 2 * Math.PI);
    ctx.fillStyle = colour(id); ctx.fill();
    if (id === room.me) { ctx.strokeStyle = "#1d2330"; ctx.lineWidth = 2; ctx.stroke(); }
    ctx.fillStyle = "#1d2330";
    ctx.fillText(id === room.me ? `${m.displayName} (you)` : m.displayName, x, z - 17);
  }
}

function showError(error) {
  const text = error.code ? `${error.code}: ${error.message}` : String(error.message || error);
  $("error").textContent = `Error ${text}`;
  logLine("error", "", `error ${text}`);
}

function onState(s) {
  clearInterval(countdown);
  // Chat typed while the connection is down is kept and sent on reconnect.
  $("chat-input").disabled = $("chat-send").disabled = s.state === "closed";
  $("spawn").disabled = s.state !== "open";
  if (s.state === "open") {
    setStatus("open", s.resumed ? `resumed in ${client.room.id}` : `joined ${client.room.id}`);
    return;
  }
  const policy = CLOSE_POLICY[s.code] || { action: "reconnect", meaning: s.meaning };
  const why = s.code ? `closed ${s.code}: ${policy.meaning || s.meaning}` : "";
  if (s.state === "closed") {
    setStatus("closed", `${why || "closed"} (client should ${ADVICE[policy.action]})`, s.code);
    $("join").disabled = false;
    $("leave").disabled = true;
    if (s.code && s.code !== 1000) logLine("system", "", `disconnected (${why})`);
    return;
  }
  if (s.reconnectInMs == null) {
    setStatus(s.state, s.state === "resuming" ? "resuming\u2026" : "connecting\u2026", s.code);
    return;
  }
  const until = Date.now() + s.reconnectInMs;
  const tick = () => {
    const left = Math.max(0, Math.ceil((until - Date.now()) / 1000));
    setStatus(s.state, `${why}; ${s.state === "resuming" ? "resuming" : "reconnecting"} in ${left} s`, s.code);
  };
  tick();
  countdown = setInterval(tick, 250);
  logLine("system", "", `connection lost (${why}); ${s.state === "resuming" ? "resuming" : "reconnecting"}`);
}

// --- connection ----------------------------------------------------------------
function join(event) {
  event.preventDefault();
  if (client && client.state !== "closed") return;
  const room = $("room").value.trim();
  const displayName = $("name").value.trim() || $("user").value.trim() || config.username;
  $("error").textContent = "";
  $("join").disabled = true;
  $("leave").disabled = false;
  client = new PresenceClient({ room, displayName, ...credentials(room) });
  window.presencePage.client = client;
  client.on("state", onState);
  client.on("message", ({ direction, message }) => rawLog(direction, message));
  client.on("hello", (h) => {
    $("error").textContent = "";
    if (h.resumed) logLine("system notice", "", "resumed: nothing was missed");
    else if (h.resync) logLine("system notice", "", `reconnected as a new session in ${h.roomId}`);
    else logLine("system", "", `joined ${h.roomId} as ${displayName}`);
    if (!h.resumed) client.move({ x: spawnPoint(h.clientId)[0], y: 0, z: spawnPoint(h.clientId)[1] });
    refreshRooms();
    render();
  });
  client.on("join", ({ member }) => { if (member.clientId !== client.room.me) logLine("system", "", `${member.displayName} joined`); render(); });
  client.on("leave", ({ clientId, member }) => { logLine("system", "", `${member?.displayName || clientId} left`); render(); });
  client.on("update", render);
  client.on("host", ({ clientId }) => { logLine("system", "", `${client.room.nameOf(clientId)} is now the host`); render(); });
  client.on("pose", render);
  client.on("spawn", (e) => { logLine("system", "", `${client.room.nameOf(e.ownerId)} spawned ${e.templateId} ${e.id}`); render(); });
  client.on("entityUpdate", render);
  client.on("despawn", render);
  client.on("muted", ({ clientId, muted }) => { logLine("system", "", `${client.room.nameOf(clientId)} was ${muted ? "muted" : "unmuted"}`); render(); });
  client.on("kicked", ({ clientId }) => logLine("system", "", `${client.room.nameOf(clientId)} was kicked`));
  client.on("locked", ({ locked }) => logLine("system", "", locked ? "room locked" : "room unlocked"));
  client.on("chat", onChat);
  client.on("ack", ({ messageId }) => {
    const line = document.querySelector(`#chat-log li[data-message-id="${CSS.escape(messageId)}"]`);
    if (line) line.dataset.acked = "true";
  });
  client.on("error", showError);
  client.on("rtt", (ms) => { $("rtt").textContent = `${ms} ms`; });
  client.connect();
}

function onChat(line) {
  const kind = line.type && line.type !== "NORMAL" ? ` (${line.type.toLowerCase()})` : "";
  const li = logLine(line.mine ? "chat mine" : "chat", `${line.name}${kind}:`, line.message);
  li.dataset.from = line.fromClientId;
  if (line.history) li.dataset.history = "true";
  if (line.mine) Object.assign(li.dataset, { messageId: line.messageId, acked: String(Boolean(line.acked)) });
}

function leave() {
  if (client) client.close();
}

function sendChat(event) {
  event.preventDefault();
  const input = $("chat-input");
  const text = input.value.trim();
  if (!text || !client) return;
  client.chat(text).catch(() => {}); // a refusal arrives as an "error" event too
  input.value = "";
}

function spawnHere() {
  const me = client?.room.members.get(client.room.me);
  if (!me) return;
  const id = `crate-${client.room.me.slice(-6)}-${++spawned}`;
  const { x, z } = me.position;
  client.spawn(id, "crate", { color: colour(client.room.me) }).then(() => client.moveEntity(id, { x, y: 0, z })).catch(() => {});
  const entity = client.room.entities.get(id);
  if (entity) entity.position = { x, y: 0, z };
  render();
}

// --- moving ----------------------------------------------------------------------
function moveTo(x, z) {
  const me = client?.room.members.get(client.room.me);
  if (!me || client.state !== "open") return;
  client.move({ x: round(Math.max(-WORLD, Math.min(WORLD, x))), y: 0, z: round(Math.max(-WORLD, Math.min(WORLD, z))) });
  render();
}
function pointerToWorld(e) {
  const r = canvas.getBoundingClientRect();
  return [((e.clientX - r.left) / r.width) * 2 * WORLD - WORLD, ((e.clientY - r.top) / r.height) * 2 * WORLD - WORLD];
}
const ARROWS = { ArrowLeft: [-STEP, 0], ArrowRight: [STEP, 0], ArrowUp: [0, -STEP], ArrowDown: [0, STEP] };
canvas.addEventListener("keydown", (e) => {
  const step = ARROWS[e.key];
  const me = client?.room.members.get(client.room.me);
  if (!step || !me) return;
  e.preventDefault();
  moveTo(me.position.x + step[0], me.position.z + step[1]);
});
canvas.addEventListener("pointerdown", (e) => {
  canvas.focus();
  if (!client?.room.members.has(client.room.me)) return;
  canvas.setPointerCapture(e.pointerId);
  moveTo(...pointerToWorld(e));
});
canvas.addEventListener("pointermove", (e) => {
  if (canvas.hasPointerCapture(e.pointerId)) moveTo(...pointerToWorld(e));
});

// --- the room list ---------------------------------------------------------------
async function refreshRooms() {
  try {
    const response = await fetch("/api/public/rooms/", { credentials: "same-origin" });
    if (!response.ok) return;
    const { rooms } = await response.json();
    const list = $("rooms");
    list.replaceChildren(...rooms.map(({ room_id: id, members }) => {
      const li = el("li");
      Object.assign(li.dataset, { room: id, members: String(members) });
      const button = el("button", "", id);
      button.type = "button";
      button.append(el("span", "count", String(members)));
      button.addEventListener("click", () => { $("room").value = id; });
      li.append(button);
      return li;
    }));
  } catch {
    // the list is a convenience: a failed poll is retried on the next one
  }
}

// --- start -------------------------------------------------------------------------
window.presencePage = { client: null, refreshRooms };
const params = new URLSearchParams(location.search);
const guest = Math.random().toString(36).slice(2, 7);
$("room").value = params.get("room") || $("room").value;
$("user").value = params.get("user") || `user-${guest}`;
$("name").value = params.get("name") || (mode === "session" ? config.username : `Guest ${guest}`);
$("join-form").addEventListener("submit", join);
$("leave").addEventListener("click", leave);
$("chat-form").addEventListener("submit", sendChat);
$("spawn").addEventListener("click", spawnHere);
window.addEventListener("resize", draw);
refreshRooms();
setInterval(refreshRooms, ROOMS_EVERY_MS);
render();
