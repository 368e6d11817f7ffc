// GraphWiz presence client: one ES module for browsers and Node 20+.
//
//   import { PresenceClient } from "/static/presence/client.js";
//   const client = new PresenceClient({ room: "lobby", token: async () => myToken() });
//   client.on("chat", (line) => console.log(line.name, line.message));
//   client.connect();
//   client.chat("hello");
//
// It implements docs/PROTOCOL.md: binary protobuf (protobufjs, vendored) or
// proto3 JSON, ClientHello with the `batch` and `ack` capabilities, a room
// model (members with their last pose, entities, host, chat), cumulative acks
// of reliable messages (section 5), resume with session_id + last_seq and the
// re-send of its own unanswered messages with the same message_id (section 6),
// and reconnection by the close-code table of section 7, with exponential
// backoff and jitter. Nothing here touches the DOM.
import "./vendor/protobuf-light-8.8.1.min.js";
import schema from "./schema.js";

/** @type {any} */
const protobuf = /** @type {any} */ (globalThis).protobuf;
const Message = protobuf.Root.fromJSON(schema).lookupType("graphwiz.core.Message");
// Decoded messages take the proto3 JSON shape (PROTOCOL.md section 2), with
// 64-bit integers as numbers (seq and milliseconds stay far below 2**53).
const AS_OBJECT = { longs: Number, enums: String, bytes: String };
const AS_JSON = { longs: String, enums: String, bytes: String };

export const SUBPROTOCOL = { proto: "graphwiz.proto.v1", json: "graphwiz.json.v1" };
export const CAPABILITIES = ["batch", "ack"];
export const MAX_FRAME_BYTES = 64 * 1024; // PROTOCOL.md section 8

/** @typedef {"idle"|"connecting"|"open"|"resuming"|"closed"} ConnectionState */
/**
 * What the client does after a close (PROTOCOL.md section 7).
 * @typedef {object} CloseAction
 * @property {"stop"|"reconnect"|"refresh"|"wait"} action  refresh: get a new token first; wait: retry_after_ms
 * @property {boolean} resume  whether to ask for the session again (session_id + last_seq)
 * @property {string} meaning
 */

/** @type {Record<number, CloseAction>} */
export const CLOSE_POLICY = {
  1000: { action: "stop", resume: false, meaning: "normal" },
  4000: { action: "reconnect", resume: true, meaning: "server going away" },
  4003: { action: "stop", resume: false, meaning: "unsupported data" },
  4007: { action: "stop", resume: false, meaning: "invalid messages" },
  4008: { action: "wait", resume: true, meaning: "rate limit exceeded" },
  4009: { action: "reconnect", resume: true, meaning: "slow consumer" },
  4010: { action: "stop", resume: false, meaning: "session resumed on another connection" },
  4011: { action: "reconnect", resume: true, meaning: "internal error" },
  4012: { action: "reconnect", resume: true, meaning: "backend unavailable" },
  4400: { action: "stop", resume: false, meaning: "bad request" },
  4401: { action: "refresh", resume: false, meaning: "unauthorized" },
  4403: { action: "stop", resume: false, meaning: "forbidden" },
  4408: { action: "reconnect", resume: false, meaning: "no credentials in time" },
  4423: { action: "stop", resume: false, meaning: "room locked or full" },
  4429: { action: "wait", resume: true, meaning: "too many connection attempts" },
};
const LOST = { action: "reconnect", resume: true, meaning: "connection lost" };

/**
 * The section 7 decision for a close code; any code not in the table (1005,
 * 1006 for a cut socket, 1001, 1011, ...) means the connection was lost:
 * reconnect with backoff and resume.
 * @param {number} code
 * @returns {CloseAction}
 */
export function closeAction(code) {
  return CLOSE_POLICY[code] || { ...LOST, meaning: code === 1006 ? "connection lost" : `closed ${code}` };
}

/**
 * Exponential backoff with jitter: attempt n waits a random time between half
 * and all of min(maxMs, initialMs * factor**n), so clients cut by one event do
 * not return in step.
 */
export class Backoff {
  /**
   * @param {{initialMs?: number, maxMs?: number, factor?: number, random?: () => number}} [options]
   */
  constructor({ initialMs = 500, maxMs = 30000, factor = 2, random = Math.random } = {}) {
    this.initialMs = initialMs;
    this.maxMs = maxMs;
    this.factor = factor;
    this.random = random;
    this.attempt = 0;
  }

