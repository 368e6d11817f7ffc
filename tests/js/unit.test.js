// The client's decisions on a fake socket and a fake clock (no server, no waiting).
import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";

import { Backoff, PresenceClient, RoomModel, closeAction, decodeFrame, encodeFrame } from "../../presence/static/presence/client.js";
import { FakeClock, fakeWebSocketClass, hello } from "./fakes.js";

const TABLE = JSON.parse(readFileSync(new URL("../clients/scenarios/close_codes.json", import.meta.url))).codes;
const BACKOFF = { initialMs: 500, maxMs: 8000, factor: 2 };

function setup(options = {}) {
  const clock = new FakeClock();
  const { FakeSocket, sockets } = fakeWebSocketClass();
  const client = new PresenceClient({ room: "r1", url: "ws://test", userId: "u1", WebSocket: FakeSocket, clock, random: () => 0.5, backoff: BACKOFF, ...options });
  return { clock, sockets, client };
}

async function joined(options) {
  const env = setup(options);
  env.client.connect();
  await settle();
  const socket = env.sockets.at(-1);
  socket.accept();
  socket.deliver(hello());
  return { ...env, socket };
}

const settle = () => new Promise((resolve) => setImmediate(resolve));

test("close_code_policy_matches_protocol_table", () => {
  for (const [code, expected] of Object.entries(TABLE)) {
    const { action, resume } = closeAction(Number(code));
    assert.deepEqual({ action, resume }, expected, `close code ${code}`);
  }
});

test("backoff_grows_exponentially_with_jitter_and_resets_after_hello", async () => {
  const low = new Backoff({ ...BACKOFF, random: () => 0 });
  const high = new Backoff({ ...BACKOFF, random: () => 0.999999 });
  assert.deepEqual([1, 2, 3, 4, 5, 6].map(() => low.next()), [250, 500, 1000, 2000, 4000, 4000]);
  assert.deepEqual([1, 2, 3, 4, 5, 6].map(() => high.next()), [500, 1000, 2000, 4000, 8000, 8000]);

  const { client, clock, sockets, socket } = await joined();
  socket.drop(1006);
  clock.advance(375); // attempt 0: 500 * (0.5 + 0.5 * 0.5)
  await settle();
  assert.equal(sockets.length, 2);
  sockets[1].drop(1006);
  clock.advance(749);
  await settle();
  assert.equal(sockets.length, 2, "the second attempt waits longer");
  clock.advance(1);
  await settle();
  assert.equal(sockets.length, 3);
  sockets[2].accept();
  sockets[2].deliver(hello({ resumed: true }));
  assert.equal(client.backoff.attempt, 0, "a hello starts the backoff again");
});

test("each_close_code_reconnects_or_stops_as_the_table_says", async () => {
  for (const [code, expected] of Object.entries(TABLE)) {
    const { client, clock, sockets, socket } = await joined({ token: async () => "tok" });
    socket.deliver({ seq: 3, chatMessage: { message: "x", fromClientId: "c2" } });
    const states = [];
    client.on("state", (s) => states.push(s));
    socket.drop(Number(code));
    clock.advance(60_000);
    await settle();
    if (expected.action === "stop") {
      assert.equal(sockets.length, 1, `${code} must not reconnect`);
      assert.equal(client.state, "closed", `${code}`);
      continue;
    }
    assert.equal(sockets.length, 2, `${code} reconnects`);
    const url = sockets[1].url;
    assert.equal(url.searchParams.get("session_id"), expected.resume ? "s1" : null, `${code} resume`);
    if (expected.resume) assert.equal(url.searchParams.get("last_seq"), "3");
    assert.equal(states[0].state, expected.resume ? "resuming" : "connecting", `${code}`);
    assert.ok(states[0].reconnectInMs > 0, `${code} waits before reconnecting`);
    client.close();
  }
});

test("wait_codes_reconnect_after_retry_after_ms", async () => {
  for (const code of [4008, 4429]) {
    const { clock, sockets, socket } = await joined();
    socket.deliver({ error: { code: "RATE_LIMITED", message: "slow down", retryAfterMs: 7000 } });
    socket.drop(code);
    clock.advance(6999);
    await settle();
    assert.equal(sockets.length, 1, `${code}: not before retry_after_ms`);
    clock.advance(1);
    await settle();
    assert.equal(sockets.length, 2, `${code}: right after retry_after_ms`);
  }
});

test("token_is_refreshed_on_4401", async () => {
  const tokens = ["old", "new"];
  const { clock, sockets, socket } = await joined({ token: async () => tokens.shift(), userId: undefined });
  assert.equal(socket.sentOf("clientHello")[0].clientHello.authToken, "old");
  assert.equal(socket.url.searchParams.get("auth_token"), null, "the token stays out of the URL");
  socket.drop(4401);
  clock.advance(60_000);
  await settle();
  assert.equal(sockets.length, 2);
  sockets[1].accept();
  assert.equal(sockets[1].sentOf("clientHello")[0].clientHello.authToken, "new");
  assert.deepEqual(tokens, []);

  const fixed = await joined({ token: "static" });
  fixed.socket.drop(4401);
  fixed.clock.advance(60_000);
  await settle();
  assert.equal(fixed.sockets.length, 1, "a fixed token cannot be refreshed: stop");
  assert.equal(fixed.client.state, "closed");
});

