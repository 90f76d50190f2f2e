/**
 * Poll leases in Redis: one key per generation names the instance allowed to
 * poll it, with a time to live a little longer than the poll interval.
 *
 * Invariant: claiming and renewing happen in one Lua script, so at most one
 * instance holds a generation's lease at any moment. The owner renews it at
 * every poll; when the owner dies, the lease expires after `leaseMs` and the
 * next claim by another watching instance takes over. While Redis is
 * unreachable every instance polls its own watched generations (at most one
 * poll per generation per instance per interval) instead of stopping.
 */
import type { RedisConnection as Redis } from "../cluster/redis-connection.js";
import type { Logger } from "pino";
import { LocalPollLease } from "../watch/poll-lease.js";
import type { PollClaim, PollLease } from "../watch/poll-lease.js";

/** KEYS[1] lease, KEYS[2] attempts. ARGV[1] instance id, ARGV[2] lease ms, ARGV[3] attempts TTL ms. */
const CLAIM_SCRIPT = `
local owner = redis.call('GET', KEYS[1])
if owner and owner ~= ARGV[1] then
  return {0, tonumber(redis.call('GET', KEYS[2]) or '0')}
end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
local attempts = redis.call('INCR', KEYS[2])
redis.call('PEXPIRE', KEYS[2], ARGV[3])
return {1, attempts}
`;

/** KEYS[1] lease, KEYS[2] attempts. ARGV[1] instance id. Takes one attempt back while this instance holds the lease. */
const REFUND_SCRIPT = `
if redis.call('GET', KEYS[1]) == ARGV[1] and tonumber(redis.call('GET', KEYS[2]) or '0') > 0 then
  return redis.call('DECR', KEYS[2])
end
return -1
`;

/** KEYS[1] lease, KEYS[2] attempts. ARGV[1] instance id, ARGV[2] "1" to delete the attempt count too. */
const RELEASE_SCRIPT = `
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('DEL', KEYS[1])
  if ARGV[2] == '1' then redis.call('DEL', KEYS[2]) end
  return 1
end
return 0
`;

interface LeaseCommands {
  relayClaimPoll(lease: string, attempts: string, instanceId: string, leaseMs: number, attemptsTtlMs: number): Promise<[number, number]>;
  relayReleasePoll(lease: string, attempts: string, instanceId: string, forget: string): Promise<number>;
  relayRefundPoll(lease: string, attempts: string, instanceId: string): Promise<number>;
}

export interface RedisPollLeaseOptions {
  redis: Redis;
  keyPrefix: string;
  instanceId: string;
  /** Lease time to live; the owner renews it at every poll. */
  leaseMs: number;
  /** How long an attempt count outlives the last poll. */
  attemptsTtlMs: number;
  logger: Logger;
}

/** Keys of one generation share the `{generationId}` hash tag, so both scripts run in Redis Cluster. */
export function leaseKeys(prefix: string, generationId: string): [lease: string, attempts: string] {
  return [`${prefix}{${generationId}}:poller`, `${prefix}{${generationId}}:attempts`];
}

export class RedisPollLease implements PollLease {
  readonly #redis: Redis & LeaseCommands;
  readonly #options: RedisPollLeaseOptions;
  readonly #held = new Set<string>();
  readonly #fallback: LocalPollLease;
  #failing = false;

  constructor(options: RedisPollLeaseOptions) {
    options.redis.defineCommand("relayClaimPoll", { numberOfKeys: 2, lua: CLAIM_SCRIPT });
    options.redis.defineCommand("relayReleasePoll", { numberOfKeys: 2, lua: RELEASE_SCRIPT });
    options.redis.defineCommand("relayRefundPoll", { numberOfKeys: 2, lua: REFUND_SCRIPT });
    this.#redis = options.redis as Redis & LeaseCommands;
    this.#options = options;
    this.#fallback = new LocalPollLease(options.attemptsTtlMs);
  }

  /** Generations whose lease this instance holds. */
  get held(): number {
    return this.#held.size;
  }

  async claim(generationId: string): Promise<PollClaim> {
    const { keyPrefix, instanceId, leaseMs, attemptsTtlMs, logger } = this.#options;
    const [lease, attempts] = leaseKeys(keyPrefix, generationId);
    try {
      const [granted, count] = await this.#redis.relayClaimPoll(lease, attempts, instanceId, leaseMs, attemptsTtlMs);
      if (this.#failing) {
        this.#failing = false;
        logger.info("poll leases reachable again: one poller per generation");
      }
      if (granted === 1) this.#held.add(generationId);
      else this.#held.delete(generationId);
      return { granted: granted === 1, attempts: count };
    } catch (error) {
      if (!this.#failing) {
        this.#failing = true;
        logger.error({ err: error }, "cannot reach Redis for poll leases; polling locally watched generations from this instance");
      }
      return { granted: true, attempts: this.#fallback.countAttempt(generationId) };
    }
  }

  async refund(generationId: string): Promise<void> {
    if (this.#failing) {
      this.#fallback.uncountAttempt(generationId);
      return;
    }
    const [lease, attempts] = leaseKeys(this.#options.keyPrefix, generationId);
    try {
      await this.#redis.relayRefundPoll(lease, attempts, this.#options.instanceId);
    } catch (error) {
      // One attempt too many is counted; the watch still ends at most one poll early.
      this.#options.logger.debug({ err: error, generation_id: generationId }, "could not take back a poll attempt");
    }
  }

  async release(generationId: string, forget = false): Promise<void> {
    if (!this.#held.delete(generationId) && !forget) return;
    const [lease, attempts] = leaseKeys(this.#options.keyPrefix, generationId);
    try {
      await this.#redis.relayReleasePoll(lease, attempts, this.#options.instanceId, forget ? "1" : "0");
    } catch (error) {
      // The lease expires on its own within leaseMs.
      this.#options.logger.debug({ err: error, generation_id: generationId }, "could not release a poll lease");
    }
  }

  async releaseAll(): Promise<void> {
    const generationIds = [...this.#held];
    await Promise.all(generationIds.map((generationId) => this.release(generationId)));
  }
}
