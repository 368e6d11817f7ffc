// A fake WebSocket class and a fake clock for the client's unit tests.
import { decodeFrame, encodeFrame } from "../../presence/static/presence/client.js";

export class FakeClock {
  constructor() {
    this.t = 1_000_000;
    this.timers = new Map();
    this.ids = 0;
  }
  now() { return this.t; }
  setTimeout(fn, ms) {
    const id = ++this.ids;
    this.timers.set(id, { at: this.t + Math.max(0, ms), fn });
    return id;
  }
  clearTimeout(id) { this.timers.delete(id); }
  /** Run every timer due within ``ms``, in time order. */
  advance(ms) {
    const end = this.t + ms;
    for (;;) {
      let next = null;
      for (const [id, timer] of this.timers) if (timer.at <= end && (!next || timer.at < next[1].at)) next = [id, timer];
      if (!next) break;
      this.timers.delete(next[0]);
      this.t = next[1].at;
      next[1].fn();
    }
    this.t = end;
  }
}

/** Every socket the client opened, newest last; each records what it sent. */
export function fakeWebSocketClass() {
  const sockets = [];
  class FakeSocket {
    constructor(url, protocol) {
      this.url = new URL(url);
      this.protocol = protocol;
      this.readyState = 0;
      this.sent = [];
      sockets.push(this);
    }
    send(frame) { this.sent.push(decodeFrame(frame)); }
    close(code = 1000) {
      if (this.readyState === 3) return;
      this.readyState = 3;
      this.closedByClient = code;
    }
    // --- the test plays the server ---
    accept() { this.readyState = 1; this.onopen?.({}); }
    deliver(message) { this.onmessage?.({ data: encodeFrame(message, "proto") }); }
    drop(code) { this.readyState = 3; this.onclose?.({ code, reason: "" }); }
    sentOf(kind) { return this.sent.filter((m) => m[kind]); }
  }
  return { FakeSocket, sockets };
}

export function hello({ clientId = "c1", sessionId = "s1", resumed = false, players = [], host = "" } = {}) {
  return {
    type: "SERVER_HELLO",
    serverHello: {
      assignedClientId: clientId,
      roomId: "r1",
      sessionId,
      resumed,
      hostClientId: host || clientId,
      initialState: resumed ? undefined : { players: [{ clientId, displayName: "Me" }, ...players] },
    },
  };
}
