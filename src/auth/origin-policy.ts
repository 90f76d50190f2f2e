/**
 * Browser origins. A request whose Origin header names another site is
 * rejected with 403 before any other work, on every route and transport:
 * REST, SSE, and WebSocket upgrades (so no cross-site WebSocket hijacking with
 * the user's cookie). Same-origin requests, origins listed in ALLOWED_ORIGINS,
 * and requests without an Origin header (non-browser clients) pass. CORS
 * headers, by @fastify/cors, are sent to the listed origins only.
 */
import type { FastifyInstance, FastifyRequest } from "fastify";
import cors from "@fastify/cors";
import { sendDetail } from "../http/errors.js";
import { GRANT_HEADER } from "./credentials.js";

/** How long browsers may cache a preflight response, in seconds. */
const PREFLIGHT_MAX_AGE_SECONDS = 600;

export async function registerOriginPolicy(app: FastifyInstance, allowedOrigins: readonly string[] | "*"): Promise<void> {
  const listed = (origin: string) => allowedOrigins === "*" || allowedOrigins.includes(origin.toLowerCase());

  app.addHook("onRequest", async (request, reply) => {
    const origin = request.headers.origin;
    if (origin === undefined || listed(origin) || isSameOrigin(origin, request)) return;
    request.log.info({ origin: origin.slice(0, 200) }, "cross-origin request rejected");
    return sendDetail(
      reply,
      403,
      `requests from origin ${JSON.stringify(origin.slice(0, 200))} are not allowed: the relay's operator lists browser origins in ALLOWED_ORIGINS`,
    );
  });

  await app.register(cors, {
    origin: (origin, callback) => callback(null, origin !== undefined && listed(origin)),
    credentials: true,
    methods: ["GET", "POST"],
    allowedHeaders: ["authorization", "content-type", "last-event-id", "x-request-id", GRANT_HEADER],
    exposedHeaders: ["x-request-id", "retry-after", "www-authenticate"],
    maxAge: PREFLIGHT_MAX_AGE_SECONDS,
  });
}

/** True when the Origin names the host the request was sent to (the scheme is not compared: TLS may end at a proxy). */
function isSameOrigin(origin: string, request: FastifyRequest): boolean {
  try {
    return new URL(origin).host === request.host.toLowerCase();
  } catch {
    return false;
  }
}
