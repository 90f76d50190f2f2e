/**
 * The per-user limit counters in Redis, shared by every instance.
 *
 * All keys of one user share the hash tag `{<user key>}`, so each script runs
 * on one Redis Cluster slot:
 *   <prefix>limits:{u}:hour:<hours since epoch>  generate requests this clock hour (TTL 1 h + 1 min)
 *   <prefix>limits:{u}:spend:<YYYY-MM-DD>        spend this UTC day, in units of 0.0001 USD (TTL 2 days)
 *   <prefix>limits:{u}:active                     sorted set of active generations and reservations, by creation time
 *   <prefix>limits:{u}:connections                sorted set of open push connections, by expiry
 */
import type { RedisConnection } from "../cluster/redis-connection.js";
import { RESERVATION_PREFIX } from "./limits-store.js";
import type { GenerationQuota, LimitWindow, LimitsStore, ReserveResult, Settlement, UsageCounts, GenerationLimitName } from "./limits-store.js";

const HOUR_TTL_SECONDS = 3600 + 60;
const SPEND_TTL_SECONDS = 2 * 86_400;
/** The active set outlives its oldest possible member by a day; members older than the max age are dropped by every script. */
const ACTIVE_TTL_SECONDS = 86_400;

/** KEYS: hour, spend, active. ARGV: now, per-hour, active, spend units, stale-before, token, finished ids... */
const RESERVE_SCRIPT = `
redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', '(' .. ARGV[5])
for i = 7, #ARGV do redis.call('ZREM', KEYS[3], ARGV[i]) end
local hour = tonumber(redis.call('GET', KEYS[1]) or '0')
if hour >= tonumber(ARGV[2]) then return {'generations_per_hour', hour} end
local active = redis.call('ZCARD', KEYS[3])
if active >= tonumber(ARGV[3]) then
  local oldest = redis.call('ZRANGE', KEYS[3], 0, 0, 'WITHSCORES')
  return {'active_generations', active, oldest[2]}
end
local spend = tonumber(redis.call('GET', KEYS[2]) or '0')
if spend >= tonumber(ARGV[4]) then return {'daily_spend', spend} end
redis.call('INCR', KEYS[1])
redis.call('EXPIRE', KEYS[1], ${HOUR_TTL_SECONDS})
redis.call('ZADD', KEYS[3], ARGV[1], ARGV[6])
redis.call('EXPIRE', KEYS[3], ${ACTIVE_TTL_SECONDS})
return {'ok', hour + 1}
`;

/** KEYS: hour, spend, active. ARGV: token, kind, generation id, created at, price units. */
const SETTLE_SCRIPT = `
redis.call('ZREM', KEYS[3], ARGV[1])
if ARGV[2] == 'created' then
  redis.call('ZADD', KEYS[3], ARGV[4], ARGV[3])
  redis.call('EXPIRE', KEYS[3], ${ACTIVE_TTL_SECONDS})
  redis.call('INCRBY', KEYS[2], ARGV[5])
  redis.call('EXPIRE', KEYS[2], ${SPEND_TTL_SECONDS})
elseif ARGV[2] == 'rejected' then
  if tonumber(redis.call('GET', KEYS[1]) or '0') > 0 then redis.call('DECR', KEYS[1]) end
end
return 1
`;

/** KEYS: connections. ARGV: now, max, connection id, expires at. */
const ACQUIRE_CONNECTION_SCRIPT = `
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[1])
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[2]) then return 0 end
redis.call('ZADD', KEYS[1], ARGV[4], ARGV[3])
redis.call('PEXPIREAT', KEYS[1], ARGV[4])
return 1
`;

export class RedisLimitsStore implements LimitsStore {
  constructor(
    private readonly redis: RedisConnection,
    private readonly keyPrefix: string,
  ) {}

