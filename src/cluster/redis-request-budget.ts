/**
 * The request budget in Redis, so the ceiling holds for the whole cluster:
 * one log of the last second's starts and one set of in-flight requests,
 * both under the `{budget}` hash tag so the script also runs on Redis
 * Cluster. Redis' own clock (TIME) drives both, so instance clocks do not matter.
 *
 * In-flight entries expire after `leaseMs`, so a slot held by an instance
 * that died frees itself. While Redis is unreachable, each instance falls
 * back to a local budget with the same settings.
 */
import { randomUUID } from "node:crypto";
import type { Logger } from "pino";
import type { RedisConnection } from "./redis-connection.js";
import { BUDGET_WINDOW_MS, LocalRequestBudget, startsAllowed } from "../upstream/request-budget.js";
import type { BudgetDecision, BudgetSettings, RequestBudget, RequestPriority } from "../upstream/request-budget.js";

/**
 * KEYS[1] sorted set of the last second's starts, KEYS[2] sorted set of in-flight requests.
 * ARGV[1] starts allowed in the window for this priority, ARGV[2] concurrent slots open to it,
 * ARGV[3] request id, ARGV[4] lease ms, ARGV[5] window ms. Returns {1, 0} when granted, else {0, ms until a retry may succeed}.
 */
const ACQUIRE_SCRIPT = `
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - tonumber(ARGV[5]))
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now)
local allowed = tonumber(ARGV[1])
local starts = redis.call('ZCARD', KEYS[1])
if starts >= allowed then
  local blocking = redis.call('ZRANGE', KEYS[1], starts - allowed, starts - allowed, 'WITHSCORES')
  return {0, math.max(1, tonumber(blocking[2]) + tonumber(ARGV[5]) - now)}
end
if redis.call('ZCARD', KEYS[2]) >= tonumber(ARGV[2]) then
  return {0, 10}
end
redis.call('ZADD', KEYS[1], now, ARGV[3])
redis.call('ZADD', KEYS[2], now + tonumber(ARGV[4]), ARGV[3])
redis.call('PEXPIRE', KEYS[1], 2000)
redis.call('PEXPIRE', KEYS[2], tonumber(ARGV[4]) + 1000)
return {1, 0}
`;

interface BudgetCommands {
  relayAcquireBudget(
    starts: string,
    inFlight: string,
    allowed: number,
    slots: number,
    id: string,
    leaseMs: number,
    windowMs: number,
  ): Promise<[number, number]>;
}

export interface RedisRequestBudgetOptions {
  redis: RedisConnection;
  keyPrefix: string;
  settings: BudgetSettings;
  /** Longest a request may hold a concurrency slot; the upstream timeout plus a margin. */
  leaseMs: number;
  logger: Logger;
}

export class RedisRequestBudget implements RequestBudget {
  readonly #redis: RedisConnection & BudgetCommands;
  readonly #options: RedisRequestBudgetOptions;
  readonly #fallback: LocalRequestBudget;
  readonly #startsKey: string;
  readonly #inFlightKey: string;
  #failing = false;

  constructor(options: RedisRequestBudgetOptions) {
    options.redis.defineCommand("relayAcquireBudget", { numberOfKeys: 2, lua: ACQUIRE_SCRIPT });
    this.#redis = options.redis as RedisConnection & BudgetCommands;
    this.#options = options;
    this.#fallback = new LocalRequestBudget(options.settings);
    this.#startsKey = `${options.keyPrefix}{budget}:starts`;
    this.#inFlightKey = `${options.keyPrefix}{budget}:in-flight`;
  }

  async tryAcquire(priority: RequestPriority): Promise<BudgetDecision> {
    const { settings, leaseMs, logger } = this.#options;
    const id = randomUUID();
    const slots = settings.maxConcurrent - (priority === "poll" ? settings.reservedForClients : 0);
    try {
      const [granted, wait] = await this.#redis.relayAcquireBudget(
        this.#startsKey,
        this.#inFlightKey,
        startsAllowed(priority, settings),
        slots,
        id,
        leaseMs,
        BUDGET_WINDOW_MS,
      );
      if (this.#failing) {
        this.#failing = false;
        logger.info("request budget reachable in Redis again");
      }
      if (granted !== 1) return { granted: false, retryInMs: wait, release: () => {} };
      let released = false;
      return {
        granted: true,
        retryInMs: 0,
        release: () => {
          if (released) return;
          released = true;
          this.#redis.zrem(this.#inFlightKey, id).catch(() => {
            // The entry expires after leaseMs anyway.
          });
        },
      };
    } catch (error) {
      if (!this.#failing) {
        this.#failing = true;
        logger.error({ err: error }, "cannot reach Redis for the request budget; enforcing it per instance");
      }
      return this.#fallback.acquireNow(priority);
    }
  }
}
