/**
 * Several relay instances on one Redis, each a separate process, with real
 * WebSocket and SSE clients and the simulator as Runblob. The tests cover one
 * poll per generation per interval for the whole cluster, failover after
 * SIGKILL, a Redis outage, graceful leave on SIGTERM, stale writes and hash
 * tags.
 *
 * Timing tolerances are one poll at each edge of a measuring window, because
 * a window rarely starts or ends in step with a generation's polls.
 */
import { randomUUID } from "node:crypto";
import { availableParallelism, loadavg } from "node:os";
import { setTimeout as sleep } from "node:timers/promises";
import { Redis } from "ioredis";
import { pino } from "pino";
import { afterAll, afterEach, beforeAll, describe, expect, it, onTestFailed } from "vitest";
import { MemoryChangeBus } from "../src/bus/memory-bus.js";
import type { WatchEvent } from "../src/bus/change-bus.js";
import { RedisPollLease, leaseKeys } from "../src/cluster/redis-poll-lease.js";
import { RedisStatusStore, statusKey } from "../src/store/redis-store.js";
import { WatchScheduler } from "../src/watch/watch-scheduler.js";
import type { UpstreamStatus } from "../src/wire/upstream.js";
import { openEventSource, openWebSocket } from "./support/clients.js";
import type { SseClient, WsClient } from "./support/clients.js";
import { keySlot } from "./support/key-slot.js";
import { startRedisServer } from "./support/redis-server.js";
import type { RedisServer } from "./support/redis-server.js";
import { startRelay, startSimulator } from "./support/relay-harness.js";
import type { SimulatorHandle } from "./support/relay-harness.js";
import { startRelayProcess } from "./support/relay-process.js";
import type { RelayProcess } from "./support/relay-process.js";
import { StatusRequestLog } from "./support/status-request-log.js";

type Status = {
  generation_id: string;
  status: string;
  version: number;
  progress_pct: number | null;
};

const FINAL = new Set(["completed", "failed"]);

// --- Clean-up ---------------------------------------------------------------

const cleanups: Array<() => unknown> = [];

/** Registers a clean-up step. Steps run in reverse order after each test, and one failing step does not skip the rest. */
function onCleanup(step: () => unknown): void {
  cleanups.push(step);
}

afterEach(async () => {
  for (const step of cleanups.splice(0).reverse()) {
    try {
      await step();
    } catch {
      // A client or process that is already gone.
    }
  }
});

let redisServer: RedisServer;
beforeAll(async () => {
  redisServer = await startRedisServer();
});
afterAll(async () => {
  await redisServer?.stop();
});

// --- Set-up helpers ---------------------------------------------------------

/** Starts a simulator whose own lifecycle never moves within a test, so statuses change only through its control API. */
async function startQuietSimulator(): Promise<{ sim: SimulatorHandle; log: StatusRequestLog }> {
  const sim = await startSimulator({ queueStart: 1, queueMs: 3_600_000, processingMs: 3_600_000 });
  onCleanup(() => sim.close());
  return { sim, log: new StatusRequestLog(sim) };
}

/** Creates generations in the simulator, each pinned at `processing` with `progress_pct`, so nothing changes until the test forces it. */
function createPinned(sim: SimulatorHandle, count: number, progressPct = 10): string[] {
  return Array.from({ length: count }, () => {
    const id = sim.simulator.control.create();
    sim.simulator.control.force(id, { status: "processing", progress_pct: progressPct });
    return id;
  });
}

function forceProgress(sim: SimulatorHandle, ids: readonly string[], progressPct: number): void {
  for (const id of ids) sim.simulator.control.force(id, { status: "processing", progress_pct: progressPct });
}

function uniquePrefix(): string {
  return `cluster-${randomUUID().slice(0, 8)}:`;
}

/** Log lines of each relay printed when a test fails, each cut to RELAY_LOG_LINE_CHARACTERS. */
const RELAY_LOG_LINES_ON_FAILURE = 20;
const RELAY_LOG_LINE_CHARACTERS = 400;

/** Starts `count` relay processes against the simulator and one Redis, named relay-0, relay-1, ... */
async function startCluster(
  count: number,
  sim: SimulatorHandle,
  options: { redisUrl: string; prefix: string; env?: Record<string, string> },
): Promise<RelayProcess[]> {
  const started = await Promise.allSettled(
    Array.from({ length: count }, (_, index) =>
      startRelayProcess({
        name: `relay-${index}`,
        env: {
          RUNBLOB_TOKEN: sim.token,
          RUNBLOB_BASE_URL: sim.url,
          REDIS_URL: options.redisUrl,
          REDIS_KEY_PREFIX: options.prefix,
          POLL_MAX_ATTEMPTS: "100000",
          WS_MAX_SUBSCRIPTIONS: "1000",
          WS_MAX_MESSAGES_PER_SECOND: "5000",
          // These tests measure polling and fan-out, so request budgets and client limits are lifted.
          UPSTREAM_MAX_RPS: "100000",
          UPSTREAM_CONNECTIONS: "64",
          UPSTREAM_MAX_CONCURRENT: "64",
          RATE_LIMIT_PER_IP: "0",
          RATE_LIMIT_PER_USER: "0",
          MAX_CONNECTIONS_PER_USER: "100000",
          ...options.env,
        },
      }),
    ),
  );
  const relays: RelayProcess[] = [];
  for (const result of started) {
    if (result.status === "fulfilled") {
      relays.push(result.value);
      onCleanup(() => result.value.stop());
    }
  }
  const failure = started.find((result) => result.status === "rejected");
  if (failure !== undefined) throw failure.reason;
  onTestFailed(() => {
    for (const relay of relays) {
      const lines = relay
        .output()
        .trimEnd()
        .split("\n")
        .slice(-RELAY_LOG_LINES_ON_FAILURE)
        .map((line) => line.slice(0, RELAY_LOG_LINE_CHARACTERS));
      console.log(`last ${lines.length} log lines of ${relay.name} (pid ${relay.pid}):\n${lines.join("\n")}`);
    }
  });
  return relays;
}

