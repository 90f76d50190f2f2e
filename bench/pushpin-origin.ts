/**
 * The origin behind Pushpin in the side-by-side scenario. It responds to
 * GET /v1/sora/generations/{id}/events with GRIP headers that tell Pushpin
 * to hold the response open as a stream subscribed to channel `gen-<id>`,
 * and with one first event, as the relay sends the current status first.
 *
 *   ORIGIN_PORT  port on 127.0.0.1
 */
import { createServer } from "node:http";
import { statusEvent } from "./lib/pushpin-messages.js";

const port = Number(process.env.ORIGIN_PORT);
if (!Number.isInteger(port)) {
  process.stderr.write("pushpin origin: set ORIGIN_PORT\n");
  process.exit(1);
}

const EVENTS_PATH = /^\/v1\/sora\/generations\/([0-9a-f-]{36})\/events$/;

const server = createServer((request, response) => {
  const match = EVENTS_PATH.exec(request.url ?? "");
  if (request.url === "/healthz") {
    response.end("ok");
    return;
  }
  if (match === null) {
    response.writeHead(404).end();
    return;
  }
  const id = match[1]!;
  response.writeHead(200, {
    "content-type": "text/event-stream",
    "cache-control": "no-cache",
    "grip-hold": "stream",
    "grip-channel": `gen-${id}`,
    // Pushpin sends this SSE comment when the stream is idle for 15 s, like the relay's keep-alive.
    "grip-keep-alive": ":\\n\\n; format=cstring; timeout=15",
  });
  // The first status carries an old updated_at, so the load generators leave it out of the latency.
  response.end(statusEvent(id, 1, new Date(0)));
});

server.listen(port, "127.0.0.1");
const stop = () => {
  server.close(() => process.exit(0));
  server.closeAllConnections();
};
process.on("SIGTERM", stop);
process.on("SIGINT", stop);
