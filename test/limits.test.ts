/**
 * Per-address and per-user limits over real HTTP: each limit is reached, its
 * 429 names the limit and carries Retry-After, nothing reaches Runblob for a
 * rejected request, and the limit resets. Redis-backed limits are also
 * checked across two relays sharing one Redis.
 */
import { randomUUID } from "node:crypto";
import { afterEach, describe, expect, inject, it } from "vitest";
import { Redis } from "ioredis";
import { startSimulator } from "./support/relay-harness.js";
import type { RelayHandle, SimulatorHandle } from "./support/relay-harness.js";
import { CleanupStack, httpRequest, openProbeSse, openProbeWebSocket } from "./support/probe-clients.js";
import type { HttpResult } from "./support/probe-clients.js";
import { SecretLedger, bearer, hsToken, randomSecret, sleep } from "./support/auth-support.js";
import { startRedisServer } from "./support/redis-server.js";
import { MemoryLimitsStore } from "../src/limits/limits-store.js";
import type { LimitsStore } from "../src/limits/limits-store.js";
import { RedisLimitsStore } from "../src/limits/redis-limits-store.js";
import { limitWindowAt } from "../src/limits/generation-limits.js";

const ledger = new SecretLedger();
const cleanup = new CleanupStack();
afterEach(() => cleanup.run());

const jwtSecret = ledger.add(randomSecret("jwt"));

async function setup(env: Record<string, string>, simulatorOptions: Parameters<typeof startSimulator>[0] = {}) {
  const sim: SimulatorHandle = await startSimulator({ queueMs: 600_000, processingMs: 600_000, ...simulatorOptions });
  cleanup.add(() => sim.close());
  const relay: RelayHandle = await ledger.startRelay(sim, { AUTH_MODE: "jwt", AUTH_JWT_SECRET: jwtSecret, ...env });
  cleanup.add(() => relay.close());
  return { sim, relay };
}

async function tokenFor(user: string): Promise<Record<string, string>> {
  return bearer(ledger.add(await hsToken({ secret: jwtSecret, sub: user })));
}

function expectLimit(result: HttpResult, variable: string): string {
  expect(result.status, result.text).toBe(429);
  expect(result.json.detail).toContain(variable);
  expect(Number(result.headers["retry-after"])).toBeGreaterThan(0);
  return result.json.detail as string;
}

const redisEnv = () => ({ REDIS_URL: inject("redisUrl"), REDIS_KEY_PREFIX: `limits-${randomUUID().slice(0, 8)}:` });