function connectRedis(url: string): Redis {
  const redis = new Redis(url, { maxRetriesPerRequest: 1 });
  redis.on("error", () => undefined);
  onCleanup(() => redis.disconnect());
  return redis;
}

// --- Clients ----------------------------------------------------------------

async function openSocket(url: string): Promise<WsClient> {
  const client = await openWebSocket(url);
  // Errors after the handshake (a reset when a relay dies) are followed by "close". Without a listener, ws would throw them.
  client.socket.on("error", () => undefined);
  onCleanup(() => client.socket.terminate());
  return client;
}

function openStream(baseUrl: string, generationId: string, lastEventId?: string): SseClient {
  const url = `${baseUrl}/v1/sora/generations/${generationId}/events`;
  const client = openEventSource(url, lastEventId === undefined ? {} : { lastEventId });
  onCleanup(() => client.close());
  return client;
}

function wsStatuses(client: WsClient, generationId: string): Status[] {
  const statuses: Status[] = [];
  for (const message of client.received) {
    if (message.type !== "status") continue;
    const status = message.generation as Status;
    if (status.generation_id === generationId) statuses.push(status);
  }
  return statuses;
}

function sseStatuses(client: SseClient): Status[] {
  return client.received.filter((event) => event.type === "status").map((event) => JSON.parse(event.data) as Status);
}

/**
 * One subscriber of one generation, over one connection or, after a
 * reconnect, several in turn. `segments` returns the statuses each
 * connection received, in connection order.
 */
class Subscriber {
  readonly #segments: Array<() => Status[]> = [];

  constructor(
    readonly label: string,
    readonly generationId: string,
  ) {}

  static ws(label: string, client: WsClient, generationId: string): Subscriber {
    return new Subscriber(label, generationId).follow(() => wsStatuses(client, generationId));
  }

  static sse(label: string, client: SseClient, generationId: string): Subscriber {
    return new Subscriber(label, generationId).follow(() => sseStatuses(client));
  }

  /** Adds the statuses of a new connection, after a reconnect. */
  follow(segment: () => Status[]): this {
    this.#segments.push(segment);
    return this;
  }

  segments(): Status[][] {
    return this.#segments.map((segment) => segment());
  }

  statuses(): Status[] {
    return this.segments().flat();
  }

  last(): Status | undefined {
    return this.statuses().at(-1);
  }

  /** True once a status with this progress (and not final) or, with "final", a final status arrived. */
  has(expected: number | "final"): boolean {
    return this.statuses().some((status) =>
      expected === "final" ? FINAL.has(status.status) : status.status === "processing" && status.progress_pct === expected,
    );
  }
}

/** Subscribes one socket to every id at once, so the relay must allow that many messages per second. */
function subscribeAll(client: WsClient, ids: readonly string[], afterVersion?: (id: string) => number): void {
  for (const id of ids) {
    const after = afterVersion?.(id);
    client.send({ type: "subscribe", generation_id: id, ...(after === undefined ? {} : { after_version: after }) });
  }
}

/** Polls `condition` every 50 ms until it is true and returns the time that took. For conditions that emit no event. */
async function waitUntil(condition: () => boolean | Promise<boolean>, description: () => string, timeoutMs: number): Promise<number> {
  const started = performance.now();
  while (!(await condition())) {
    if (performance.now() - started > timeoutMs) throw new Error(`timed out after ${timeoutMs} ms waiting until ${description()}`);
    await sleep(50);
  }
  return performance.now() - started;
}

/** Waits until every subscriber has received `expected`, naming the first few that have not when time runs out. */
async function waitForAll(subscribers: readonly Subscriber[], expected: number | "final", timeoutMs: number): Promise<number> {
  const missing = () => subscribers.filter((subscriber) => !subscriber.has(expected));
  return waitUntil(
    () => missing().length === 0,
    () => {
      const late = missing();
      const examples = late.slice(0, 3).map((subscriber) => `${subscriber.label} last got ${JSON.stringify(subscriber.last())}`);
      return `all ${subscribers.length} subscribers received ${expected === "final" ? "a final status" : `progress ${expected}`}; ${late.length} did not, e.g. ${examples.join("; ")}`;
    },
    timeoutMs,
  );
}

/**
 * Waits like waitForAll, but records the subscribers still missing `expected`
 * as a soft failure, so the test goes on to its later checks.
 */
async function expectAllReceive(subscribers: readonly Subscriber[], expected: number | "final", timeoutMs: number, when: string): Promise<void> {
  await waitForAll(subscribers, expected, timeoutMs).catch(() => undefined);
  const missing = subscribers
    .filter((subscriber) => !subscriber.has(expected))
    .map((subscriber) => `${subscriber.label} ${subscriber.generationId}: ${describeStatuses(subscriber)}`);
  const expectedStatus = expected === "final" ? "a final status" : `progress ${expected}`;
  expect.soft(missing, `subscribers of ${subscribers.length} that did not receive ${expectedStatus} ${when}`).toEqual([]);
}

