import { randomUUID } from "node:crypto";
import { setTimeout as sleep } from "node:timers/promises";
import { Redis } from "ioredis";
import { afterAll, afterEach, describe, expect, inject, it } from "vitest";
import { MemoryStatusStore } from "../src/store/memory-store.js";
import { RedisStatusStore, statusKey } from "../src/store/redis-store.js";
import type { Observation, RecordResult, StatusStore } from "../src/store/status-store.js";
import type { UpstreamStatus } from "../src/wire/upstream.js";
import { crc16, keySlot } from "./support/key-slot.js";

const redisUrl = inject("redisUrl");

const connections: Redis[] = [];
const openStores: StatusStore[] = [];

function connect(): Redis {
  const redis = new Redis(redisUrl);
  connections.push(redis);
  return redis;
}

/** Returns a new key prefix for one store, so tests that share the server never see each other's keys. */
function uniquePrefix(): string {
  return `relay-test:${randomUUID()}:`;
}

afterEach(async () => {
  await Promise.all(openStores.splice(0).map((store) => store.close()));
});

afterAll(async () => {
  await Promise.all(connections.map((redis) => redis.quit()));
});

const GENERATION_ID = "6f1c1f1e-2a4b-4c8d-9e0f-1a2b3c4d5e6f";
const T0 = new Date("2025-11-24T10:00:01.000Z");
const T1 = new Date("2025-11-24T10:00:03.500Z");
const T2 = new Date("2025-11-24T10:00:06.000Z");

function upstream(overrides: Partial<UpstreamStatus> = {}): UpstreamStatus {
  return {
    generation_id: GENERATION_ID,
    status: "pending",
    prompt: "a red kite over a beach",
    video_url: null,
    created_at: "2025-11-24T10:00:00.000000",
    completed_at: null,
    progress_pct: 0,
    progress_pos_in_queue: 3,
    error_message: null,
    ...overrides,
  };
}

function observe(status: UpstreamStatus, observedAt: Date): Observation {
  return { upstream: status, observedAt };
}

/** Returns a copy of `value` with object keys in reverse order, nested objects included. */
function reverseKeys<T>(value: T): T {
  if (value === null || typeof value !== "object" || Array.isArray(value)) {
    return value;
  }
  const entries = Object.entries(value).reverse();
  return Object.fromEntries(entries.map(([key, item]) => [key, reverseKeys(item)])) as T;
}

interface StoreHarness {
  store: StatusStore;
  /** Lets `ms` milliseconds pass on the clock that the store's TTL uses. */
  advance(ms: number): Promise<void>;
}

interface StoreKind {
  name: string;
  create(ttlSeconds: number): StoreHarness;
}

const storeKinds: StoreKind[] = [
  {
    name: "MemoryStatusStore",
    create(ttlSeconds) {
      let nowMs = T0.getTime();
      const store = new MemoryStatusStore({ ttlSeconds, now: () => nowMs });
      openStores.push(store);
      return {
        store,
        advance: async (ms) => {
          nowMs += ms;
        },
      };
    },
  },
  {
    name: "RedisStatusStore",
    create(ttlSeconds) {
      const store = new RedisStatusStore({ redis: connect(), ttlSeconds, keyPrefix: uniquePrefix() });
      openStores.push(store);
      return { store, advance: (ms) => sleep(ms) };
    },
  },
];