  /** The delay before the next attempt, in ms; counts the attempt. */
  next() {
    const ceiling = Math.min(this.maxMs, this.initialMs * this.factor ** this.attempt);
    this.attempt += 1;
    return Math.round(ceiling / 2 + (this.random() * ceiling) / 2);
  }

  /** A connection succeeded: start from the shortest delay again. */
  reset() {
    this.attempt = 0;
  }
}

// --- encoding --------------------------------------------------------------

/**
 * A message object (proto3 JSON shape) as one frame: bytes, or text for JSON.
 * @param {object} message
 * @param {"proto"|"json"} format
 * @returns {Uint8Array|string}
 */
export function encodeFrame(message, format) {
  const checked = Message.fromObject(message);
  if (format === "json") return JSON.stringify(Message.toObject(checked, AS_JSON));
  return Message.encode(checked).finish();
}

/**
 * One received frame (binary protobuf or proto3 JSON text) as a message object.
 * @param {ArrayBuffer|Uint8Array|string} data
 * @returns {any}
 */
export function decodeFrame(data) {
  if (typeof data === "string") return Message.toObject(Message.fromObject(JSON.parse(data)), AS_OBJECT);
  const bytes = data instanceof Uint8Array ? data : new Uint8Array(data);
  return Message.toObject(Message.decode(bytes), AS_OBJECT);
}

const utf8 = new TextDecoder();
const utf8Encoder = new TextEncoder();
function base64ToText(value) {
  const binary = atob(value);
  const bytes = new Uint8Array(binary.length);
  for (let i = 0; i < binary.length; i++) bytes[i] = binary.charCodeAt(i);
  return utf8.decode(bytes);
}
function textToBase64(text) {
  let binary = "";
  for (const byte of utf8Encoder.encode(text)) binary += String.fromCharCode(byte);
  return btoa(binary);
}
function vec(v) {
  return { x: Number(v?.x) || 0, y: Number(v?.y) || 0, z: Number(v?.z) || 0 };
}
function quat(q) {
  return q ? { x: Number(q.x) || 0, y: Number(q.y) || 0, z: Number(q.z) || 0, w: Number(q.w) || 0 } : null;
}

// --- room model ------------------------------------------------------------

/**
 * @typedef {object} Member
 * @property {string} clientId
 * @property {string} displayName
 * @property {string} avatarUrl
 * @property {{x:number,y:number,z:number}} position  metres; the last pose seen
 * @property {{x:number,y:number,z:number,w:number}|null} rotation
 * @property {boolean} muted
 */
/**
 * @typedef {object} Entity
 * @property {string} id
 * @property {string} templateId
 * @property {string} ownerId
 * @property {Record<string,string>} components  values as text (EntityUpdate bytes decoded as UTF-8)
 * @property {{x:number,y:number,z:number}} position
 * @property {{x:number,y:number,z:number,w:number}|null} rotation
 */
/**
 * @typedef {object} ChatLine
 * @property {string} fromClientId
 * @property {string} name  the sender's display name when it was received
 * @property {string} message
 * @property {number} timestamp  ms since the epoch (0 for an own line not yet stamped)
 * @property {string} type  NORMAL | WHISPER | SHOUT
 * @property {boolean} mine
 * @property {boolean} history  from the room's recent chat in a ServerHello
 * @property {string} [messageId]  own lines: the id the server acknowledges
 * @property {boolean} [acked]  own lines: the server accepted it
 */

/**
 * The room as this client knows it; a UI renders it directly. ``apply``
 * takes one server message and returns the events it causes, as
 * ``[name, detail]`` pairs; it never does I/O.
 */
export class RoomModel {
  /** @param {{chatHistory?: number}} [options] */
  constructor({ chatHistory = 500 } = {}) {
    this.chatHistory = chatHistory;
    this.id = "";
    this.me = "";
    this.host = "";
    this.locked = false;
    /** @type {Map<string, Member>} */
    this.members = new Map();
    /** @type {Map<string, Entity>} */
    this.entities = new Map();
    /** @type {ChatLine[]} */
    this.chat = [];
    this.myPastIds = new Set();
  }

  /** @param {string} clientId @returns {string} */
  nameOf(clientId) {
    return this.members.get(clientId)?.displayName || clientId;
  }

  /** @param {any} player @returns {Member} */
  static member(player) {
    return {
      clientId: player.clientId || "",
      displayName: player.displayName || player.clientId || "",
      avatarUrl: player.avatarUrl || "",
      position: vec(player.position),
      rotation: quat(player.rotation),
      muted: false,
    };
  }

