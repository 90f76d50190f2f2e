/** GET /: a one-page demo that starts a generation and watches it over WebSocket or SSE. */
import { readFile } from "node:fs/promises";
import type { FastifyPluginAsync } from "fastify";

const DEMO_PAGE = new URL("../../../public/index.html", import.meta.url);

export const demoRoute: FastifyPluginAsync = async (app) => {
  const html = await readFile(DEMO_PAGE, "utf8");
  app.get("/", async (_request, reply) =>
    reply
      .type("text/html; charset=utf-8")
      .header("content-security-policy", "default-src 'self'; script-src 'self' 'unsafe-inline'; style-src 'self' 'unsafe-inline'; connect-src 'self'; media-src *; img-src 'self' data:")
      .send(html),
  );
};
