// Baseline n: a bare Node.js `ws` relay, the twin of baseline a
// (bench/baseline_relay.py). `/ws/{room}`: every frame received is forwarded
// as it is to every other member of the same room, one send per recipient, no
// batching, no parsing, no backpressure; nothing else (no hello, no presence,
// no validation). A path that is not /ws/{room} is closed with 4400.
//
//   node bench/node/relay.mjs --port 8766 [--host 127.0.0.1]
import { WebSocketServer } from "ws";

const args = process.argv.slice(2);
const option = (name, fallback) => {
  const at = args.indexOf(name);
  return at >= 0 && at + 1 < args.length ? args[at + 1] : fallback;
};
const host = option("--host", "127.0.0.1");
const port = Number(option("--port", ""));
if (!Number.isInteger(port) || port <= 0 || port > 65535) {
  console.error("usage: node relay.mjs --port PORT [--host HOST]");
  process.exit(2);
}

const rooms = new Map(); // path -> Set of sockets

// perMessageDeflate off, like a's compression=None (the generator does not
// offer it anyway); everything else is the library's defaults, as in a.
const server = new WebSocketServer({ host, port, perMessageDeflate: false });

server.on("connection", (ws, request) => {
  const path = (request.url ?? "").split("?", 1)[0];
  if (!path.startsWith("/ws/") || path.length === "/ws/".length) {
    ws.close(4400, "path must be /ws/{room}");
    return;
  }
  let room = rooms.get(path);
  if (room === undefined) {
    room = new Set();
    rooms.set(path, room);
  }
  room.add(ws);
  ws.on("message", (data, isBinary) => {
    for (const member of room) {
      if (member !== ws && member.readyState === 1) member.send(data, { binary: isBinary });
    }
  });
  ws.on("close", () => {
    room.delete(ws);
    if (room.size === 0 && rooms.get(path) === room) rooms.delete(path);
  });
  ws.on("error", () => {}); // a reset client: "close" follows
});

server.on("listening", () => {
  console.log(`baseline relay n on ws://${host}:${port}/ws/{room}`);
});

const stop = () => server.close(() => process.exit(0));
process.on("SIGTERM", stop);
process.on("SIGINT", stop);