describe("request rate limits", () => {
  it("RATE_LIMIT_PER_IP rejects then resets", async () => {
    const { relay } = await setup({ RATE_LIMIT_PER_IP: "5", RATE_LIMIT_WINDOW_SECONDS: "2" });
    const headers = await tokenFor("alice");
    for (let i = 0; i < 5; i += 1) expect((await httpRequest(`${relay.baseUrl}/v1/sora/usage`, { headers })).status).toBe(200);
    const rejected = await httpRequest(`${relay.baseUrl}/v1/sora/usage`, { headers });
    expect(expectLimit(rejected, "RATE_LIMIT_PER_IP")).toMatch(/^request rate limit reached: at most 5 requests per 2 s per client address/);
    // Unauthenticated requests count too: the address limit runs before authentication.
    expect((await httpRequest(`${relay.baseUrl}/v1/sora/usage`)).status).toBe(429);
    // Health probes are exempt.
    expect((await httpRequest(`${relay.baseUrl}/healthz`)).status).toBe(200);

    await sleep(Number(rejected.headers["retry-after"]) * 1000 + 100);
    expect((await httpRequest(`${relay.baseUrl}/v1/sora/usage`, { headers })).status).toBe(200);
  });

  it("RATE_LIMIT_PER_IP counts proxied clients apart with TRUST_PROXY", async () => {
    const { relay } = await setup({ RATE_LIMIT_PER_IP: "2", RATE_LIMIT_WINDOW_SECONDS: "60", TRUST_PROXY: "127.0.0.1" });
    const from = (address: string) => ({ "x-forwarded-for": address });
    expect((await httpRequest(`${relay.baseUrl}/v1/sora/usage`, { headers: from("203.0.113.1") })).status).toBe(401);
    expect((await httpRequest(`${relay.baseUrl}/v1/sora/usage`, { headers: from("203.0.113.1") })).status).toBe(401);
    expectLimit(await httpRequest(`${relay.baseUrl}/v1/sora/usage`, { headers: from("203.0.113.1") }), "RATE_LIMIT_PER_IP");
    expect((await httpRequest(`${relay.baseUrl}/v1/sora/usage`, { headers: from("203.0.113.2") })).status).toBe(401);
  });

  it("RATE_LIMIT_PER_USER holds across instances", async () => {
    const env = { ...redisEnv(), RATE_LIMIT_PER_USER: "3", RATE_LIMIT_WINDOW_SECONDS: "2" };
    const { sim, relay } = await setup(env);
    const second = await ledger.startRelay(sim, { AUTH_MODE: "jwt", AUTH_JWT_SECRET: jwtSecret, ...env });
    cleanup.add(() => second.close());
    const alice = await tokenFor("alice");
    const bob = await tokenFor("bob");

    expect((await httpRequest(`${relay.baseUrl}/v1/sora/usage`, { headers: alice })).status).toBe(200);
    expect((await httpRequest(`${second.baseUrl}/v1/sora/usage`, { headers: alice })).status).toBe(200);
    expect((await httpRequest(`${relay.baseUrl}/v1/sora/usage`, { headers: alice })).status).toBe(200);
    const rejected = await httpRequest(`${second.baseUrl}/v1/sora/usage`, { headers: alice });
    expectLimit(rejected, "RATE_LIMIT_PER_USER");
    expect((await httpRequest(`${second.baseUrl}/v1/sora/usage`, { headers: bob })).status).toBe(200);

    await sleep(Number(rejected.headers["retry-after"]) * 1000 + 100);
    expect((await httpRequest(`${second.baseUrl}/v1/sora/usage`, { headers: alice })).status).toBe(200);
  });
});

