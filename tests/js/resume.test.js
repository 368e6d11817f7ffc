// Resume scenarios (PROTOCOL.md section 6): they need the server side of
// issue 11 (session resume, replay, message_id dedup, grace). Run by
// tests/e2e/test_client_resume.py, expected to fail until that has landed.
import { test } from "node:test";
import assert from "node:assert/strict";

import { cuttableProxy, joined, room, until, within } from "./helpers.js";

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

test("resume_after_cut_socket_replays_missed_messages", async () => {
  const r = room();
  const proxy = await cuttableProxy();
  const alice = await joined({ room: r, userId: "alice", url: proxy.url });
  const bob = await joined({ room: r, userId: "bob" });
  await until(() => alice.room.members.size === 2, "alice sees bob");
  const me = alice.room.me;
  const left = [];
  bob.on("leave", (l) => left.push(l.clientId));
  proxy.down();
  proxy.cut();
  await within(bob.spawn("crate-1", "crate"), "bob's spawn acked");
  await within(bob.chat("missed 1"), "acked");
  await within(bob.chat("missed 2"), "acked");
  const back = alice.next("hello");
  proxy.up();
  const hello = await within(back, "alice resumes", 10000);
  assert.equal(hello.resumed, true);
  assert.equal(alice.room.me, me, "the same client id");
  await until(() => alice.room.chat.filter((l) => l.message.startsWith("missed")).length === 2, "both lines replayed");
  assert.ok(alice.room.entities.has("crate-1"), "the spawn replayed");
  assert.deepEqual(left, [], "inside the grace the room never saw alice leave");
});

test("resent_message_is_applied_once", async () => {
  const r = room();
  const proxy = await cuttableProxy();
  const alice = await joined({ room: r, userId: "alice", url: proxy.url });
  const bob = await joined({ room: r, userId: "bob" });
  await until(() => alice.room.members.size === 2, "alice sees bob");
  proxy.deafen(); // the server applies alice's line, its Ack is lost
  const sent = alice.chat("exactly once");
  await until(() => bob.room.chat.some((l) => l.message === "exactly once"), "bob gets the line");
  proxy.down();
  proxy.cut();
  const back = alice.next("hello");
  proxy.up();
  assert.equal((await within(back, "alice resumes", 10000)).resumed, true);
  await within(sent, "the re-sent line is acknowledged", 10000);
  await bob.chat("after the resume").catch(() => {});
  await until(() => alice.room.chat.some((l) => l.message === "after the resume"), "alice hears bob again");
  assert.equal(bob.room.chat.filter((l) => l.message === "exactly once").length, 1);
});