  /**
   * A ServerHello: a fresh session replaces the model from ``initialState``;
   * a resumed one keeps it.
   * @param {any} hello
   * @param {string} displayName  this client's own name
   */
  hello(hello, displayName) {
    /** @type {Array<[string, any]>} */
    const events = [];
    if (hello.resumed) return events;
    if (this.me) this.myPastIds.add(this.me);
    this.id = hello.roomId || this.id;
    this.me = hello.assignedClientId || "";
    this.host = hello.hostClientId || "";
    this.locked = false;
    this.members.clear();
    this.entities.clear();
    const state = hello.initialState || {};
    for (const player of state.players || []) this.members.set(player.clientId, RoomModel.member(player));
    if (!this.members.has(this.me)) {
      this.members.set(this.me, RoomModel.member({ clientId: this.me, displayName }));
    }
    for (const e of state.entities || []) {
      this.entities.set(e.id, {
        id: e.id,
        templateId: e.templateId || "",
        ownerId: e.ownerId || "",
        components: { ...(e.components || {}) },
        position: vec(e.position),
        rotation: quat(e.rotation),
      });
    }
    const seen = new Set(this.chat.map(chatKey));
    const mineSent = new Set(this.chat.filter((l) => l.mine).map((l) => l.message));
    for (const c of state.recentChat || []) {
      const line = this.chatLine(c, true);
      // An own line from an earlier session of this client is already shown as "mine".
      if (this.myPastIds.has(line.fromClientId) && mineSent.has(line.message)) continue;
      if (seen.has(chatKey(line))) continue;
      this.pushChat(line);
      events.push(["chat", line]);
    }
    return events;
  }

  /** @param {any} chat @param {boolean} history @returns {ChatLine} */
  chatLine(chat, history) {
    const from = chat.fromClientId || "";
    return {
      fromClientId: from,
      name: this.nameOf(from),
      message: chat.message || "",
      timestamp: Number(chat.timestamp) || 0,
      type: chat.type || "NORMAL",
      mine: from === this.me,
      history,
    };
  }

  /** @param {ChatLine} line */
  pushChat(line) {
    this.chat.push(line);
    if (this.chat.length > this.chatHistory) this.chat.splice(0, this.chat.length - this.chatHistory);
  }

  /**
   * One server message (not a batch, hello, ack, error or ping) applied.
   * @param {any} msg
   * @returns {Array<[string, any]>}
   */
  apply(msg) {
    const sender = msg.senderId || "";
    if (msg.presenceEvent) return this.presence(msg.type, msg.presenceEvent, sender);
    if (msg.positionUpdate) return this.pose(sender, msg.positionUpdate);
    if (msg.chatMessage) {
      const line = this.chatLine({ ...msg.chatMessage, fromClientId: msg.chatMessage.fromClientId || sender }, false);
      this.pushChat(line);
      return [["chat", line]];
    }
    if (msg.entitySpawn) {
      const s = msg.entitySpawn;
      const entity = {
        id: s.entityId,
        templateId: s.templateId || "",
        ownerId: s.ownerId || sender,
        components: { ...(s.components || {}) },
        position: vec(null),
        rotation: null,
      };
      this.entities.set(entity.id, entity);
      return [["spawn", entity]];
    }
    if (msg.entityUpdate) {
      const u = msg.entityUpdate;
      const entity = this.entities.get(u.entityId);
      const changed = {};
      for (const [k, v] of Object.entries(u.components || {})) changed[k] = base64ToText(v);
      if (entity) Object.assign(entity.components, changed);
      return [["entityUpdate", { entityId: u.entityId, entity, components: changed }]];
    }
    if (msg.entityDespawn) {
      const id = msg.entityDespawn.entityId;
      const entity = this.entities.get(id);
      this.entities.delete(id);
      return [["despawn", { entityId: id, entity }]];
    }
    if (msg.playerKicked) {
      const k = msg.playerKicked;
      return [["kicked", { clientId: k.kickedClientId || "", byClientId: k.kickedByClientId || "", reason: k.reason || "", me: k.kickedClientId === this.me }]];
    }
    if (msg.playerMuted) {
      const m = msg.playerMuted;
      const member = this.members.get(m.mutedClientId);
      if (member) member.muted = Boolean(m.muted);
      return [["muted", { clientId: m.mutedClientId || "", muted: Boolean(m.muted), reason: m.reason || "", me: m.mutedClientId === this.me }]];
    }
    if (msg.roomLocked) {
      const l = msg.roomLocked;
      this.locked = Boolean(l.locked);
      return [["locked", { locked: this.locked, byClientId: l.lockedByClientId || "", reason: l.reason || "" }]];
    }
    return [];
  }

