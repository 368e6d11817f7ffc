// The JavaScript client against a live server process (uvicorn, started by
// tests/e2e/test_js_client.py): the scenarios of tests/clients/scenarios/names.txt.
import { test } from "node:test";
import assert from "node:assert/strict";

import { client, cuttableProxy, freshToken, joined, room, until, within } from "./helpers.js";

test("join_sees_hello_and_initial_state", async () => {
  const r = room();
  const alice = await joined({ room: r, userId: "alice", displayName: "Alice" });
  alice.move({ x: 1, y: 0, z: 2 });
  const bob = client({ room: r, userId: "bob", displayName: "Bob" });
  const hello = bob.next("hello");
  const aliceSeesBob = alice.next("join", (d) => d.member.displayName === "Bob");
  bob.connect();
  const greeting = await within(hello, "bob's hello");
  assert.equal(greeting.resumed, false);
  assert.equal(greeting.host, alice.room.me, "the first member is host");
  assert.match(bob.sessionId, /^[0-9a-f]{32}$/);
  assert.deepEqual([...bob.room.members.values()].map((m) => m.displayName).sort(), ["Alice", "Bob"]);
  await until(() => bob.room.members.get(alice.room.me)?.position.x === 1, "bob knows where alice stands");
  const joinedBob = await within(aliceSeesBob, "alice sees bob join");
  assert.equal(joinedBob.member.clientId, bob.room.me);
  assert.equal(alice.state, "open");
});

test("two_clients_see_each_others_events", async () => {
  const r = room();
  const alice = await joined({ room: r, userId: "alice", displayName: "Alice" });
  const bob = await joined({ room: r, userId: "bob", displayName: "Bob" });
  await until(() => alice.room.members.size === 2, "alice sees bob");

  const pose = bob.next("pose", (p) => p.clientId === alice.room.me && p.position.x === 3);
  alice.move({ x: 3, y: 0, z: -1 });
  await within(pose, "bob sees alice move");
  assert.deepEqual(bob.room.members.get(alice.room.me).position, { x: 3, y: 0, z: -1 });

  const chat = bob.next("chat", (c) => !c.mine);
  const acked = alice.chat("hello <b>bob</b>");
  const line = await within(chat, "bob gets the chat line");
  assert.equal(line.message, "hello <b>bob</b>");
  assert.equal(line.fromClientId, alice.room.me);
  assert.equal(line.name, "Alice");
  assert.ok(line.timestamp > 0, "stamped by the server");
  await within(acked, "alice's line is acknowledged");
  assert.equal(alice.room.chat.at(-1).acked, true);

  const spawn = bob.next("spawn");
  await within(alice.spawn("box-1", "crate", { color: "red" }), "spawn acknowledged");
  const entity = await within(spawn, "bob sees the crate");
  assert.deepEqual({ id: entity.id, templateId: entity.templateId, ownerId: entity.ownerId, components: entity.components }, { id: "box-1", templateId: "crate", ownerId: alice.room.me, components: { color: "red" } });

  const update = bob.next("entityUpdate");
  await within(alice.updateEntity("box-1", { color: "blue" }), "update acknowledged");
  assert.deepEqual((await within(update, "bob sees the update")).components, { color: "blue" });
  assert.equal(bob.room.entities.get("box-1").components.color, "blue");

  const moved = bob.next("pose", (p) => p.entityId === "box-1");
  alice.moveEntity("box-1", { x: 4, y: 0, z: 4 });
  await within(moved, "bob sees the crate move");
  assert.deepEqual(bob.room.entities.get("box-1").position, { x: 4, y: 0, z: 4 });

  const gone = bob.next("despawn");
  await within(alice.despawn("box-1"), "despawn acknowledged");
  assert.equal((await within(gone, "bob sees the despawn")).entityId, "box-1");
  assert.equal(bob.room.entities.size, 0);

  const refused = alice.updateEntity("nope", { a: "b" });
  await assert.rejects(within(refused, "an update of an unknown entity is refused"), /NOT_OWNER|BAD_MESSAGE|unknown|not/i);

  const left = alice.next("leave");
  bob.close();
  assert.equal((await within(left, "alice sees bob leave")).clientId, bob.room.me);
  assert.equal(alice.room.members.size, 1);
});