function describeStatuses(subscriber: Subscriber): string {
  return subscriber
    .statuses()
    .map((status) => `v${status.version} ${status.status} ${status.progress_pct ?? ""}`.trim())
    .join(", ");
}

/** Describes each subscriber whose versions ever go backwards or repeat, with the statuses it received, for assertion messages. */
function versionRegressions(subscribers: readonly Subscriber[]): string[] {
  const problems: string[] = [];
  for (const subscriber of subscribers) {
    const versions = subscriber.statuses().map((status) => status.version);
    if (versions.some((version, index) => index > 0 && version <= versions[index - 1]!)) {
      problems.push(`${subscriber.label} ${subscriber.generationId}: ${describeStatuses(subscriber)}`);
    }
  }
  return problems;
}

async function getJson(url: string): Promise<{ status: number; body: any }> {
  const response = await fetch(url, { signal: AbortSignal.timeout(5000) });
  const text = await response.text();
  return { status: response.status, body: text === "" ? undefined : JSON.parse(text) };
}

/** Returns the instance id holding each generation's poll lease, or null where none holds it. */
async function leaseOwners(redis: Redis, prefix: string, ids: readonly string[]): Promise<Map<string, string | null>> {
  const owners = await redis.mget(ids.map((id) => leaseKeys(prefix, id)[0]));
  return new Map(ids.map((id, index) => [id, owners[index] ?? null]));
}

function describeTimes(values: readonly number[]): string {
  const sorted = [...values].sort((a, b) => a - b);
  const at = (fraction: number) => Math.round(sorted[Math.min(sorted.length - 1, Math.floor(fraction * sorted.length))] ?? NaN);
  return `min ${at(0)} ms, median ${at(0.5)} ms, p95 ${at(0.95)} ms, max ${at(1)} ms (n=${sorted.length})`;
}

// --- Tests ------------------------------------------------------------------