  presence(type, event, sender) {
    /** @type {Array<[string, any]>} */
    const events = [];
    // The envelope's type is always set; proto3 JSON omits eventType JOIN (= 0).
    const kind = { PRESENCE_JOIN: "JOIN", PRESENCE_LEAVE: "LEAVE", PRESENCE_UPDATE: "UPDATE" }[type] || event.eventType || "JOIN";
    const id = event.clientId || sender;
    const data = event.data || {};
    if (kind === "LEAVE") {
      const member = this.members.get(id);
      this.members.delete(id);
      events.push(["leave", { clientId: id, member }]);
    } else if (id) {
      const known = this.members.get(id);
      const member = known || RoomModel.member({ clientId: id });
      if (data.displayName) member.displayName = data.displayName;
      if (data.avatarUrl) member.avatarUrl = data.avatarUrl;
      if (data.position && id !== this.me) member.position = vec(data.position);
      if (data.rotation && id !== this.me) member.rotation = quat(data.rotation);
      this.members.set(id, member);
      if (kind === "JOIN" || !known) events.push(["join", { member }]);
      else if (data.displayName || data.avatarUrl) events.push(["update", { member }]);
    }
    if (data.hostClientId && data.hostClientId !== this.host) {
      const previous = this.host;
      this.host = data.hostClientId;
      events.push(["host", { clientId: this.host, previous }]);
    }
    return events;
  }

  pose(sender, update) {
    const position = vec(update.position);
    const rotation = quat(update.rotation);
    if (update.entityId) {
      const entity = this.entities.get(update.entityId);
      if (entity) {
        entity.position = position;
        if (rotation) entity.rotation = rotation;
      }
    } else {
      const member = this.members.get(sender);
      if (!member || sender === this.me) return [];
      member.position = position;
      if (rotation) member.rotation = rotation;
    }
    return [["pose", { clientId: sender, entityId: update.entityId || "", position, rotation }]];
  }
}

function chatKey(line) {
  return `${line.fromClientId}\u0000${line.timestamp}\u0000${line.message}`;
}

// --- the client ------------------------------------------------------------

const realClock = {
  now: () => Date.now(),
  setTimeout: (fn, ms) => setTimeout(fn, ms),
  clearTimeout: (id) => clearTimeout(id),
};

/**
 * @typedef {object} PresenceClientOptions
 * @property {string} room  the room id: 1-64 chars of [A-Za-z0-9._-]
 * @property {string} [url]  ws(s)://host[:port]; default: the page's own origin
 * @property {string|(() => (string|Promise<string>))} [token]  an access token, or a function
 *   that returns a fresh one; called before the first connect and after every 4401. If it
 *   throws, the client retries with backoff, or stops when the error has ``permanent: true``
 * @property {string} [userId]  development mode only: a bare user id instead of a token
 * @property {string} [displayName]
 * @property {string} [avatarUrl]
 * @property {"proto"|"json"} [format]  binary protobuf (default) or proto3 JSON text frames
 * @property {"hello"|"query"} [tokenIn]  send the token in the first ClientHello (default,
 *   keeps it out of URLs and logs) or as ?auth_token=
 * @property {any} [WebSocket]  the WebSocket class; default globalThis.WebSocket (Node 20: pass `ws`)
 * @property {{now(): number, setTimeout(fn: () => void, ms: number): any, clearTimeout(id: any): void}} [clock]
 * @property {() => number} [random]  in [0, 1); the backoff's jitter
 * @property {{initialMs?: number, maxMs?: number, factor?: number}} [backoff]
 * @property {boolean} [reconnect]  false: never reconnect (default true)
 * @property {number} [ackDelayMs]  how long to gather reliable messages before one Ack (default 100)
 * @property {number} [pingIntervalMs]  RTT pings when the server names no heartbeat (default 10000)
 * @property {number} [poseHz]  at most this many own pose updates per second (default 20)
 * @property {number} [chatHistory]  chat lines kept in room.chat (default 500)
 */

/**
 * A connection to one room that survives cuts. Events (``on(name, fn)``):
 * hello, join, leave, update, host, pose, chat, spawn, entityUpdate, despawn,
 * kicked, muted, locked, error, state, plus ack (an own message accepted),
 * rtt (ms) and message (every frame, ``{direction, message}``, for logs).
 */
