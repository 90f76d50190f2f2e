/**
 * A StatusStore in Redis, shared by every relay instance. Each generation is
 * one hash with the fields `fp` (content fingerprint), `v` (version),
 * `json` (relay status JSON) and `at` (time of the last confirming poll, ms).
 * One Lua script makes the compare-and-set of
 * record() atomic across instances.
 */
import type { RedisConnection as Redis } from "../cluster/redis-connection.js";
import type { Observation, RecordOutcome, RecordResult, StatusStore, StoredStatus } from "./status-store.js";
import {
  assertVersion,
  fingerprint,
  serializeRelayStatus,
  ttlMilliseconds,
} from "./fingerprint.js";

export interface RedisStatusStoreOptions {
  /** Connection owned by the caller: close() leaves it open. */
  redis: Redis;
  /** Seconds a status lives after its last record() call, whether that call changed it or not. */
  ttlSeconds: number;
  /** Prefix of every key, without `{` or `}`. Defaults to "relay:". */
  keyPrefix?: string;
}

/**
 * Returns the key of a generation's status hash. The `{generationId}` part is a Redis Cluster hash
 * tag, so every key of one generation maps to the same slot. Other per-generation keys must use it too.
 */
export function statusKey(prefix: string, generationId: string): string {
  return `${prefix}{${generationId}}:status`;
}

/**
 * KEYS[1] status hash. ARGV[1] fingerprint, ARGV[2] expected version, ARGV[3] new version,
 * ARGV[4] relay status JSON, ARGV[5] TTL in milliseconds, ARGV[6] check time in ms, ARGV[7] minimum version.
 * Returns {outcome, json stored after the call, check time}.
 */
const RECORD_SCRIPT = `
local stored = redis.call('HMGET', KEYS[1], 'fp', 'v', 'json', 'at')
if stored[1] == ARGV[1] and tonumber(stored[2]) >= tonumber(ARGV[7]) then
  redis.call('HSET', KEYS[1], 'at', ARGV[6])
  redis.call('PEXPIRE', KEYS[1], ARGV[5])
  return {'unchanged', stored[3], ARGV[6]}
end
-- A missing key protects nothing: the write goes on from the caller's version, so versions keep
-- rising for clients that resume with a version they saw before the key expired.
if stored[2] and stored[2] ~= ARGV[2] then
  return {'stale', stored[3], stored[4] or '0'}
end
redis.call('HSET', KEYS[1], 'fp', ARGV[1], 'v', ARGV[3], 'json', ARGV[4], 'at', ARGV[6])
redis.call('PEXPIRE', KEYS[1], ARGV[5])
return {'changed', ARGV[4], ARGV[6]}
`;

/**
 * Name under which the script is defined on the caller's connection.
 * ioredis runs a defined command with EVALSHA and falls back to EVAL when Redis does not have the script.
 */
const RECORD_COMMAND = "relayRecordStatus";

type RecordReply = [outcome: RecordOutcome, json: string | null, checkedAtMs: string];

interface RecordCommand {
  [RECORD_COMMAND]: (
    key: string,
    fingerprint: string,
    expectedVersion: string,
    newVersion: string,
    json: string,
    ttlMs: string,
    checkedAtMs: string,
    minVersion: string,
  ) => Promise<RecordReply>;
}

export class RedisStatusStore implements StatusStore {
  private readonly redis: Redis & RecordCommand;
  private readonly ttlMs: number;
  private readonly keyPrefix: string;

  constructor(options: RedisStatusStoreOptions) {
    const keyPrefix = options.keyPrefix ?? "relay:";
    if (/[{}]/.test(keyPrefix)) {
      // A brace in the prefix would become the hash tag and put every generation in one slot.
      throw new Error(`invalid keyPrefix ${JSON.stringify(keyPrefix)}: it must not contain "{" or "}"`);
    }
    this.keyPrefix = keyPrefix;
    this.ttlMs = ttlMilliseconds(options.ttlSeconds);

    options.redis.defineCommand(RECORD_COMMAND, { numberOfKeys: 1, lua: RECORD_SCRIPT });
    this.redis = options.redis as Redis & RecordCommand;
  }

  async get(generationId: string): Promise<StoredStatus | null> {
    const key = statusKey(this.keyPrefix, generationId);
    const [json, checkedAt] = await this.redis.hmget(key, "json", "at");
    return json === null || json === undefined ? null : toStoredStatus(key, json, checkedAt);
  }

  async record(
    generationId: string,
    observation: Observation,
    expectedVersion: number,
    minVersion = 0,
  ): Promise<RecordResult> {
    assertVersion(expectedVersion);
    assertVersion(minVersion);
    const key = statusKey(this.keyPrefix, generationId);
    const newVersion = Math.max(expectedVersion, minVersion) + 1;
    // Serialized once here, so the stored text and the returned `json` are the same bytes.
    const json = serializeRelayStatus(observation.upstream, newVersion, observation.observedAt);

    const [outcome, storedJson, checkedAt] = await this.redis[RECORD_COMMAND](
      key,
      fingerprint(observation.upstream),
      String(expectedVersion),
      String(newVersion),
      json,
      String(this.ttlMs),
      String(observation.observedAt.getTime()),
      String(minVersion),
    );

    if (storedJson === null) {
      throw new Error(`Redis key ${key} has no field "json": delete the key to let the next poll rewrite it`);
    }
    return { outcome, ...toStoredStatus(key, storedJson, checkedAt) };
  }

  /** Does nothing: the connection belongs to the caller. */
  async close(): Promise<void> {}
}

function toStoredStatus(key: string, json: string, checkedAt: string | null | undefined): StoredStatus {
  const checkedAtMs = checkedAt === null || checkedAt === undefined ? undefined : Number(checkedAt) || undefined;
  try {
    return { status: JSON.parse(json), json, ...(checkedAtMs === undefined ? {} : { checkedAtMs }) };
  } catch (error) {
    throw new Error(`invalid JSON in field "json" of Redis key ${key}: delete the key to let the next poll rewrite it`, {
      cause: error,
    });
  }
}