describe("generation limits", () => {
  it("GENERATIONS_PER_HOUR rejects before Runblob", async () => {
    const { sim, relay } = await setup({ ...redisEnv(), GENERATIONS_PER_HOUR: "2" });
    const headers = await tokenFor("alice");
    const generate = () => httpRequest(`${relay.baseUrl}/v1/sora/generate`, { headers, json: { prompt: "hourly" } });
    expect((await generate()).status).toBe(201);
    expect((await generate()).status).toBe(201);
    const before = sim.simulator.stats.requests("generate");
    const rejected = await generate();
    const detail = expectLimit(rejected, "GENERATIONS_PER_HOUR=2");
    const nextHour = new Date((Math.floor(Date.now() / 3_600_000) + 1) * 3_600_000).toISOString();
    expect(detail).toContain(`the count resets at ${nextHour}`);
    expect(sim.simulator.stats.requests("generate")).toBe(before);
    expect((await httpRequest(`${relay.baseUrl}/v1/sora/generate`, { headers: await tokenFor("bob"), json: { prompt: "b" } })).status).toBe(201);
  });

  it("does not count generations Runblob refused", async () => {
    const { sim, relay } = await setup({ GENERATIONS_PER_HOUR: "1" });
    const headers = await tokenFor("alice");
    sim.simulator.control.injectFaults("generate", [{ status: 402, body: JSON.stringify({ detail: "INSUFFICIENT_CREDITS" }), contentType: "application/json" }]);
    expect((await httpRequest(`${relay.baseUrl}/v1/sora/generate`, { headers, json: { prompt: "refused" } })).status).toBe(402);
    const usage = await httpRequest(`${relay.baseUrl}/v1/sora/usage`, { headers });
    expect(usage.json.generations_this_hour.used).toBe(0);
    expect(usage.json.active_generations.used).toBe(0);
    expect((await httpRequest(`${relay.baseUrl}/v1/sora/generate`, { headers, json: { prompt: "accepted" } })).status).toBe(201);
  });

  it("frees the slot of a refused generate whose client left", async () => {
    const { sim, relay } = await setup({ GENERATIONS_PER_HOUR: "1" });
    const headers = await tokenFor("alice");
    // Runblob refuses after 500 ms, when the client has already left.
    sim.simulator.control.setLatency(500);
    sim.simulator.control.injectFaults("generate", [{ status: 402, body: JSON.stringify({ detail: "INSUFFICIENT_CREDITS" }), contentType: "application/json" }]);
    const controller = new AbortController();
    const abandoned = fetch(`${relay.baseUrl}/v1/sora/generate`, {
      method: "POST",
      headers: { ...headers, "content-type": "application/json" },
      body: JSON.stringify({ prompt: "abandoned" }),
      signal: controller.signal,
    }).catch(() => undefined);
    await sleep(100);
    controller.abort();
    await abandoned;
    await sleep(1000);
    sim.simulator.control.setLatency(0);

    const usage = await httpRequest(`${relay.baseUrl}/v1/sora/usage`, { headers });
    expect(usage.json.generations_this_hour.used).toBe(0);
    expect(usage.json.active_generations.used).toBe(0);
  });

  it("MAX_ACTIVE_GENERATIONS frees a slot on a final status", async () => {
    const { sim, relay } = await setup({ ...redisEnv(), MAX_ACTIVE_GENERATIONS: "1" });
    const headers = await tokenFor("alice");
    const generate = () => httpRequest(`${relay.baseUrl}/v1/sora/generate`, { headers, json: { prompt: "active" } });
    const first = await generate();
    expect(first.status).toBe(201);
    expectLimit(await generate(), "MAX_ACTIVE_GENERATIONS=1");

    sim.simulator.control.finish(first.json.generation_id as string, "completed");
    const status = () => httpRequest(`${relay.baseUrl}/v1/sora/generations/${first.json.generation_id as string}`, { headers });
    let final = false;
    for (let attempt = 0; attempt < 50 && !final; attempt += 1) {
      final = (await status()).json.status === "completed";
      if (!final) await sleep(100);
    }
    expect(final).toBe(true);
    expect((await generate()).status).toBe(201);
  });

  it("DAILY_SPEND_LIMIT_USD sums Runblob's prices", async () => {
    const { sim, relay } = await setup({ ...redisEnv(), DAILY_SPEND_LIMIT_USD: "0.2", MAX_ACTIVE_GENERATIONS: "10" });
    const headers = await tokenFor("alice");
    const generate = () => httpRequest(`${relay.baseUrl}/v1/sora/generate`, { headers, json: { prompt: "spend", duration: 10 } });
    expect((await generate()).json.price).toBe("0.1200");
    expect((await generate()).status).toBe(201);
    const before = sim.simulator.stats.requests("generate");
    const detail = expectLimit(await generate(), "DAILY_SPEND_LIMIT_USD=0.2");
    const midnight = new Date((Math.floor(Date.now() / 86_400_000) + 1) * 86_400_000).toISOString();
    expect(detail).toBe(
      `daily spend limit reached: this user spent 0.2400 USD today (UTC), the maximum set by DAILY_SPEND_LIMIT_USD=0.2; the spend resets at ${midnight}`,
    );
    expect(sim.simulator.stats.requests("generate")).toBe(before);

    const usage = await httpRequest(`${relay.baseUrl}/v1/sora/usage`, { headers });
    expect(usage.json).toEqual({
      user_id: "alice",
      generations_this_hour: { used: 2, limit: 30, resets_at: expect.any(String) },
      active_generations: { used: 2, limit: 10 },
      spend_today_usd: { used: "0.2400", limit: "0.2000", resets_at: midnight },
      open_connections: { used: 0, limit: 20 },
    });
  });
});

describe("limits without Redis", () => {
  it("reject generate requests with 503", async () => {
    const redisServer = await startRedisServer();
    cleanup.add(() => redisServer.stop());
    const { sim, relay } = await setup({ REDIS_URL: redisServer.url, REDIS_KEY_PREFIX: "down:" });
    const headers = await tokenFor("alice");
    expect((await httpRequest(`${relay.baseUrl}/v1/sora/generate`, { headers, json: { prompt: "with redis" } })).status).toBe(201);

    await redisServer.stop();
    const before = sim.simulator.stats.requests("generate");
    const result = await httpRequest(`${relay.baseUrl}/v1/sora/generate`, { headers, json: { prompt: "without redis" } });
    expect(result.status, result.text).toBe(503);
    expect(result.json.detail).toMatch(/could not check the generation limits, so no generation was started/);
    expect(sim.simulator.stats.requests("generate")).toBe(before);
    // Request rates fail open, so the list gets past them and fails on the ownership store instead.
    const list = await httpRequest(`${relay.baseUrl}/v1/sora/generations`, { headers });
    expect(list.status, list.text).toBe(503);
    expect(list.headers["retry-after"]).toBe("1");
  });
});

