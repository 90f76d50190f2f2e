/**
 * The request budget in Redis, so the ceiling holds for the whole cluster:
 * one token bucket and one set of in-flight requests, both under the
 * `{budget}` hash tag so the script also runs on Redis Cluster. Redis' own
 * clock (TIME) drives the refill, so instance clocks do not matter.
 *
 * In-flight entries expire after `leaseMs`, so a slot held by an instance
 * that died frees itself. While Redis is unreachable, each instance falls
 * back to a local budget with the same settings.
 */
import { randomUUID } from "node:crypto";
import type { Logger } from "pino";
import type { RedisConnection } from "./redis-connection.js";
import { LocalRequestBudget, tokensNeeded } from "../upstream/request-budget.js";
import type { BudgetDecision, BudgetSettings, RequestBudget, RequestPriority } from "../upstream/request-budget.js";

/**
 * KEYS[1] bucket hash, KEYS[2] in-flight sorted set. ARGV[1] rate per second, ARGV[2] tokens
 * needed, ARGV[3] concurrent slots open to this priority, ARGV[4] request id, ARGV[5] lease ms.
 * Returns {1, 0} when granted, else {0, ms until a retry may succeed}.
 */
const ACQUIRE_SCRIPT = `
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
local rate = tonumber(ARGV[1])
local bucket = redis.call('HMGET', KEYS[1], 'tokens', 'at')
local tokens = tonumber(bucket[1]) or rate
local at = tonumber(bucket[2]) or now
tokens = math.min(rate, tokens + (now - at) * rate / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now)
local needed = tonumber(ARGV[2])
local granted = 0
local wait = 0
if tokens < needed then
  wait = math.ceil((needed - tokens) * 1000 / rate)
elseif redis.call('ZCARD', KEYS[2]) >= tonumber(ARGV[3]) then
  wait = 10
else
  tokens = tokens - 1
  granted = 1
  redis.call('ZADD', KEYS[2], now + tonumber(ARGV[5]), ARGV[4])
end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'at', now)
redis.call('PEXPIRE', KEYS[1], 60000)
redis.call('PEXPIRE', KEYS[2], 60000)
return {granted, wait}
`;

interface BudgetCommands {
  relayAcquireBudget(bucket: string, inFlight: string, rate: number, needed: number, slots: number, id: string, leaseMs: number): Promise<[number, number]>;
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
  readonly #bucketKey: string;
  readonly #inFlightKey: string;
  #failing = false;

  constructor(options: RedisRequestBudgetOptions) {
    options.redis.defineCommand("relayAcquireBudget", { numberOfKeys: 2, lua: ACQUIRE_SCRIPT });
    this.#redis = options.redis as RedisConnection & BudgetCommands;
    this.#options = options;
    this.#fallback = new LocalRequestBudget(options.settings);
    this.#bucketKey = `${options.keyPrefix}{budget}:tokens`;
    this.#inFlightKey = `${options.keyPrefix}{budget}:in-flight`;
  }

  async tryAcquire(priority: RequestPriority): Promise<BudgetDecision> {
    const { settings, leaseMs, logger } = this.#options;
    const id = randomUUID();
    const slots = settings.maxConcurrent - (priority === "poll" ? settings.reservedForClients : 0);
    try {
      const [granted, wait] = await this.#redis.relayAcquireBudget(
        this.#bucketKey,
        this.#inFlightKey,
        settings.ratePerSecond,
        tokensNeeded(priority, settings),
        slots,
        id,
        leaseMs,
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