test("duplicate_seq_is_dropped", async () => {
  const { client, socket } = await joined();
  const lines = [];
  client.on("chat", (l) => lines.push(l.message));
  for (const seq of [1, 2, 2, 1, 3]) socket.deliver({ seq, chatMessage: { message: `m${seq}`, fromClientId: "c2" } });
  assert.deepEqual(lines, ["m1", "m2", "m3"]);
  assert.equal(client.lastSeq, 3);
});

test("acks_are_cumulative", async () => {
  const { clock, socket } = await joined({ ackDelayMs: 100 });
  assert.deepEqual(socket.sentOf("clientHello")[0].clientHello.capabilities, ["batch", "ack"]);
  for (const seq of [1, 2, 3]) socket.deliver({ seq, chatMessage: { message: "x", fromClientId: "c2" } });
  clock.advance(100);
  assert.deepEqual(socket.sentOf("ack").map((m) => m.ack.upToSeq), [3]);
  socket.deliver({ seq: 4, entityDespawn: { entityId: "e" } });
  clock.advance(100);
  clock.advance(100);
  assert.deepEqual(socket.sentOf("ack").map((m) => m.ack.upToSeq), [3, 4]);
});

test("unanswered_messages_are_resent_with_the_same_id_after_reconnect", async () => {
  const { client, clock, sockets, socket } = await joined();
  const acked = client.chat("first");
  const lost = client.chat("second");
  const [first, second] = socket.sentOf("chatMessage");
  socket.deliver({ ack: { messageId: first.messageId } });
  assert.equal(await acked, first.messageId);
  socket.drop(1006);
  const offline = client.chat("typed while cut");
  clock.advance(60_000);
  await settle();
  const again = sockets[1];
  again.accept();
  assert.equal(again.sentOf("chatMessage").length, 0, "nothing before the hello");
  again.deliver(hello({ resumed: true }));
  const resent = again.sentOf("chatMessage");
  assert.deepEqual(resent.map((m) => m.messageId), [second.messageId, resent[1].messageId]);
  assert.deepEqual(resent.map((m) => m.chatMessage.message), ["second", "typed while cut"]);
  again.deliver({ ack: { messageId: second.messageId } });
  again.deliver({ ack: { messageId: resent[1].messageId } });
  await Promise.all([lost, offline]);
  assert.equal(client.pending.size, 0);
});

test("room_model_follows_join_leave_host_pose_and_entities", () => {
  const room = new RoomModel();
  room.hello(hello({ clientId: "c1", host: "c0", players: [{ clientId: "c0", displayName: "Zed", position: { x: 1, z: 2 } }] }).serverHello, "Me");
  assert.deepEqual([...room.members.keys()], ["c1", "c0"]);
  assert.equal(room.host, "c0");
  const kinds = (events) => events.map(([name]) => name);
  assert.deepEqual(kinds(room.apply({ type: "PRESENCE_JOIN", presenceEvent: { clientId: "c2", data: { displayName: "Bo" } } })), ["join"]);
  assert.deepEqual(kinds(room.apply({ senderId: "c2", positionUpdate: { position: { x: 3, y: 0, z: 4 } } })), ["pose"]);
  assert.deepEqual(room.members.get("c2").position, { x: 3, y: 0, z: 4 });
  room.apply({ senderId: "c2", entitySpawn: { entityId: "box", templateId: "crate", ownerId: "c2", components: { color: "red" } } });
  room.apply({ senderId: "c2", entityUpdate: { entityId: "box", components: { color: "Ymx1ZQ==" } } });
  room.apply({ senderId: "c2", positionUpdate: { entityId: "box", position: { x: 5, y: 0, z: 5 } } });
  assert.deepEqual(room.entities.get("box").components, { color: "blue" });
  assert.deepEqual(room.entities.get("box").position, { x: 5, y: 0, z: 5 });
  assert.deepEqual(kinds(room.apply({ type: "PLAYER_MUTED", playerMuted: { mutedClientId: "c2", muted: true } })), ["muted"]);
  assert.equal(room.members.get("c2").muted, true);
  assert.deepEqual(kinds(room.apply({ type: "PRESENCE_LEAVE", presenceEvent: { clientId: "c0", eventType: "LEAVE" } })), ["leave"]);
  assert.deepEqual(kinds(room.apply({ type: "PRESENCE_UPDATE", presenceEvent: { clientId: "c1", eventType: "UPDATE", data: { hostClientId: "c1" } } })), ["host"]);
  assert.equal(room.host, "c1");
  assert.deepEqual(kinds(room.apply({ entityDespawn: { entityId: "box" } })), ["despawn"]);
  assert.equal(room.entities.size, 0);
  assert.deepEqual([...room.members.keys()], ["c1", "c2"]);
});

test("frames round-trip in both encodings", () => {
  const message = { messageId: "m1", seq: 7, chatMessage: { message: "héllo", type: "SHOUT" } };
  for (const format of ["proto", "json"]) {
    const back = decodeFrame(encodeFrame(message, format));
    assert.deepEqual(back, message, format);
  }
  assert.equal(typeof encodeFrame(message, "json"), "string");
  assert.match(encodeFrame(message, "json"), /"seq":"7"/, "64-bit integers as strings in JSON");
});
