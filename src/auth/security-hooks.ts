/**
 * Registers the security checks on the Fastify app, before the routes.
 * On every request, in this order:
 *   onRequest   1. origin: a foreign browser origin gets 403 (origin-policy.ts)
 *               2. request rate per client address
 *               3. authentication by the route's policy (route-policy.ts): 401
 *               4. request rate per user
 *   preHandler  5. ownership: a generation the caller may not read gets the
 *                  unknown-id response, without a request to Runblob
 *               6. open connections per user, on push routes
 *               7. generation and spend limits, on generate
 * So a request is rejected before its body is parsed (1-4) and always before
 * any upstream call (1-7).
 */
import type { FastifyInstance, FastifyReply, FastifyRequest } from "fastify";
import type { RedisConnection } from "../cluster/redis-connection.js";
import { sendDetail } from "../http/errors.js";
import type { RepeatLimiter } from "../logging/repeat-limiter.js";
import { LimitRejection } from "../limits/generation-limits.js";
import { createRequestRateHooks } from "../limits/request-rate-limits.js";
import { takeCredentials } from "./credentials.js";
import { NOT_FOUND_DETAIL } from "./generation-access.js";
import { registerOriginPolicy } from "./origin-policy.js";
import { ANONYMOUS, CredentialError } from "./principal.js";
import { policyFor } from "./route-policy.js";
import type { RoutePolicy } from "./route-policy.js";
import type { Security } from "./security.js";
import { securityRoutes } from "./security-routes.js";

export async function registerSecurity(
  app: FastifyInstance,
  security: Security,
  dependencies: { redis: RedisConnection | undefined; logLimiter: RepeatLimiter },
): Promise<void> {
  const { logLimiter } = dependencies;
  app.decorateRequest("principal", null);

  await registerOriginPolicy(app, security.allowedOrigins);
  const rates = await createRequestRateHooks(app, security.config, dependencies.redis);
  app.addHook("onRequest", rates.byAddress);

  app.addHook("onRequest", async (request, reply) => {
    const policy = policyFor(request.method, request.routeOptions.url);
    try {
      // Read on every route, so ticket and grant parameters are removed from every parsed query.
      const presented = takeCredentials(request, security.config.AUTH_COOKIE);
      if (policy === undefined) return;
      if (security.authenticator === undefined) {
        request.principal = ANONYMOUS;
        return;
      }
      request.principal = await security.authenticator.authenticate(presented, policy);
    } catch (error) {
      // Credentials on a public route are ignored, so a stale cookie never breaks the health check.
      if (!(error instanceof CredentialError)) throw error;
      if (policy === undefined) return;
      return rejectCredentials(request, reply, error, logLimiter);
    }
    request.log = request.log.child({ user_id: request.principal.userId });
  });
  app.addHook("onRequest", rates.byUser);

  app.addHook("preHandler", async (request, reply) => {
    const policy = policyFor(request.method, request.routeOptions.url);
    const principal = request.principal;
    if (policy === undefined || principal == null) return;

    // 5. Ownership.
    try {
      if (policy.generationParam !== undefined) {
        const generationId = (request.params as Record<string, string>)[policy.generationParam]!;
        if (!(await security.access.canRead(principal, generationId))) return sendDetail(reply, 404, NOT_FOUND_DETAIL);
      }
      if (policy.generationIdsQuery === true) {
        const ids = (request.query as { ids: string[] }).ids;
        security.setDeniedIds(request, await security.access.deniedAmong(principal, ids));
      }
    } catch (error) {
      logLimiter.log(request.log, "error", "ownership-store", { err: error }, "could not read the ownership store");
      return sendDetail(reply, 503, "the relay could not check access to this generation; try again shortly");
    }
    if (!security.perUser) return;

    // 6. Open connections per user; the slot is released when the connection closes.
    if (policy.connection === true) {
      const release = await security.connectionLimits.acquire(principal);
      if (release === undefined) {
        reply.header("retry-after", "30");
        return sendDetail(
          reply,
          429,
          `connection limit reached: this user has ${security.config.MAX_CONNECTIONS_PER_USER} WebSocket and SSE connections open, ` +
            "the maximum set by MAX_CONNECTIONS_PER_USER; close one first",
        );
      }
      // A WebSocket owns the TCP socket after the upgrade; an SSE stream ends with its response.
      if (request.ws) request.raw.socket.once("close", release);
      else reply.raw.once("close", release);
    }

    // 7. Generation and spend limits.
    if (policy.generate === true) {
      try {
        security.holdReservation(request, await security.generationLimits.reserve(principal));
      } catch (error) {
        if (error instanceof LimitRejection) {
          reply.header("retry-after", String(error.retryAfterSeconds));
          request.log.info({ detail: error.detail }, "generate request rejected by a limit");
          return sendDetail(reply, 429, error.detail);
        }
        logLimiter.log(request.log, "error", "limits-store", { err: error }, "could not check the generation limits");
        return sendDetail(reply, 503, "the relay could not check the generation limits, so no generation was started; try again shortly");
      }
    }
  });

  // A reservation still held when the response is sent was not settled by the route, because Runblob refused or did not respond.
  app.addHook("onResponse", async (request, reply) => {
    const unknown = reply.statusCode === 500 || reply.statusCode === 502 || reply.statusCode === 504;
    await security.settleReservation(request, unknown ? "unknown" : "rejected");
  });

  await app.register(securityRoutes, { security });
}

function rejectCredentials(request: FastifyRequest, reply: FastifyReply, error: CredentialError, logLimiter: RepeatLimiter): FastifyReply {
  if (error.statusCode === 503) {
    logLimiter.log(request.log, "error", `auth:${error.reason}`, { err: error.cause ?? error }, "could not check a credential");
    return sendDetail(reply, 503, error.detail);
  }
  logLimiter.log(request.log, "info", `auth:${error.reason}`, { reason: error.reason }, "request rejected: missing or invalid credentials");
  const parameters = ['realm="runblob-relay"'];
  if (error.bearerError !== undefined) parameters.push(`error="${error.bearerError}"`, `error_description="${error.detail.replaceAll('"', "'")}"`);
  reply.header("www-authenticate", `Bearer ${parameters.join(", ")}`);
  return sendDetail(reply, 401, error.detail);
}