describe.each(storeKinds)("$name contract", (kind) => {
  it("first record is changed with version 1", async () => {
    const { store } = kind.create(60);

    const result = await store.record(GENERATION_ID, observe(upstream(), T0), 0);

    expect(result.outcome).toBe("changed");
    expect(result.status).toEqual({ ...upstream(), version: 1, updated_at: T0.toISOString() });
    expect(await store.get(GENERATION_ID)).toEqual({ status: result.status, json: result.json, checkedAtMs: T0.getTime() });
  });

  it("unchanged record moves checkedAtMs", async () => {
    const { store } = kind.create(60);
    await store.record(GENERATION_ID, observe(upstream(), T0), 0);

    const again = await store.record(GENERATION_ID, observe(upstream(), T1), 1);

    expect(again.outcome).toBe("unchanged");
    expect(again.checkedAtMs).toBe(T1.getTime());
    expect((await store.get(GENERATION_ID))?.checkedAtMs).toBe(T1.getTime());
    expect((await store.get(GENERATION_ID))?.status.updated_at).toBe(T0.toISOString());
  });

  it("minVersion lifts a changed write above it", async () => {
    const { store } = kind.create(60);
    await store.record(GENERATION_ID, observe(upstream(), T0), 0);

    const result = await store.record(GENERATION_ID, observe(upstream({ progress_pct: 50 }), T1), 1, 5);

    expect(result.outcome).toBe("changed");
    expect(result.status.version).toBe(6);
  });

  it("equal content below minVersion is rewritten higher", async () => {
    const { store } = kind.create(60);
    await store.record(GENERATION_ID, observe(upstream(), T0), 0);

    const result = await store.record(GENERATION_ID, observe(upstream(), T1), 1, 4);

    expect(result.outcome).toBe("changed");
    expect(result.status.version).toBe(5);
    const unchanged = await store.record(GENERATION_ID, observe(upstream(), T1), 5, 4);
    expect(unchanged.outcome).toBe("unchanged");
  });

  it("get returns null for unknown generation", async () => {
    const { store } = kind.create(60);

    expect(await store.get(GENERATION_ID)).toBeNull();
  });

  it("same content in other key order is unchanged", async () => {
    const { store } = kind.create(60);
    const first = await store.record(GENERATION_ID, observe(upstream(), T0), 0);

    const second = await store.record(GENERATION_ID, observe(reverseKeys(upstream()), T1), 1);

    expect(second.outcome).toBe("unchanged");
    expect(second.status.version).toBe(1);
    expect(second.status.updated_at).toBe(T0.toISOString());
    expect(second.json).toBe(first.json);
  });

  it("same content with old expectedVersion is unchanged", async () => {
    const { store } = kind.create(60);
    await store.record(GENERATION_ID, observe(upstream(), T0), 0);

    const result = await store.record(GENERATION_ID, observe(upstream(), T1), 0);

    expect(result.outcome).toBe("unchanged");
  });

  it("upstream version and updated_at are not content", async () => {
    const { store } = kind.create(60);
    await store.record(GENERATION_ID, observe(upstream({ version: 7, updated_at: "a" }), T0), 0);

    const result = await store.record(GENERATION_ID, observe(upstream({ version: 8, updated_at: "b" }), T1), 1);

    expect(result.outcome).toBe("unchanged");
    expect(result.status.version).toBe(1);
    expect(result.status.updated_at).toBe(T0.toISOString());
  });

  it("unchanged record refreshes ttl", async () => {
    const { store, advance } = kind.create(1);
    await store.record(GENERATION_ID, observe(upstream(), T0), 0);
    await advance(600);

    const refresh = await store.record(GENERATION_ID, observe(upstream(), T1), 1);
    await advance(600);
    const afterRefresh = await store.get(GENERATION_ID);
    await advance(600);
    const afterTtl = await store.get(GENERATION_ID);

    expect(refresh.outcome).toBe("unchanged");
    expect(afterRefresh?.status.version).toBe(1);
    expect(afterTtl).toBeNull();
  });

  it("new content with expected version changes to v2", async () => {
    const { store } = kind.create(60);
    await store.record(GENERATION_ID, observe(upstream(), T0), 0);
    const processing = upstream({ status: "processing", progress_pct: 40, progress_pos_in_queue: 0 });

    const result = await store.record(GENERATION_ID, observe(processing, T1), 1);

    expect(result.outcome).toBe("changed");
    expect(result.status).toEqual({ ...processing, version: 2, updated_at: T1.toISOString() });
    expect((await store.get(GENERATION_ID))?.json).toBe(result.json);
  });

  it("stale expectedVersion writes nothing", async () => {
    const { store } = kind.create(60);
    await store.record(GENERATION_ID, observe(upstream(), T0), 0);
    const current = await store.record(GENERATION_ID, observe(upstream({ progress_pct: 10 }), T1), 1);

    const late = await store.record(GENERATION_ID, observe(upstream({ progress_pct: 5 }), T2), 1);

    expect(late.outcome).toBe("stale");
    expect(late.json).toBe(current.json);
    expect(late.status.version).toBe(2);
    expect((await store.get(GENERATION_ID))?.json).toBe(current.json);
  });

  it("write after expiry continues the version", async () => {
    const { store } = kind.create(60);

    const result = await store.record(GENERATION_ID, observe(upstream(), T0), 2);
    expect(result.outcome).toBe("changed");
    expect(result.status.version).toBe(3);
    expect((await store.get(GENERATION_ID))?.status.version).toBe(3);
  });

  it("invalid expectedVersion rejects", async () => {
    const { store } = kind.create(60);

    await expect(store.record(GENERATION_ID, observe(upstream(), T0), -1)).rejects.toThrow(RangeError);
    await expect(store.record(GENERATION_ID, observe(upstream(), T0), 1.5)).rejects.toThrow(RangeError);
  });

  it("versions increase by one per change", async () => {
    const { store } = kind.create(60);
    const sequence = [
      upstream(),
      upstream({ progress_pos_in_queue: 1 }),
      upstream({ status: "processing", progress_pct: 10, progress_pos_in_queue: 0 }),
      upstream({ status: "processing", progress_pct: 70, progress_pos_in_queue: 0 }),
      upstream({ status: "completed", progress_pct: 100, video_url: "https://cdn.example.test/v.mp4" }),
    ];

    const versions: number[] = [];
    let expectedVersion = 0;
    for (const [index, status] of sequence.entries()) {
      const result = await store.record(GENERATION_ID, observe(status, new Date(T0.getTime() + index * 1000)), expectedVersion);
      expect(result.outcome).toBe("changed");
      versions.push(result.status.version);
      expectedVersion = result.status.version;
    }

    expect(versions).toEqual([1, 2, 3, 4, 5]);
  });

  it("completed status expires after ttl", async () => {
    const { store, advance } = kind.create(1);
    const completed = upstream({ status: "completed", progress_pct: 100, completed_at: "2025-11-24T10:01:00.000000" });
    await store.record(GENERATION_ID, observe(completed, T0), 0);

    await advance(500);
    const beforeTtl = await store.get(GENERATION_ID);
    await advance(700);
    const afterTtl = await store.get(GENERATION_ID);

    expect(beforeTtl?.status.status).toBe("completed");
    expect(afterTtl).toBeNull();
  });

  it("json is JSON.stringify of status", async () => {
    const { store } = kind.create(60);

    const result = await store.record(GENERATION_ID, observe(upstream(), T0), 0);
    const stored = await store.get(GENERATION_ID);

    expect(result.json).toBe(JSON.stringify(result.status));
    expect(stored?.json).toBe(JSON.stringify(stored?.status));
  });

  it("unknown upstream fields are preserved", async () => {
    const { store } = kind.create(60);
    const withExtras = upstream({ resolution: "1080p", audio: { codec: "aac", channels: [1, 2] } });

    const result = await store.record(GENERATION_ID, observe(withExtras, T0), 0);
    const stored = await store.get(GENERATION_ID);

    expect(result.status).toMatchObject({ resolution: "1080p", audio: { codec: "aac", channels: [1, 2] } });
    expect(stored?.status).toMatchObject({ resolution: "1080p", audio: { codec: "aac", channels: [1, 2] } });
    expect(Object.keys(result.status)).toEqual([...Object.keys(withExtras), "version", "updated_at"]);
  });

  it("returned status is a copy", async () => {
    const { store } = kind.create(60);
    const result = await store.record(GENERATION_ID, observe(upstream(), T0), 0);

    result.status.status = "mutated";

    expect((await store.get(GENERATION_ID))?.status.status).toBe("pending");
  });
});