describe("MAX_CONNECTIONS_PER_USER", () => {
  it("rejects a third connection until one closes", async () => {
    const { relay } = await setup({ ...redisEnv(), MAX_CONNECTIONS_PER_USER: "2" });
    const headers = await tokenFor("alice");
    const created = await httpRequest(`${relay.baseUrl}/v1/sora/generate`, { headers, json: { prompt: "connections" } });
    const id = created.json.generation_id as string;

    const stream = await openProbeSse(`${relay.baseUrl}/v1/sora/generations/${id}/events`, headers);
    cleanup.add(() => stream.close());
    const socket = await openProbeWebSocket(relay.wsUrl, headers);
    cleanup.add(() => socket.close());
    expectLimit(await httpRequest(`${relay.baseUrl}/v1/sora/events?ids=${id}`, { headers }), "MAX_CONNECTIONS_PER_USER");
    await expect(openProbeWebSocket(relay.wsUrl, headers)).rejects.toThrow("HTTP 429");
    const usage = await httpRequest(`${relay.baseUrl}/v1/sora/usage`, { headers });
    expect(usage.json.open_connections).toEqual({ used: 2, limit: 2 });
    // Another user is not affected.
    const other = await openProbeWebSocket(relay.wsUrl, await tokenFor("bob"));
    cleanup.add(() => other.close());

    socket.close();
    await socket.closed;
    let reopened: Awaited<ReturnType<typeof openProbeWebSocket>> | undefined;
    for (let attempt = 0; attempt < 50 && reopened === undefined; attempt += 1) {
      reopened = await openProbeWebSocket(relay.wsUrl, headers).catch(() => undefined);
      if (reopened === undefined) await sleep(50);
    }
    expect(reopened).toBeDefined();
    cleanup.add(() => reopened?.close());
  });
});

describe("limit windows", () => {
  const quota = { perHour: 1, active: 10, spendUnits: 1000, activeMaxAgeMs: 60_000 };
  const stores: Array<{ name: string; create: () => LimitsStore }> = [
    { name: "memory", create: () => new MemoryLimitsStore() },
    {
      name: "redis",
      create: () => {
        const redis = new Redis(inject("redisUrl"));
        cleanup.add(() => redis.quit());
        return new RedisLimitsStore(redis, `windows-${randomUUID().slice(0, 8)}:`);
      },
    },
  ];

  it.each(stores)("reset the hour and the day in the $name store", async ({ create }) => {
    const store = create();
    const now = Date.UTC(2026, 0, 1, 23, 30);
    const user = "user-key";
    const first = await store.reserveGeneration(user, limitWindowAt(now), quota, []);
    expect(first.ok).toBe(true);
    if (!first.ok) return;
    await store.settleGeneration(user, limitWindowAt(now), first.token, { kind: "created", generationId: randomUUID(), priceUnits: 1000, createdAtMs: now });

    const sameHour = await store.reserveGeneration(user, limitWindowAt(now + 60_000), quota, []);
    expect(sameHour).toMatchObject({ ok: false, limit: "generations_per_hour", used: 1 });
    const sameDay = await store.reserveGeneration(user, limitWindowAt(now + 60_000), { ...quota, perHour: 10 }, []);
    expect(sameDay).toMatchObject({ ok: false, limit: "daily_spend", used: 1000 });

    // 23:30 + 1 h is the next hour and the next UTC day: both counts start over.
    const nextDay = await store.reserveGeneration(user, limitWindowAt(now + 3_600_000), quota, []);
    expect(nextDay.ok).toBe(true);
  });
});

describe("log output of the limit tests", () => {
  it("contains no secret used in this file", () => {
    ledger.expectNoLeaks();
  });
});
