/**
 * Request rates per client address (RATE_LIMIT_PER_IP, checked first, before
 * authentication) and per user (RATE_LIMIT_PER_USER, right after it), in fixed
 * windows of RATE_LIMIT_WINDOW_SECONDS, by @fastify/rate-limit: in Redis when
 * configured, so the limits hold across instances, else in memory. A 429
 * response names the limit and carries Retry-After. 0 turns a limit off.
 * When Redis cannot be reached, requests are let through.
 */
import type { FastifyInstance, FastifyReply, FastifyRequest } from "fastify";
import rateLimit, { normalizeIP } from "@fastify/rate-limit";
import type { RedisConnection } from "../cluster/redis-connection.js";
import type { Config } from "../config/env.js";
import { sendDetail } from "../http/errors.js";
import { OPERATIONS_ROUTES } from "../auth/route-policy.js";
import { userKeyOf } from "../auth/user-key.js";

type RateCheck = ReturnType<FastifyInstance["createRateLimit"]>;

export interface RequestRateHooks {
  /** onRequest hook for the per-address limit. */
  byAddress(request: FastifyRequest, reply: FastifyReply): Promise<unknown>;
  /** Per-user limit; call after authentication. */
  byUser(request: FastifyRequest, reply: FastifyReply): Promise<unknown>;
}

export async function createRequestRateHooks(app: FastifyInstance, config: Config, redis: RedisConnection | undefined): Promise<RequestRateHooks> {
  await app.register(rateLimit, {
    global: false,
    skipOnError: true,
    ...(redis === undefined ? {} : { redis, nameSpace: `${config.REDIS_KEY_PREFIX}ratelimit:` }),
  });
  const timeWindow = config.RATE_LIMIT_WINDOW_SECONDS * 1000;
  const perAddress: RateCheck | undefined =
    config.RATE_LIMIT_PER_IP === 0
      ? undefined
      : app.createRateLimit({ max: config.RATE_LIMIT_PER_IP, timeWindow, keyGenerator: (request) => `ip:${normalizeIP(request.ip)}` });
  const perUser: RateCheck | undefined =
    config.RATE_LIMIT_PER_USER === 0
      ? undefined
      : app.createRateLimit({ max: config.RATE_LIMIT_PER_USER, timeWindow, keyGenerator: (request) => `user:${userKeyOf(request.principal?.userId ?? "")}` });

  return {
    async byAddress(request, reply) {
      if (perAddress === undefined || OPERATIONS_ROUTES.has(request.routeOptions.url ?? "")) return;
      return check(perAddress, request, reply, `${config.RATE_LIMIT_PER_IP} requests per ${config.RATE_LIMIT_WINDOW_SECONDS} s per client address (RATE_LIMIT_PER_IP)`);
    },
    async byUser(request, reply) {
      // Routes outside the authenticated scope (/docs, say) have no principal at all.
      if (perUser === undefined || request.principal == null || request.principal.credential === "none") return;
      return check(perUser, request, reply, `${config.RATE_LIMIT_PER_USER} requests per ${config.RATE_LIMIT_WINDOW_SECONDS} s per user (RATE_LIMIT_PER_USER)`);
    },
  };
}

async function check(limit: RateCheck, request: FastifyRequest, reply: FastifyReply, description: string): Promise<unknown> {
  const result = await limit(request);
  if (result.isAllowed || !result.isExceeded) return undefined;
  const retryAfter = Math.max(1, result.ttlInSeconds);
  reply.header("retry-after", String(retryAfter));
  return sendDetail(reply, 429, `request rate limit reached: at most ${description}; the window resets in ${retryAfter} s`);
}