describe("relay cluster on one Redis", () => {
  it("polls once per interval for 6,000 subscriptions", { timeout: 150_000 }, async () => {
    // 1000 ms rather than less: a poll's next due time counts from its start, so scheduling delay on
    // loaded cores lengthens every period, and a longer interval keeps that delay a small fraction.
    const intervalMs = 1000;
    const generationCount = 200;
    const socketsPerInstance = 9;
    const { sim, log } = await startQuietSimulator();
    const ids = Array.from({ length: generationCount }, () => sim.simulator.control.create());
    const relays = await startCluster(3, sim, {
      redisUrl: redisServer.url,
      prefix: uniquePrefix(),
      env: { POLL_INTERVAL_MS: String(intervalMs) },
    });

    // Per generation: 9 WebSocket subscriptions and 1 SSE stream on each of the 3 instances, 30 in all.
    const subscribers: Subscriber[] = [];
    for (const relay of relays) {
      for (let socketIndex = 0; socketIndex < socketsPerInstance; socketIndex++) {
        const socket = await openSocket(relay.wsUrl);
        subscribeAll(socket, ids);
        for (const id of ids) subscribers.push(Subscriber.ws(`${relay.name} ws${socketIndex}`, socket, id));
      }
    }
    for (const relay of relays) {
      for (const id of ids) subscribers.push(Subscriber.sse(`${relay.name} sse`, openStream(relay.baseUrl, id), id));
      // Spread the stream requests a little, so the relays do not read 200 statuses at the same instant.
      await sleep(200);
    }
    expect(subscribers).toHaveLength(6000);

    const firstStatusMs = await waitUntil(
      () => subscribers.every((subscriber) => subscriber.statuses().length > 0),
      () => `every subscriber received its first status; ${subscribers.filter((s) => s.statuses().length === 0).length} did not`,
      60_000,
    );
    // One more interval, so reads made for new subscribers are out of the window.
    await sleep(intervalMs);

    const windowIntervals = 8;
    const from = performance.now();
    await sleep(windowIntervals * intervalMs);
    const to = performance.now();
    const intervals = (to - from) / intervalMs;
    const counts = ids.map((id) => log.countBetween(id, from, to));
    const total = counts.reduce((sum, count) => sum + count, 0);
    const ratio = total / (generationCount * intervals);
    console.log(
      `3 instances, ${generationCount} generations, ${subscribers.length} subscriptions (the last first status arrived ${Math.round(firstStatusMs)} ms after the last subscription request): ` +
        `${total} status requests in ${intervals.toFixed(2)} intervals of ${intervalMs} ms = ${ratio.toFixed(3)} per generation per interval ` +
        `(per generation min ${Math.min(...counts)}, max ${Math.max(...counts)}; 1-minute load average ${loadavg()[0]!.toFixed(1)} on ${availableParallelism()} cores)`,
    );

    expect(ratio).toBeGreaterThanOrEqual((windowIntervals - 1) / windowIntervals);
    expect(ratio).toBeLessThanOrEqual((windowIntervals + 1) / windowIntervals);
    expect(Math.max(...counts)).toBeLessThanOrEqual(Math.round(intervals) + 1);
    expect(Math.min(...counts), "polls of the least polled generation").toBeGreaterThan(0);
    expect(versionRegressions(subscribers)).toEqual([]);
    for (const relay of relays) expect(relay.isRunning()).toBe(true);
  });

  it("fails over after SIGKILL of one instance", { timeout: 120_000 }, async () => {
    // 1000 ms, so the 150 ms tolerance below absorbs scheduling delay on loaded cores.
    const intervalMs = 1000;
    const { sim, log } = await startQuietSimulator();
    const ids = createPinned(sim, 60, 10);
    const prefix = uniquePrefix();
    const redis = connectRedis(redisServer.url);
    const relays = await startCluster(3, sim, { redisUrl: redisServer.url, prefix, env: { POLL_INTERVAL_MS: String(intervalMs) } });

    // Each instance: one socket watching every generation, and SSE streams for a third of them.
    const sockets = new Map<RelayProcess, WsClient>();
    const streams = new Map<RelayProcess, Map<string, SseClient>>();
    const subscribers: Subscriber[] = [];
    for (const [index, relay] of relays.entries()) {
      const socket = await openSocket(relay.wsUrl);
      sockets.set(relay, socket);
      subscribeAll(socket, ids);
      for (const id of ids) subscribers.push(Subscriber.ws(`${relay.name} ws`, socket, id));
      const relayStreams = new Map<string, SseClient>();
      for (const id of ids.filter((_, idIndex) => idIndex % 3 === index)) {
        const stream = openStream(relay.baseUrl, id);
        relayStreams.set(id, stream);
        subscribers.push(Subscriber.sse(`${relay.name} sse`, stream, id));
      }
      streams.set(relay, relayStreams);
    }
    await waitForAll(subscribers, 10, 20_000);

    forceProgress(sim, ids, 20);
    await waitForAll(subscribers, 20, 10_000);

    // The victim is the instance that polls the most generations; which one that is depends on timing.
    const owners = await leaseOwners(redis, prefix, ids);
    const ownedBy = (relay: RelayProcess) => ids.filter((id) => owners.get(id) === relay.instanceId);
    const victim = [...relays].sort((a, b) => ownedBy(b).length - ownedBy(a).length)[0]!;
    const survivors = relays.filter((relay) => relay !== victim);
    const victimOwned = ownedBy(victim);
    expect(victimOwned.length).toBeGreaterThan(0);

    const killedAt = performance.now();
    victim.signal("SIGKILL");
    const exit = await victim.exited;
    expect(exit.signal).toBe("SIGKILL");

    // A change while the victim's leases are still running out: survivors must take over to see it.
    forceProgress(sim, ids, 25);
    const victimSubscribers = subscribers.filter((subscriber) => subscriber.label.startsWith(victim.name));
    const survivorSubscribers = subscribers.filter((subscriber) => !subscriber.label.startsWith(victim.name));
    const progress25Ms = await waitForAll(survivorSubscribers, 25, 10_000);

    // The victim's clients reconnect to survivors, resuming after the last version each one saw.
    const victimSocket = sockets.get(victim)!;
    expect((await victimSocket.closed).code).not.toBe(1000);
    const resumedSocket = await openSocket(survivors[0]!.wsUrl);
    const lastSeen = new Map<Subscriber, number>();
    for (const subscriber of victimSubscribers) lastSeen.set(subscriber, subscriber.last()!.version);

    const victimWsSubscribers = victimSubscribers.filter((subscriber) => subscriber.label.endsWith("ws"));
    const wsAfter = new Map(victimWsSubscribers.map((subscriber) => [subscriber.generationId, lastSeen.get(subscriber)!]));
    subscribeAll(resumedSocket, ids, (id) => wsAfter.get(id)!);
    for (const subscriber of victimWsSubscribers) subscriber.follow(() => wsStatuses(resumedSocket, subscriber.generationId));

    let streamIndex = 0;
    for (const [id, oldStream] of streams.get(victim)!) {
      oldStream.close();
      const subscriber = victimSubscribers.find((candidate) => candidate.label.endsWith("sse") && candidate.generationId === id)!;
      const target = survivors[streamIndex++ % survivors.length]!;
      const resumed = openStream(target.baseUrl, id, String(lastSeen.get(subscriber)));
      subscriber.follow(() => sseStatuses(resumed));
    }

    // Each resumed connection starts with the status the client missed (progress 25), never an older one.
    await waitUntil(
      () => victimSubscribers.every((subscriber) => subscriber.segments()[1]!.length > 0),
      () => "every resumed connection received the status it missed",
      10_000,
    );
    for (const subscriber of victimSubscribers) {
      const resumed = subscriber.segments()[1]!;
      expect(resumed[0]!.version, `${subscriber.label} ${subscriber.generationId}`).toBeGreaterThan(lastSeen.get(subscriber)!);
      expect(resumed[0]!.progress_pct, `${subscriber.label} ${subscriber.generationId}`).toBe(25);
    }

    // Later changes reach everyone.
    forceProgress(sim, ids, 30);
    await waitForAll(subscribers, 30, 10_000);
    await sleep(Math.max(0, killedAt + 6 * intervalMs - performance.now()));
    const gapsEnd = performance.now();

    forceProgress(sim, ids, 40);
    await waitForAll(subscribers, 40, 10_000);
    for (const id of ids) sim.simulator.control.finish(id, "completed");
    await waitForAll(subscribers, "final", 10_000);

    // Every generation kept being polled: no silence longer than two intervals, plus 150 ms for loaded cores.
    const gaps = ids.map((id) => log.longestGap(id, killedAt - intervalMs, gapsEnd));
    const takeovers = victimOwned.map((id) => log.firstAfter(id, killedAt)! - (log.lastBefore(id, killedAt) ?? killedAt));
    console.log(
      `SIGKILL failover, interval ${intervalMs} ms: longest gap between polls per generation ${describeTimes(gaps)}; ` +
        `takeover of the ${victimOwned.length} generations the killed instance polled (last poll before the kill to first after) ${describeTimes(takeovers)}; ` +
        `survivor subscribers saw the next change ${Math.round(progress25Ms)} ms after the kill`,
    );
    expect(Math.max(...gaps)).toBeLessThanOrEqual(2 * intervalMs + 150);

    expect(versionRegressions(subscribers)).toEqual([]);
    // From the first change after the kill on, each subscriber got every change once, one version apart.
    const afterKill = (statuses: Status[]) => statuses.slice(statuses.findIndex((status) => status.progress_pct === 25));
    for (const subscriber of subscribers) {
      const tail = afterKill(subscriber.statuses());
      const context = `${subscriber.label} ${subscriber.generationId}: ${describeStatuses(subscriber)}`;
      expect(tail.map((status) => (status.status === "processing" ? status.progress_pct : status.status)), context).toEqual([25, 30, 40, "completed"]);
      expect(tail.map((status) => status.version - tail[0]!.version), context).toEqual([0, 1, 2, 3]);
    }
    for (const relay of survivors) expect(relay.isRunning()).toBe(true);
  });

  it("keeps pushing through a Redis outage", { timeout: 150_000 }, async () => {
    // 2000 ms, because the relay's retryStrategy (src/cluster/redis-connection.ts) reconnects after
    // 100, 200, 400, 800, 1600 ms and then every 2000 ms, so relays reconnect within one interval of Redis returning.
    // It also leaves 0.3 interval or more for late polls between each forced change and the check that it arrived.
    const intervalMs = 2000;
    const ownRedis = await startRedisServer();
    let currentRedis = ownRedis;
    onCleanup(() => currentRedis.stop());

    const { sim, log } = await startQuietSimulator();
    const ids = createPinned(sim, 60, 10);
    const finishedDuringOutage = ids.slice(0, 10);
    const finishedAsRedisReturns = ids.slice(10, 40);
    const finishedAfterOutage = ids.slice(40);
    const openDuringOutage = [...finishedAsRedisReturns, ...finishedAfterOutage];
    const relays = await startCluster(3, sim, {
      redisUrl: ownRedis.url,
      prefix: uniquePrefix(),
      env: { POLL_INTERVAL_MS: String(intervalMs), LOG_LEVEL: process.env.CLUSTER_DEBUG_LOG ?? "warn" },
    });

    // Subscribers arrive at one instance after another, as browsers do, so only the first instance
    // receives the publication of the first status. The others learn versions from later changes or their own polls.
    const subscribers: Subscriber[] = [];
    for (const [index, relay] of relays.entries()) {
      const relaySubscribers: Subscriber[] = [];
      const socket = await openSocket(relay.wsUrl);
      subscribeAll(socket, ids);
      for (const id of ids) relaySubscribers.push(Subscriber.ws(`${relay.name} ws`, socket, id));
      for (const id of ids.filter((_, idIndex) => idIndex % 3 === index)) {
        relaySubscribers.push(Subscriber.sse(`${relay.name} sse`, openStream(relay.baseUrl, id), id));
      }
      await waitForAll(relaySubscribers, 10, 20_000);
      subscribers.push(...relaySubscribers);
    }
    for (const relay of relays) expect((await getJson(`${relay.baseUrl}/readyz`)).status).toBe(200);
    const ofGroup = (group: readonly string[]) => subscribers.filter((subscriber) => group.includes(subscriber.generationId));

    // Redis goes away for three intervals.
    const downAt = performance.now();
    const untilOutage = (fraction: number) => Math.max(0, downAt + fraction * intervalMs - performance.now());
    ownRedis.kill();
    // Forced in the same tick as the kill, so the first poll of every instance without Redis returns it.
    forceProgress(sim, ids, 40);
    await ownRedis.exited;

    await sleep(untilOutage(0.5));
    for (const relay of relays) {
      const health = await getJson(`${relay.baseUrl}/healthz`);
      expect(health.status, `${relay.name} /healthz during the outage`).toBe(200);
      const ready = await getJson(`${relay.baseUrl}/readyz`);
      expect(ready.status, `${relay.name} /readyz during the outage`).toBe(503);
      expect(ready.body.checks.redis, `${relay.name} /readyz redis check`).not.toBe("ok");
    }

    // Two changes 0.3 interval apart: some instances see both and some only the second, so their own versions differ.
    await sleep(untilOutage(1.4));
    forceProgress(sim, ids, 43);
    await sleep(untilOutage(1.7));
    forceProgress(sim, ids, 45);
    for (const id of finishedDuringOutage) sim.simulator.control.finish(id, "completed");

    // Every change reaches every subscriber while Redis is still down: each instance polls each generation once per interval.
    await expectAllReceive(subscribers, 40, untilOutage(3), "during the outage");
    await expectAllReceive(ofGroup(openDuringOutage), 45, untilOutage(3), "during the outage");
    await expectAllReceive(ofGroup(finishedDuringOutage), "final", untilOutage(3), "during the outage");
    for (const relay of relays) expect(relay.isRunning(), `${relay.name} alive during the outage`).toBe(true);

    await sleep(Math.max(0, downAt + 3 * intervalMs - performance.now()));
    currentRedis = await startRedisServer({ port: ownRedis.port });
    const upAt = performance.now();
    // Finished as Redis returns: each instance learns it either from its own poll before it reconnects
    // or from the poller that wins the lease afterwards, and the versions of the two may differ.
    for (const id of finishedAsRedisReturns) sim.simulator.control.finish(id, "completed");

    // Within two intervals of Redis returning, each generation is polled once per interval again.
    const windowIntervals = 3;
    const from = upAt + 2 * intervalMs;
    await sleep(from + windowIntervals * intervalMs - performance.now());
    const to = performance.now();
    const intervals = (to - from) / intervalMs;
    const counts = finishedAfterOutage.map((id) => log.countBetween(id, from, to));
    const duringOutage = finishedAfterOutage.map((id) => log.countBetween(id, downAt + intervalMs, downAt + 3 * intervalMs));
    const ratio = counts.reduce((sum, count) => sum + count, 0) / (counts.length * intervals);
    console.log(
      `Redis outage, interval ${intervalMs} ms: ${(duringOutage.reduce((sum, count) => sum + count, 0) / (duringOutage.length * 2)).toFixed(2)} polls ` +
        `per generation per interval during the outage; from 2 intervals after Redis returned, ${ratio.toFixed(3)} ` +
        `(per generation min ${Math.min(...counts)}, max ${Math.max(...counts)} in ${intervals.toFixed(2)} intervals)`,
    );
    expect(Math.max(...counts)).toBeLessThanOrEqual(Math.round(intervals) + 1);
    expect(ratio).toBeLessThanOrEqual((windowIntervals + 1) / windowIntervals);
    expect(ratio).toBeGreaterThanOrEqual((windowIntervals - 1) / windowIntervals);
    for (const relay of relays) expect((await getJson(`${relay.baseUrl}/readyz`)).status, `${relay.name} /readyz after the outage`).toBe(200);
    await expectAllReceive(ofGroup(finishedAsRedisReturns), "final", 2 * intervalMs, "after finishing as Redis returned");

    // A change and a final status after the outage reach every subscriber.
    forceProgress(sim, finishedAfterOutage, 70);
    await expectAllReceive(ofGroup(finishedAfterOutage), 70, 4 * intervalMs, "after the outage");
    for (const id of finishedAfterOutage) sim.simulator.control.finish(id, "completed");
    await expectAllReceive(ofGroup(finishedAfterOutage), "final", 4 * intervalMs, "after the outage");

    expect(versionRegressions(subscribers), "subscribers whose versions repeat or go backwards").toEqual([]);
    for (const relay of relays) expect(relay.isRunning(), `${relay.name} alive after the outage`).toBe(true);
  });

  it("hands polls over on SIGTERM", { timeout: 90_000 }, async () => {
    const intervalMs = 1000;
    const { sim, log } = await startQuietSimulator();
    const ids = createPinned(sim, 40, 10);
    const prefix = uniquePrefix();
    const redis = connectRedis(redisServer.url);
    const [leaving, staying] = (await startCluster(2, sim, {
      redisUrl: redisServer.url,
      prefix,
      env: { POLL_INTERVAL_MS: String(intervalMs), LOG_LEVEL: "info" },
    })) as [RelayProcess, RelayProcess];

    const leavingSockets = [await openSocket(leaving.wsUrl), await openSocket(leaving.wsUrl)];
    const stayingSocket = await openSocket(staying.wsUrl);
    for (const socket of [...leavingSockets, stayingSocket]) subscribeAll(socket, ids);
    const leavingStreams = await Promise.all(ids.slice(0, 10).map((id) => openRawSse(`${leaving.baseUrl}/v1/sora/generations/${id}/events`)));
    for (const stream of leavingStreams) onCleanup(() => stream.close());

    await waitUntil(
      () =>
        [...leavingSockets, stayingSocket].every((socket) => ids.every((id) => wsStatuses(socket, id).length > 0)) &&
        leavingStreams.every((stream) => stream.text().includes("event: status")),
      () => "every subscriber received its first status",
      20_000,
    );
    // Two intervals, so both instances have claimed and polled since the subscriptions started.
    await sleep(2 * intervalMs);
    const owners = await leaseOwners(redis, prefix, ids);
    const leavingOwned = ids.filter((id) => owners.get(id) === leaving.instanceId);
    expect(leavingOwned.length).toBeGreaterThan(0);

    // Sample the leases every 10 ms to see when the leaving instance's ones disappear.
    let releasedAt: number | undefined;
    let sampling = true;
    const sampler = (async () => {
      while (sampling) {
        const current = await leaseOwners(redis, prefix, leavingOwned);
        if ([...current.values()].every((owner) => owner !== leaving.instanceId)) {
          releasedAt = performance.now();
          return;
        }
        await sleep(10);
      }
    })();

    const termAt = performance.now();
    leaving.signal("SIGTERM");

    // Soft checks, so a miss on the client side does not hide the takeover measurements below.
    const closes = await Promise.all(leavingSockets.map((socket) => socket.closed));
    for (const close of closes) expect.soft(close.code, "WebSocket close code").toBe(1012);
    await Promise.all(leavingStreams.map((stream) => stream.ended));
    // Each stream opens with "retry: 2000", and a shutdown ends it with a second retry field after the last event.
    const lastBlocks = leavingStreams.map((stream) => stream.text().split("\n\n").filter((block) => block !== "").at(-1) ?? "");
    const endedWithoutRetry = lastBlocks.filter((block) => !/^retry: \d+$/.test(block)).map((block) => block.slice(0, 40));
    expect.soft(endedWithoutRetry, "last blocks of SSE streams ended by SIGTERM that are not a retry field").toEqual([]);

    const exit = await leaving.exited;
    expect(exit.code).toBe(0);
    expect(exit.at - termAt).toBeLessThan(10_000);

    await sleep(intervalMs);
    sampling = false;
    await sampler;
    expect(releasedAt, "leases of the leaving instance removed").toBeDefined();
    const releaseMs = releasedAt! - termAt;
    // A lease renewed at the last poll lives 1.25 intervals, so none could expire in the first 0.25 interval.
    expect(releaseMs).toBeLessThan(0.25 * intervalMs);

    const takeovers = leavingOwned.map((id) => (log.firstAfter(id, releasedAt!) ?? Infinity) - releasedAt!);
    console.log(
      `SIGTERM leave, interval ${intervalMs} ms: leases released ${Math.round(releaseMs)} ms after the signal, process exited after ` +
        `${Math.round(exit.at - termAt)} ms; takeover of ${leavingOwned.length} generations after the release ${describeTimes(takeovers)}`,
    );
    // The staying instance retries the lease every half interval, so takeover needs no lease to expire
    // (that would take up to 1.25 intervals); the margin up to one interval is for a loaded machine.
    expect(Math.max(...takeovers)).toBeLessThanOrEqual(intervalMs);
    const afterLeave = await leaseOwners(redis, prefix, leavingOwned);
    for (const id of leavingOwned) expect(afterLeave.get(id), `lease owner of ${id}`).toBe(staying.instanceId);
    expect(staying.isRunning()).toBe(true);
  });
});