export class PresenceClient {
  /** @param {PresenceClientOptions} options */
  constructor(options) {
    if (!options || !options.room) throw new TypeError("PresenceClient needs options.room");
    this.options = options;
    this.format = options.format === "json" ? "json" : "proto";
    this.clock = options.clock || realClock;
    this.WebSocket = options.WebSocket || globalThis.WebSocket;
    if (!this.WebSocket) throw new TypeError("no WebSocket class: pass options.WebSocket (in Node, the `ws` package)");
    this.backoff = new Backoff({ ...(options.backoff || {}), random: options.random || Math.random });
    this.room = new RoomModel({ chatHistory: options.chatHistory });
    /** @type {ConnectionState} */
    this.state = "idle";
    this.sessionId = "";
    this.lastSeq = 0; // the highest reliable seq processed in this session
    this.ackedSeq = 0;
    this.rttMs = null;
    this.displayName = options.displayName || "";
    /** @type {Map<string, {message: any, resolve: Function, reject: Function, sent: boolean}>} */
    this.pending = new Map(); // own reliable messages without an answer, in send order
    this.counter = 0;
    this.idPrefix = Math.random().toString(36).slice(2, 8);
    this.listeners = new Map();
    this.socket = null;
    this.token = typeof options.token === "string" ? options.token : "";
    this.closeCode = 0;
    this.retryAfterMs = 0;
    this.timers = { reconnect: null, ack: null, ping: null, pose: null, watchdog: null };
    this.lastPoseAt = -Infinity;
    this.nextPose = null;
    this.lastHeard = 0;
    this.heartbeatMs = 0;
    this.wantResume = false;
    this.stopped = false;
  }

  // --- events ---------------------------------------------------------------

  /**
   * Listen to ``name``; returns a function that stops listening.
   * @param {string} name @param {(detail: any) => void} fn
   */
  on(name, fn) {
    if (!this.listeners.has(name)) this.listeners.set(name, new Set());
    this.listeners.get(name).add(fn);
    return () => this.off(name, fn);
  }

  /** @param {string} name @param {(detail: any) => void} fn */
  off(name, fn) {
    this.listeners.get(name)?.delete(fn);
  }

  emit(name, detail) {
    for (const fn of [...(this.listeners.get(name) || [])]) {
      try {
        fn(detail);
      } catch (error) {
        console.error(`presence client: a "${name}" listener threw`, error);
      }
    }
  }

  /**
   * The next event ``name`` whose detail passes ``test``, as a promise.
   * @param {string} name @param {(detail: any) => boolean} [test]
   */
  next(name, test = () => true) {
    return new Promise((resolve) => {
      const stop = this.on(name, (detail) => {
        if (test(detail)) {
          stop();
          resolve(detail);
        }
      });
    });
  }

  setState(state, extra = {}) {
    this.state = state;
    this.emit("state", { state, ...extra });
  }

  // --- connection -------------------------------------------------------------

  /** Connect (again); reconnects by itself after a cut until ``close()``. */
  connect() {
    if (this.socket || this.state === "open") return;
    this.stopped = false;
    this.clock.clearTimeout(this.timers.reconnect);
    this.timers.reconnect = null;
    this.open(false).catch((error) => this.fail(error));
  }

  async open(resume) {
    const options = this.options;
    if (!this.token && typeof options.token === "function") this.token = await options.token();
    if (this.state === "closed" && this.stopped) return;
    const query = new URLSearchParams();
    if (options.userId && !this.token) query.set("user_id", options.userId);
    if (this.token && options.tokenIn === "query") query.set("auth_token", this.token);
    if (this.displayName) query.set("display_name", this.displayName);
    if (resume && this.sessionId) {
      query.set("session_id", this.sessionId);
      query.set("last_seq", String(this.lastSeq));
    }
    this.wantResume = Boolean(resume && this.sessionId);
    const url = `${baseUrl(options.url)}/ws/${encodeURIComponent(options.room)}?${query}`;
    this.setState(this.wantResume ? "resuming" : "connecting", { attempt: this.backoff.attempt });
    const socket = new this.WebSocket(url, SUBPROTOCOL[this.format]);
    socket.binaryType = "arraybuffer";
    this.socket = socket;
    this.closeCode = 0;
    this.retryAfterMs = 0;
    socket.onopen = () => {
      if (this.socket !== socket) return;
      this.lastHeard = this.clock.now();
      const hello = { capabilities: CAPABILITIES };
      if (this.displayName) hello.displayName = this.displayName;
      if (options.avatarUrl) hello.avatarUrl = options.avatarUrl;
      if (this.token && options.tokenIn !== "query") hello.authToken = this.token;
      this.send({ clientHello: hello });
    };
    socket.onmessage = (event) => {
      if (this.socket !== socket) return;
      this.lastHeard = this.clock.now();
      let message;
      try {
        message = decodeFrame(typeof event.data === "string" ? event.data : toBytes(event.data));
      } catch (error) {
        this.emit("error", { code: "CLIENT", message: `undecodable frame: ${error.message}`, retryAfterMs: 0, refMessageId: "" });
        return;
      }
      this.receive(message);
    };
    socket.onerror = () => {}; // the close event follows with the code
    socket.onclose = (event) => {
      if (this.socket !== socket) return;
      this.lost(event.code || 1006, event.reason || "");
    };
  }