  async activeGenerations(userKey: string, window: LimitWindow, activeMaxAgeMs: number): Promise<string[]> {
    const members = await this.redis.zrangebyscore(this.#key(userKey, "active"), window.nowMs - activeMaxAgeMs, "+inf");
    return members.filter((member) => !member.startsWith(RESERVATION_PREFIX));
  }

  async reserveGeneration(userKey: string, window: LimitWindow, quota: GenerationQuota, finishedIds: readonly string[]): Promise<ReserveResult> {
    const token = `${RESERVATION_PREFIX}${crypto.randomUUID()}`;
    const [outcome, used, oldestActiveMs] = (await this.redis.eval(
      RESERVE_SCRIPT,
      3,
      ...this.#generationKeys(userKey, window),
      window.nowMs,
      quota.perHour,
      quota.active,
      quota.spendUnits,
      window.nowMs - quota.activeMaxAgeMs,
      token,
      ...finishedIds,
    )) as [string, number, string | undefined];
    if (outcome === "ok") return { ok: true, token };
    const result: ReserveResult = { ok: false, limit: outcome as GenerationLimitName, used: Number(used) };
    if (oldestActiveMs !== undefined) result.oldestActiveMs = Number(oldestActiveMs);
    return result;
  }

  async settleGeneration(userKey: string, window: LimitWindow, token: string, settlement: Settlement): Promise<void> {
    const created = settlement.kind === "created" ? settlement : undefined;
    await this.redis.eval(
      SETTLE_SCRIPT,
      3,
      ...this.#generationKeys(userKey, window),
      token,
      settlement.kind,
      created?.generationId ?? "",
      created?.createdAtMs ?? 0,
      created?.priceUnits ?? 0,
    );
  }

  async usage(userKey: string, window: LimitWindow, activeMaxAgeMs: number): Promise<UsageCounts> {
    const [hourKey, spendKey, activeKey] = this.#generationKeys(userKey, window);
    const connectionsKey = this.#key(userKey, "connections");
    const results = await this.redis
      .multi()
      .get(hourKey)
      .get(spendKey)
      .zcount(activeKey, window.nowMs - activeMaxAgeMs, "+inf")
      .zcount(connectionsKey, `(${window.nowMs}`, "+inf")
      .exec();
    const value = (index: number) => {
      const [error, result] = results?.[index] ?? [new Error("Redis returned no result for the usage transaction"), null];
      if (error !== null) throw error;
      return Number(result ?? 0);
    };
    return { generationsThisHour: value(0), spendUnits: value(1), activeGenerations: value(2), openConnections: value(3) };
  }

  async acquireConnection(userKey: string, connectionId: string, max: number, nowMs: number, expiresAtMs: number): Promise<boolean> {
    const acquired = await this.redis.eval(ACQUIRE_CONNECTION_SCRIPT, 1, this.#key(userKey, "connections"), nowMs, max, connectionId, expiresAtMs);
    return Number(acquired) === 1;
  }

  async releaseConnection(userKey: string, connectionId: string): Promise<void> {
    await this.redis.zrem(this.#key(userKey, "connections"), connectionId);
  }

  async refreshConnections(slots: ReadonlyArray<readonly [string, string]>, expiresAtMs: number): Promise<void> {
    if (slots.length === 0) return;
    // One command per slot and no transaction: the users' keys live on different Cluster slots.
    await Promise.all(
      slots.map(async ([userKey, connectionId]) => {
        const key = this.#key(userKey, "connections");
        await this.redis.zadd(key, "XX", expiresAtMs, connectionId);
        await this.redis.pexpireat(key, expiresAtMs);
      }),
    );
  }

  #key(userKey: string, name: string): string {
    return `${this.keyPrefix}limits:{${userKey}}:${name}`;
  }

  #generationKeys(userKey: string, window: LimitWindow): [string, string, string] {
    return [this.#key(userKey, `hour:${window.hourIndex}`), this.#key(userKey, `spend:${window.day}`), this.#key(userKey, "active")];
  }
}