describe("stale poller", () => {
  const GENERATION_ID = "7d0c7a52-3f2e-4e51-9a57-0b8f3f1d2c11";

  function upstream(overrides: Partial<UpstreamStatus> = {}): UpstreamStatus {
    return {
      generation_id: GENERATION_ID,
      status: "processing",
      prompt: "a lighthouse in a storm",
      video_url: null,
      created_at: "2025-11-24T10:00:00.000000",
      completed_at: null,
      progress_pct: 0,
      progress_pos_in_queue: null,
      error_message: null,
      ...overrides,
    };
  }

  it("store rejects a write from an old read", async () => {
    const keyPrefix = uniquePrefix();
    const stalled = new RedisStatusStore({ redis: connectRedis(redisServer.url), ttlSeconds: 60, keyPrefix });
    const current = new RedisStatusStore({ redis: connectRedis(redisServer.url), ttlSeconds: 60, keyPrefix });
    await current.record(GENERATION_ID, { upstream: upstream({ progress_pct: 5 }), observedAt: new Date() }, 0);

    // The stalled poller reads version 1 and requests the status from Runblob, which returns 10 %.
    const read = await stalled.get(GENERATION_ID);
    expect(read?.status.version).toBe(1);
    const oldObservation = { upstream: upstream({ progress_pct: 10 }), observedAt: new Date() };

    // Meanwhile another poller writes 20 % as version 2.
    const newer = await current.record(GENERATION_ID, { upstream: upstream({ progress_pct: 20 }), observedAt: new Date() }, 1);
    expect(newer.outcome).toBe("changed");
    expect(newer.status.version).toBe(2);

    const late = await stalled.record(GENERATION_ID, oldObservation, read!.status.version);
    expect(late.outcome).toBe("stale");
    expect(late.status.version).toBe(2);
    expect(late.status.progress_pct).toBe(20);
    const stored = await current.get(GENERATION_ID);
    expect(stored?.status.version).toBe(2);
    expect(stored?.status.progress_pct).toBe(20);
  });

  it("scheduler past its lease cannot overwrite", async () => {
    const keyPrefix = uniquePrefix();
    const leaseMs = 300;
    const logger = pino({ level: "silent" });

    function instance(name: string, getStatus: (id: string) => Promise<UpstreamStatus>) {
      const redis = connectRedis(redisServer.url);
      const store = new RedisStatusStore({ redis, ttlSeconds: 60, keyPrefix });
      // Outcomes of the scheduler's writes, so the test can check that the late write happened and how it ended.
      const outcomes: string[] = [];
      const record = store.record.bind(store);
      store.record = async (...args) => {
        const result = await record(...args);
        outcomes.push(result.outcome);
        return result;
      };
      const bus = new MemoryChangeBus();
      const events: WatchEvent[] = [];
      bus.onEvent((event) => events.push(event));
      const lease = new RedisPollLease({ redis, keyPrefix, instanceId: name, leaseMs, attemptsTtlMs: 60_000, logger });
      const scheduler = new WatchScheduler({
        store,
        client: { getStatus },
        bus,
        lease,
        logger,
        // Long enough that each scheduler polls once during the test.
        intervalMs: 60_000,
        maxAttempts: 100,
        graceMs: 60_000,
        concurrency: 4,
      });
      onCleanup(() => scheduler.stop());
      return { scheduler, events, outcomes };
    }

    const seed = new RedisStatusStore({ redis: connectRedis(redisServer.url), ttlSeconds: 60, keyPrefix });
    await seed.record(GENERATION_ID, { upstream: upstream({ progress_pct: 5 }), observedAt: new Date() }, 0);

    // Instance A claims the lease, reads version 1 and then hangs in its request to Runblob.
    let answerA!: (status: UpstreamStatus) => void;
    let requestedA!: () => void;
    const requestA = new Promise<void>((resolve) => (requestedA = resolve));
    const a = instance("instance-a", () => {
      requestedA();
      return new Promise((resolve) => (answerA = resolve));
    });
    a.scheduler.watchCreated(GENERATION_ID);
    await requestA;

    // Its lease runs out. Instance B claims it and writes 20 % as version 2.
    await sleep(leaseMs + 100);
    const b = instance("instance-b", async () => upstream({ progress_pct: 20 }));
    b.scheduler.watchCreated(GENERATION_ID);
    await waitUntil(() => b.events.some((event) => event.kind === "status"), () => "instance B published its change", 5000);
    const published = b.events.find((event) => event.kind === "status");
    expect(published?.kind).toBe("status");
    expect(published?.kind === "status" ? published.change.status.version : undefined).toBe(2);
    expect(b.outcomes).toEqual(["changed"]);

    // A's response, 10 %, arrives late and must not replace 20 %.
    answerA(upstream({ progress_pct: 10 }));
    await waitUntil(() => a.outcomes.length > 0, () => "instance A wrote its late answer", 5000);
    expect(a.outcomes).toEqual(["stale"]);
    expect(a.scheduler.latest(GENERATION_ID)?.status.progress_pct).toBe(20);
    const stored = await seed.get(GENERATION_ID);
    expect(stored?.status.version).toBe(2);
    expect(stored?.status.progress_pct).toBe(20);
    expect(a.events.filter((event) => event.kind === "status")).toEqual([]);
  });
});