  // open() failed: the token function threw, or the WebSocket constructor did.
  // An error marked ``permanent`` (e.g. a wrong password) stops, as 4401 would
  // with nothing to refresh; anything else is retried with backoff.
  fail(error) {
    this.socket = null;
    this.emit("error", { code: "CLIENT", message: String(error?.message || error), retryAfterMs: 0, refMessageId: "" });
    if (error?.permanent) {
      this.stopped = true;
      this.stopTimers();
      for (const [, p] of this.pending) p.reject(error);
      this.pending.clear();
      this.setState("closed", { code: 4401, reason: "", meaning: "unauthorized", reconnectInMs: null });
      return;
    }
    this.lost(1006, "");
  }

  /**
   * Leave the room (close 1000): no reconnect. Unanswered messages are
   * rejected.
   */
  close() {
    this.stopped = true;
    const socket = this.socket;
    this.socket = null;
    this.stopTimers();
    this.clock.clearTimeout(this.timers.reconnect);
    if (socket) socket.close(1000, "leave");
    for (const [, p] of this.pending) p.reject(new Error("client closed"));
    this.pending.clear();
    this.setState("closed", { code: 1000, meaning: "normal", reconnectInMs: null });
  }

  /**
   * Drop the socket without a close handshake, as a network cut would (for
   * demos and tests of the resume path): the client reconnects and resumes.
   */
  cut() {
    const socket = this.socket;
    if (!socket) return;
    if (typeof socket.terminate === "function") socket.terminate();
    else {
      this.socket = null;
      socket.close(4000, "cut");
      this.lost(1006, "cut");
    }
  }

  lost(code, reason) {
    this.socket = null;
    this.stopTimers();
    this.closeCode = code;
    if (this.stopped) return;
    for (const [, p] of this.pending) p.sent = false;
    const policy = closeAction(code);
    const detail = { code, reason, meaning: policy.meaning };
    if (policy.action === "stop" || this.options.reconnect === false) {
      this.stopped = true;
      for (const [, p] of this.pending) p.reject(new Error(`closed ${code}: ${policy.meaning}`));
      this.pending.clear();
      this.setState("closed", { ...detail, reconnectInMs: null });
      return;
    }
    let delay = this.backoff.next();
    if (policy.action === "wait" && this.retryAfterMs > 0) delay = this.retryAfterMs;
    if (policy.action === "refresh") {
      if (typeof this.options.token !== "function") {
        this.stopped = true;
        this.setState("closed", { ...detail, reconnectInMs: null });
        return;
      }
      this.token = ""; // the next open() asks the token function again
    }
    const resume = policy.resume && Boolean(this.sessionId);
    if (!policy.resume) this.sessionId = "";
    this.setState(resume ? "resuming" : "connecting", { ...detail, reconnectInMs: delay, attempt: this.backoff.attempt });
    this.timers.reconnect = this.clock.setTimeout(() => {
      this.timers.reconnect = null;
      this.open(resume).catch((error) => this.fail(error));
    }, delay);
  }

  stopTimers() {
    for (const name of ["ack", "ping", "pose", "watchdog"]) {
      this.clock.clearTimeout(this.timers[name]);
      this.timers[name] = null;
    }
  }

  // --- inbound ----------------------------------------------------------------

  /** One decoded server message. */
  receive(msg) {
    this.emit("message", { direction: "in", message: msg });
    if (msg.batch) {
      for (const inner of msg.batch.messages || []) this.receive(inner);
      return;
    }
    const seq = Number(msg.seq) || 0;
    if (seq) {
      if (seq <= this.lastSeq) return; // a re-send or replay already processed (section 5)
      this.lastSeq = seq;
      this.scheduleAck();
    }
    if (msg.serverHello) return this.onHello(msg.serverHello);
    if (msg.ack) return this.onAck(msg.ack);
    if (msg.error) return this.onError(msg.error);
    if (msg.pong) {
      this.rttMs = Math.max(0, this.clock.now() - Number(msg.pong.clientTimeMs));
      return this.emit("rtt", this.rttMs);
    }
    if (msg.ping) return this.send({ pong: { clientTimeMs: msg.ping.clientTimeMs || 0 } });
    for (const [name, detail] of this.room.apply(msg)) this.emit(name, detail);
  }

