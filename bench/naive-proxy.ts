/**
 * The amplification baseline: a backend-for-frontend without the relay's
 * sharing. It holds the token and forwards every status request to Runblob
 * (the simulator), so N browsers polling every interval cost N upstream
 * requests per interval. Only GET /v1/sora/generations/{id} is forwarded.
 *
 *   PROXY_PORT      port on 127.0.0.1
 *   UPSTREAM_URL    Runblob origin, e.g. http://127.0.0.1:4010
 *   UPSTREAM_TOKEN  bearer token sent upstream
 */
import { createServer } from "node:http";
import { Pool } from "undici";

const port = Number(process.env.PROXY_PORT);
const upstreamUrl = process.env.UPSTREAM_URL;
const token = process.env.UPSTREAM_TOKEN;
if (!Number.isInteger(port) || upstreamUrl === undefined || token === undefined) {
  process.stderr.write("naive proxy: set PROXY_PORT, UPSTREAM_URL and UPSTREAM_TOKEN\n");
  process.exit(1);
}

const pool = new Pool(upstreamUrl, { connections: 64 });
const STATUS_PATH = /^\/v1\/sora\/generations\/([0-9a-f-]{36})\/?$/;

const server = createServer((request, response) => {
  if (request.url === "/healthz") {
    response.end("ok");
    return;
  }
  const match = STATUS_PATH.exec(request.url ?? "");
  if (request.method !== "GET" || match === null) {
    response.writeHead(404, { "content-type": "application/json" }).end('{"detail":"Not Found"}');
    return;
  }
  pool
    .request({ method: "GET", path: `/v1/sora/generations/${match[1]}/`, headers: { authorization: `Bearer ${token}` } })
    .then(async (upstream) => {
      const body = await upstream.body.text();
      response.writeHead(upstream.statusCode, { "content-type": "application/json" }).end(body);
    })
    .catch((error: Error) => {
      response.writeHead(502, { "content-type": "application/json" }).end(JSON.stringify({ detail: `upstream failed: ${error.message}` }));
    });
});

server.listen(port, "127.0.0.1");
const stop = () => {
  server.close(() => void pool.close().then(() => process.exit(0)));
  server.closeAllConnections();
};
process.on("SIGTERM", stop);
process.on("SIGINT", stop);