describe("poll lease attempts", () => {
  it("refunds an unsent attempt, holder only", async () => {
    const keyPrefix = uniquePrefix();
    const logger = pino({ level: "silent" });
    const redis = connectRedis(redisServer.url);
    const holder = new RedisPollLease({ redis, keyPrefix, instanceId: "holder", leaseMs: 5000, attemptsTtlMs: 60_000, logger });
    const other = new RedisPollLease({ redis, keyPrefix, instanceId: "other", leaseMs: 5000, attemptsTtlMs: 60_000, logger });

    const GENERATION_ID = "0b6e2a1c-5d4f-4c3b-8a29-6f1e0d9c8b7a";
    expect(await holder.claim(GENERATION_ID)).toEqual({ granted: true, attempts: 1 });
    expect(await holder.claim(GENERATION_ID)).toEqual({ granted: true, attempts: 2 });
    await holder.refund(GENERATION_ID);
    expect(await holder.claim(GENERATION_ID)).toEqual({ granted: true, attempts: 2 });

    // An instance without the lease cannot lower the count.
    await other.refund(GENERATION_ID);
    expect(await other.claim(GENERATION_ID)).toEqual({ granted: false, attempts: 2 });
    await holder.release(GENERATION_ID, true);
  });
});

describe("Redis keys", () => {
  it("keys of one generation share one slot", async () => {
    const { sim } = await startQuietSimulator();
    const prefix = uniquePrefix();
    const relay = await startRelay(sim, { REDIS_URL: redisServer.url, REDIS_KEY_PREFIX: prefix, POLL_INTERVAL_MS: "300", LOG_LEVEL: "warn" });
    onCleanup(() => relay.close());
    const redis = connectRedis(redisServer.url);

    const ids = createPinned(sim, 3, 10);
    const socket = await openSocket(relay.wsUrl);
    subscribeAll(socket, ids);

    const scanKeys = async () => {
      const keys: string[] = [];
      let cursor = "0";
      do {
        const [next, batch] = await redis.scan(cursor, "MATCH", `${prefix}*`, "COUNT", 1000);
        keys.push(...batch);
        cursor = next;
      } while (cursor !== "0");
      return keys;
    };
    const expectedKeys = (id: string) => [statusKey(prefix, id), ...leaseKeys(prefix, id)];
    let keys: string[] = [];
    await waitUntil(
      async () => {
        keys = await scanKeys();
        return ids.every((id) => expectedKeys(id).every((key) => keys.includes(key)));
      },
      () => `status, poller and attempts keys of every generation exist; found ${JSON.stringify(keys)}`,
      10_000,
    );

    for (const id of ids) {
      for (const key of expectedKeys(id)) expect(keys, `keys under ${prefix}`).toContain(key);
      const generationKeys = keys.filter((key) => key.includes(id));
      expect(new Set(generationKeys.map(keySlot)), `slots of the keys of ${id}`).toEqual(new Set([keySlot(id)]));
    }
    // A key that names a generation carries it as the hash tag. Keys of no generation (request budget, rate limits) may sit in any slot.
    for (const key of keys.filter((candidate) => ids.some((id) => candidate.includes(id)))) {
      expect(ids.some((id) => key.startsWith(`${prefix}{${id}}:`)), key).toBe(true);
    }
  });
});

// --- Raw SSE ----------------------------------------------------------------

interface RawSse {
  /** Everything received so far, as text. */
  text(): string;
  /** Resolves when the relay ends the response. */
  ended: Promise<void>;
  close(): void;
}

/** Opens an SSE stream with fetch and keeps the raw text, so tests see `retry:` fields that EventSource hides. */
async function openRawSse(url: string): Promise<RawSse> {
  const controller = new AbortController();
  const response = await fetch(url, { headers: { accept: "text/event-stream" }, signal: controller.signal });
  if (response.status !== 200 || response.body === null) {
    throw new Error(`SSE request to ${url} failed with HTTP ${response.status}: ${await response.text()}`);
  }
  let text = "";
  const decoder = new TextDecoder();
  const ended = (async () => {
    try {
      for await (const chunk of response.body!) text += decoder.decode(chunk, { stream: true });
    } catch {
      // Aborted by close(), or reset by the relay: the stream has ended either way.
    }
  })();
  return { text: () => text, ended, close: () => controller.abort() };
}