  onHello(hello) {
    const resumed = Boolean(hello.resumed) && this.wantResume && hello.sessionId === this.sessionId;
    if (!resumed) {
      this.lastSeq = 0;
      this.ackedSeq = 0;
    }
    this.sessionId = hello.sessionId || "";
    this.backoff.reset();
    const events = this.room.hello({ ...hello, resumed }, this.displayName);
    this.heartbeatMs = Number(hello.heartbeatIntervalMs) || 0;
    this.setState("open", { resumed, sessionResumeAsked: this.wantResume });
    this.emit("hello", { clientId: this.room.me, roomId: this.room.id, host: this.room.host, resumed, resync: this.wantResume && !resumed });
    for (const [name, detail] of events) this.emit(name, detail);
    this.wantResume = false;
    // Section 6: after a resume (or on a new session) own unanswered messages go
    // again with the same message_id; the server answers a repeat without applying it twice.
    for (const [, p] of this.pending) if (!p.sent) this.transmit(p);
    this.ping();
    this.watchdog();
  }

  onAck(ack) {
    const id = ack.messageId;
    const p = id && this.pending.get(id);
    if (!p) return;
    this.pending.delete(id);
    const line = this.room.chat.find((l) => l.mine && l.messageId === id);
    if (line) line.acked = true;
    p.resolve(id);
    this.emit("ack", { messageId: id });
  }

  onError(error) {
    const detail = {
      code: error.code || "UNKNOWN",
      message: error.message || "",
      retryAfterMs: Number(error.retryAfterMs) || 0,
      refMessageId: error.refMessageId || "",
    };
    if (detail.retryAfterMs) this.retryAfterMs = detail.retryAfterMs;
    const p = detail.refMessageId && this.pending.get(detail.refMessageId);
    if (p) {
      this.pending.delete(detail.refMessageId);
      p.reject(Object.assign(new Error(`${detail.code}: ${detail.message}`), detail));
    }
    this.emit("error", detail);
  }

  scheduleAck() {
    if (this.timers.ack) return;
    this.timers.ack = this.clock.setTimeout(() => {
      this.timers.ack = null;
      if (this.lastSeq > this.ackedSeq && this.send({ ack: { upToSeq: this.lastSeq } })) this.ackedSeq = this.lastSeq;
    }, this.options.ackDelayMs ?? 100);
  }

  ping() {
    this.clock.clearTimeout(this.timers.ping);
    this.send({ ping: { clientTimeMs: this.clock.now() } });
    const every = this.heartbeatMs || this.options.pingIntervalMs || 10000;
    this.timers.ping = this.clock.setTimeout(() => this.ping(), every);
  }

  // A socket that hears nothing for three ping intervals is dead though not
  // closed (a half-open connection): drop it and resume.
  watchdog() {
    const every = this.heartbeatMs || this.options.pingIntervalMs || 10000;
    this.clock.clearTimeout(this.timers.watchdog);
    this.timers.watchdog = this.clock.setTimeout(() => {
      this.timers.watchdog = null;
      if (this.state !== "open") return;
      if (this.clock.now() - this.lastHeard > 3 * every) this.cut();
      else this.watchdog();
    }, every);
  }

  // --- outbound ---------------------------------------------------------------

  /** Send one message object now if the socket is open; returns whether it went. */
  send(message) {
    const socket = this.socket;
    if (!socket || socket.readyState !== 1) return false;
    const frame = encodeFrame(message, this.format);
    const size = typeof frame === "string" ? utf8Encoder.encode(frame).length : frame.length;
    if (size > MAX_FRAME_BYTES) throw new RangeError(`message of ${size} bytes is over the ${MAX_FRAME_BYTES}-byte frame limit`);
    socket.send(frame);
    this.emit("message", { direction: "out", message });
    return true;
  }

  /**
   * A reliable message: sent now or after the next (re)connect, re-sent with
   * the same message_id after a resume; resolves with the id once the server
   * acknowledges it, rejects with the server's Error.
   */
  reliable(payload) {
    const messageId = `${this.idPrefix}-${++this.counter}`;
    const message = { messageId, ...payload };
    return {
      messageId,
      done: new Promise((resolve, reject) => {
        const p = { message, resolve, reject, sent: false };
        this.pending.set(messageId, p);
        if (this.state === "open") this.transmit(p);
      }),
    };
  }

