// Live-test helpers: clients against the server the pytest driver started
// (tests/e2e/test_js_client.py sets PRESENCE_HTTP_URL and friends), a TCP
// proxy that can cut connections, and waiting on conditions with deadlines.
import net from "node:net";
import { after } from "node:test";
import WebSocket from "ws";

import { PresenceClient } from "../../presence/static/presence/client.js";

export const HTTP_URL = process.env.PRESENCE_HTTP_URL || "";
export const WS_URL = HTTP_URL.replace(/^http/, "ws");
if (!HTTP_URL) throw new Error("PRESENCE_HTTP_URL is not set: run these through pytest tests/e2e/test_js_client.py");

const open = new Set();
after(() => {
  for (const client of open) client.close();
});

export function room(prefix = "js") {
  return `${prefix}-${Math.random().toString(36).slice(2, 10)}`;
}

/** A client of the live server (dev user id unless a token is given); closed after the file. */
export function client(options) {
  const c = new PresenceClient({ url: WS_URL, WebSocket, backoff: { initialMs: 100, maxMs: 1000 }, ...options });
  open.add(c);
  return c;
}

/** Connect and wait for the hello. */
export async function joined(options) {
  const c = client(options);
  const hello = c.next("hello");
  c.connect();
  await within(hello, `${options.userId || "client"} joins ${options.room}`);
  return c;
}

export async function within(promise, what, ms = 5000) {
  let timer;
  const deadline = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms: ${what}`)), ms);
  });
  try {
    return await Promise.race([promise, deadline]);
  } finally {
    clearTimeout(timer);
  }
}

/** Wait until ``test()`` is true (checked every 10 ms), at most ``ms``. */
export async function until(test, what, ms = 5000) {
  const end = Date.now() + ms;
  while (!test()) {
    if (Date.now() > end) throw new Error(`timed out after ${ms} ms: ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

/** A new access token for the user the driver created, from POST /api/token/. */
export async function freshToken() {
  const response = await fetch(`${HTTP_URL}/api/token/`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ username: process.env.PRESENCE_USERNAME, password: process.env.PRESENCE_PASSWORD }),
  });
  if (!response.ok) throw new Error(`POST /api/token/ answered ${response.status}`);
  return (await response.json()).access;
}

/**
 * A TCP proxy in front of the server: ``cut()`` resets every connection through
 * it (no close frame: a network cut), ``down()`` refuses new ones until ``up()``.
 */
export async function cuttableProxy(target = HTTP_URL) {
  const { hostname, port } = new URL(target);
  const pairs = new Set();
  let refusing = false;
  let deaf = false; // drop what the server sends (its answers get lost)
  const server = net.createServer((inbound) => {
    if (refusing) return inbound.resetAndDestroy();
    const outbound = net.connect(Number(port), hostname);
    const pair = [inbound, outbound];
    pairs.add(pair);
    inbound.pipe(outbound);
    outbound.on("data", (chunk) => {
      if (!deaf) inbound.write(chunk);
    });
    const end = () => {
      pairs.delete(pair);
      inbound.destroy();
      outbound.destroy();
    };
    inbound.on("error", end).on("close", end);
    outbound.on("error", end).on("close", end);
  });
  await new Promise((resolve) => server.listen(0, "127.0.0.1", resolve));
  after(() => server.close());
  return {
    url: `ws://127.0.0.1:${server.address().port}`,
    cut() {
      for (const [inbound, outbound] of pairs) {
        inbound.resetAndDestroy();
        outbound.resetAndDestroy();
      }
      pairs.clear();
    },
    down() { refusing = true; },
    up() { refusing = false; deaf = false; },
    /** Lose everything the server sends from now on (until ``up()``). */
    deafen() { deaf = true; },
    get connections() { return pairs.size; },
  };
}
