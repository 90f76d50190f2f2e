/**
 * Bearer token check of the simulated Runblob API and of the `/__simulator/`
 * control routes, with Runblob's 401 bodies.
 */
import { createHash, timingSafeEqual } from "node:crypto";
import type { FastifyReply, FastifyRequest, onRequestAsyncHookHandler } from "fastify";

function sha256(text: string): Buffer {
  return createHash("sha256").update(text).digest();
}

/** Extracts the token of an `Authorization: Bearer <token>` header, or returns null when there is none. */
export function bearerToken(header: string | undefined): string | null {
  if (header === undefined) return null;
  const match = /^Bearer[ \t]+(\S+)[ \t]*$/i.exec(header);
  return match?.[1] ?? null;
}

function rejectUnauthorized(reply: FastifyReply, detail: string): FastifyReply {
  return reply.code(401).header("www-authenticate", "Bearer").send({ detail });
}

/**
 * Creates an `onRequest` hook that responds with 401 unless the request carries `token`.
 * A missing header, another scheme or an empty token get "Missing credentials",
 * and a wrong token gets "Invalid token".
 */
export function createBearerAuth(token: string): onRequestAsyncHookHandler {
  // Comparing fixed-length digests keeps the comparison time independent of where the tokens differ.
  const expected = sha256(token);

  return async function checkBearerToken(request: FastifyRequest, reply: FastifyReply) {
    const presented = bearerToken(request.headers.authorization);
    if (presented === null) return rejectUnauthorized(reply, "Missing credentials");
    if (!timingSafeEqual(sha256(presented), expected)) return rejectUnauthorized(reply, "Invalid token");
    return undefined;
  };
}