describe("stores together", () => {
  it("both stores write byte-identical json", async () => {
    const steps: Array<[UpstreamStatus, Date, number]> = [
      [upstream({ extra: { z: 1, a: [true, null] } }), T0, 0],
      [reverseKeys(upstream({ extra: { z: 1, a: [true, null] } })), T1, 1],
      [upstream({ status: "processing", progress_pct: 30 }), T1, 1],
      [upstream({ status: "processing", progress_pct: 20 }), T2, 1],
      [upstream({ status: "failed", error_message: "content policy: \u00e9\u2028" }), T2, 2],
    ];

    async function run(store: StatusStore): Promise<Array<Pick<RecordResult, "outcome" | "json">>> {
      const results = [];
      for (const [status, observedAt, expectedVersion] of steps) {
        const { outcome, json } = await store.record(GENERATION_ID, observe(status, observedAt), expectedVersion);
        results.push({ outcome, json });
      }
      return results;
    }

    const memory = await run(storeKinds[0]!.create(60).store);
    const redis = await run(storeKinds[1]!.create(60).store);

    expect(memory.map((result) => result.outcome)).toEqual(["changed", "unchanged", "changed", "stale", "changed"]);
    expect(redis).toEqual(memory);
  });
});

describe("RedisStatusStore", () => {
  it("20 concurrent changes have one winner", async () => {
    const keyPrefix = uniquePrefix();
    const redisConnections = Array.from({ length: 5 }, () => connect());
    const stores = Array.from(
      { length: 20 },
      (_, index) => new RedisStatusStore({ redis: redisConnections[index % 5]!, ttlSeconds: 60, keyPrefix }),
    );
    await stores[0]!.record(GENERATION_ID, observe(upstream(), T0), 0);

    const results = await Promise.all(
      stores.map((store, index) =>
        store.record(GENERATION_ID, observe(upstream({ status: "processing", progress_pct: index + 1 }), T1), 1),
      ),
    );

    const changed = results.filter((result) => result.outcome === "changed");
    const stale = results.filter((result) => result.outcome === "stale");
    expect(changed).toHaveLength(1);
    expect(stale).toHaveLength(19);
    expect(changed[0]!.status.version).toBe(2);
    expect(stale.every((result) => result.json === changed[0]!.json)).toBe(true);
    expect((await stores[0]!.get(GENERATION_ID))?.json).toBe(changed[0]!.json);
  });

  it("statusKey tags the generation id", () => {
    expect(statusKey("relay:", GENERATION_ID)).toBe(`relay:{${GENERATION_ID}}:status`);
  });

  it("keySlot matches Redis reference values", () => {
    // Check value of CRC16/XMODEM for "123456789".
    expect(crc16(Buffer.from("123456789"))).toBe(0x31c3);
    // Examples from the CLUSTER KEYSLOT page of the Redis documentation.
    expect(keySlot("somekey")).toBe(11058);
    expect(keySlot("foo{hash_tag}")).toBe(2515);
    expect(keySlot("bar{hash_tag}")).toBe(2515);
    // Hash tag rules: an empty tag hashes the whole key, and only the first {...} counts.
    expect(keySlot("foo{}{bar}")).toBe(crc16(Buffer.from("foo{}{bar}")) % 16384);
    expect(keySlot("foo{{bar}}zap")).toBe(crc16(Buffer.from("{bar")) % 16384);
    expect(keySlot("foo{bar}{zap}")).toBe(crc16(Buffer.from("bar")) % 16384);
  });

  it("keys of one generation share one slot", async () => {
    const keyPrefix = uniquePrefix();
    const redis = connect();
    const store = new RedisStatusStore({ redis, ttlSeconds: 60, keyPrefix });
    const generationIds = [GENERATION_ID, randomUUID(), randomUUID()];
    for (const generationId of generationIds) {
      await store.record(generationId, observe(upstream({ generation_id: generationId }), T0), 0);
      await store.record(generationId, observe(upstream({ generation_id: generationId, progress_pct: 5 }), T1), 1);
    }

    const keys: string[] = [];
    let cursor = "0";
    do {
      const [next, batch] = await redis.scan(cursor, "MATCH", `${keyPrefix}*`, "COUNT", 1000);
      keys.push(...batch);
      cursor = next;
    } while (cursor !== "0");

    for (const generationId of generationIds) {
      const generationKeys = keys.filter((key) => key.includes(`{${generationId}}`));
      expect(generationKeys.length).toBeGreaterThan(0);
      expect(new Set(generationKeys.map(keySlot))).toEqual(new Set([keySlot(generationId)]));
    }
    expect(keys.every((key) => generationIds.some((generationId) => key.includes(`{${generationId}}`)))).toBe(true);
  });

  it("stores fields at, fp, v and json", async () => {
    const keyPrefix = uniquePrefix();
    const redis = connect();
    const store = new RedisStatusStore({ redis, ttlSeconds: 60, keyPrefix });

    const result = await store.record(GENERATION_ID, observe(upstream(), T0), 0);
    const hash = await redis.hgetall(statusKey(keyPrefix, GENERATION_ID));
    const ttlMs = await redis.pttl(statusKey(keyPrefix, GENERATION_ID));

    expect(Object.keys(hash).sort()).toEqual(["at", "fp", "json", "v"]);
    expect(hash.v).toBe("1");
    expect(hash.json).toBe(result.json);
    expect(ttlMs).toBeGreaterThan(50_000);
    expect(ttlMs).toBeLessThanOrEqual(60_000);
  });

  it("keyPrefix with a brace is rejected", () => {
    expect(() => new RedisStatusStore({ redis: connect(), ttlSeconds: 60, keyPrefix: "relay:{x}:" })).toThrow(
      /must not contain/,
    );
  });

  it("close leaves the connection open", async () => {
    const redis = connect();
    const store = new RedisStatusStore({ redis, ttlSeconds: 60, keyPrefix: uniquePrefix() });

    await store.close();

    expect(await redis.ping()).toBe("PONG");
  });
});
