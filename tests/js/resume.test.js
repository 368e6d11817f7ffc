// Resume scenarios (PROTOCOL.md section 6) against the server side of
// issue 11 (session resume, replay, message_id dedup, grace). Run by
// tests/e2e/test_client_resume.py.
import { test } from "node:test";
import assert from "node:assert/strict";

import { cuttableProxy, joined, room, until, within } from "./helpers.js";

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