test("host_moves_to_the_other_member_when_the_host_leaves", async () => {
  const r = room();
  const alice = await joined({ room: r, userId: "alice" });
  const bob = await joined({ room: r, userId: "bob" });
  assert.equal(bob.room.host, alice.room.me);
  const host = bob.next("host");
  alice.close();
  assert.equal((await within(host, "bob becomes host")).clientId, bob.room.me);
  assert.equal(bob.room.host, bob.room.me);
  assert.equal(bob.room.members.size, 1);
});

test("json_format_works_like_protobuf", async () => {
  const r = room();
  const alice = await joined({ room: r, userId: "alice", format: "json" });
  const bob = await joined({ room: r, userId: "bob", format: "proto" });
  const frames = [];
  alice.on("message", (m) => frames.push(m));
  const chat = alice.next("chat", (c) => !c.mine);
  await within(bob.chat("to json"), "bob's chat acked");
  assert.equal((await within(chat, "alice (json) gets it")).message, "to json");
  const spawn = bob.next("spawn");
  await within(alice.spawn("j1", "cone", { size: "2" }), "alice's spawn acked");
  assert.equal((await within(spawn, "bob (proto) sees it")).components.size, "2");
  assert.equal(alice.socket.protocol, "graphwiz.json.v1");
  assert.equal(bob.socket.protocol, "graphwiz.proto.v1");
});

test("expired_token_is_refreshed_and_the_client_joins", async () => {
  const r = room();
  const handed = [];
  const token = async () => {
    const next = handed.length === 0 ? process.env.PRESENCE_EXPIRED_TOKEN : await freshToken();
    handed.push(next);
    return next;
  };
  const c = client({ room: r, token });
  const states = [];
  c.on("state", (s) => states.push(s));
  const hello = c.next("hello");
  c.connect();
  await within(hello, "joins with the refreshed token");
  assert.equal(handed.length, 2);
  assert.ok(states.some((s) => s.code === 4401), `closed 4401 first: ${JSON.stringify(states)}`);
  assert.equal(c.room.members.get(c.room.me).clientId, c.room.me);
});

test("cut_socket_reconnects_and_resends_unanswered_messages", async () => {
  const r = room();
  const proxy = await cuttableProxy();
  const alice = await joined({ room: r, userId: "alice", displayName: "Alice", url: proxy.url });
  const bob = await joined({ room: r, userId: "bob", displayName: "Bob" });
  await until(() => alice.room.members.size === 2, "alice sees bob");
  const lost = alice.next("state", (s) => s.state === "resuming");
  proxy.down();
  proxy.cut();
  await within(lost, "alice notices the cut");
  const typed = alice.chat("typed while cut off");
  await new Promise((resolve) => setTimeout(resolve, 300)); // a reconnect attempt or two is refused
  assert.notEqual(alice.state, "open");
  const back = alice.next("hello");
  proxy.up();
  await within(back, "alice is back", 10000);
  await within(typed, "alice's line is acknowledged after the reconnect", 10000);
  await until(() => bob.room.chat.some((l) => l.message === "typed while cut off"), "bob gets alice's line");
  assert.equal(bob.room.chat.filter((l) => l.message === "typed while cut off").length, 1);
  assert.equal(alice.room.chat.filter((l) => l.message === "typed while cut off").length, 1);
});

test("cut_socket_reconnects_without_losing_a_chat_line", async () => {
  const r = room();
  const proxy = await cuttableProxy();
  const alice = await joined({ room: r, userId: "alice", displayName: "Alice", url: proxy.url });
  const bob = await joined({ room: r, userId: "bob", displayName: "Bob" });
  await until(() => alice.room.members.size === 2, "alice sees bob");
  const lost = alice.next("state", (s) => s.state === "resuming");
  proxy.down();
  proxy.cut();
  await within(lost, "alice notices the cut");
  // While alice is away: bob says something, alice types something.
  await within(bob.chat("said while alice was cut off"), "bob's line acked");
  const typed = alice.chat("typed while cut off");
  const back = alice.next("hello");
  proxy.up();
  await within(back, "alice is back", 10000);
  await within(typed, "alice's line is acknowledged after the reconnect", 10000);
  await until(() => bob.room.chat.some((l) => l.message === "typed while cut off"), "bob gets alice's line");
  await until(() => alice.room.chat.some((l) => l.message === "said while alice was cut off"), "alice gets bob's line");
  const count = (c, text) => c.room.chat.filter((l) => l.message === text).length;
  assert.equal(count(bob, "typed while cut off"), 1);
  assert.equal(count(alice, "said while alice was cut off"), 1);
  assert.equal(count(alice, "typed while cut off"), 1);
});