  transmit(p) {
    p.sent = this.send(p.message);
  }

  /**
   * Say ``text`` to the room. Returns a promise of the acknowledged message id.
   * @param {string} text @param {{type?: "NORMAL"|"WHISPER"|"SHOUT"}} [options]
   */
  chat(text, { type = "NORMAL" } = {}) {
    const { messageId, done } = this.reliable({ chatMessage: { message: text, type } });
    const line = { fromClientId: this.room.me, name: this.displayName || this.room.me, message: text, timestamp: 0, type, mine: true, history: false, messageId, acked: false };
    this.room.pushChat(line);
    this.emit("chat", line);
    done.catch(() => {});
    return done;
  }

  /**
   * Move this client's avatar (metres, volatile: at most ``poseHz`` per
   * second, the latest wins).
   * @param {{x:number,y:number,z:number}} position @param {{x:number,y:number,z:number,w:number}} [rotation]
   */
  move(position, rotation) {
    const me = this.room.members.get(this.room.me);
    if (me) {
      me.position = vec(position);
      if (rotation) me.rotation = quat(rotation);
    }
    this.pose({ positionUpdate: { position: vec(position), ...(rotation ? { rotation } : {}) } });
  }

  /** Move an entity this client owns (volatile, like ``move``). */
  moveEntity(entityId, position, rotation) {
    const entity = this.room.entities.get(entityId);
    if (entity) entity.position = vec(position);
    this.send({ positionUpdate: { entityId, position: vec(position), ...(rotation ? { rotation } : {}) } });
  }

  pose(message) {
    this.nextPose = message;
    if (this.timers.pose) return;
    const gap = 1000 / (this.options.poseHz || 20);
    const wait = this.lastPoseAt + gap - this.clock.now();
    const flush = () => {
      this.timers.pose = null;
      if (!this.nextPose) return;
      const next = this.nextPose;
      this.nextPose = null;
      this.lastPoseAt = this.clock.now();
      this.send(next);
    };
    if (wait <= 0) flush();
    else this.timers.pose = this.clock.setTimeout(flush, wait);
  }

  /**
   * Spawn an entity owned by this client; ``components`` values are text.
   * @param {string} entityId @param {string} templateId @param {Record<string,string>} [components]
   */
  spawn(entityId, templateId, components = {}) {
    const entity = { id: entityId, templateId, ownerId: this.room.me, components: { ...components }, position: vec(null), rotation: null };
    this.room.entities.set(entityId, entity);
    return this.reliable({ entitySpawn: { entityId, templateId, components } }).done;
  }

  /** Change components of an own entity (text values, sent as UTF-8 bytes). */
  updateEntity(entityId, components) {
    const entity = this.room.entities.get(entityId);
    if (entity) Object.assign(entity.components, components);
    const encoded = Object.fromEntries(Object.entries(components).map(([k, v]) => [k, textToBase64(String(v))]));
    return this.reliable({ entityUpdate: { entityId, components: encoded } }).done;
  }

  /** Remove an own entity. */
  despawn(entityId) {
    this.room.entities.delete(entityId);
    return this.reliable({ entityDespawn: { entityId } }).done;
  }

  /** Change this client's display name (broadcast as a presence UPDATE). */
  setDisplayName(displayName) {
    this.displayName = displayName;
    const me = this.room.members.get(this.room.me);
    if (me) me.displayName = displayName;
    this.send({ clientHello: { displayName, capabilities: CAPABILITIES } });
  }

  /** Moderation (staff or host): kick, mute, lock. */
  kick(targetClientId, reason = "") {
    return this.reliable({ kickPlayer: { targetClientId, reason } }).done;
  }

  mute(targetClientId, muted = true, reason = "") {
    return this.reliable({ mutePlayer: { targetClientId, muted, reason } }).done;
  }

  lock(locked = true, reason = "") {
    return this.reliable({ lockRoom: { locked, reason } }).done;
  }
}

function toBytes(data) {
  if (data instanceof ArrayBuffer) return new Uint8Array(data);
  if (ArrayBuffer.isView(data)) return new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
  if (Array.isArray(data)) return new Uint8Array(Buffer.concat(data)); // ws "fragments"
  return new Uint8Array(data);
}

function baseUrl(url) {
  if (url) return url.replace(/\/+$/, "");
  const location = globalThis.location;
  if (!location) throw new TypeError("PresenceClient needs options.url outside a browser page");
  return `${location.protocol === "https:" ? "wss" : "ws"}://${location.host}`;
}
