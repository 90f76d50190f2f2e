/**
 * The browser SDK (client/src) against a real relay and simulator, with the
 * `ws` WebSocket and the `eventsource` EventSource injected, since Node 20
 * has neither as a global.
 */
import { afterEach, describe, expect, it, vi } from "vitest";
import { inject } from "vitest";
import WebSocket from "ws";
import { EventSource } from "eventsource";
import { createRelayClient, isFinalStatus, RelayError } from "../client/src/index.js";
import type { RelayClient, RelayClientOptions, RelayStatus } from "../client/src/index.js";
import { createBackoff } from "../client/src/backoff.js";
import { startRelay, startSimulator } from "./support/relay-harness.js";
import type { RelayHandle, SimulatorHandle } from "./support/relay-harness.js";
import { generate } from "./support/clients.js";
import { startRelayProxy } from "./support/relay-proxy.js";

const cleanups: Array<() => unknown> = [];
afterEach(async () => {
  for (const cleanup of cleanups.reverse()) await cleanup();
  cleanups.length = 0;
  vi.restoreAllMocks();
});

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

async function waitUntil(condition: () => boolean, what: string, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting until ${what}`);
    await sleep(20);
  }
}

async function setup(
  simulatorOptions: Parameters<typeof startSimulator>[0] = {},
  env: Record<string, string> = {},
): Promise<{ sim: SimulatorHandle; relay: RelayHandle }> {
  const sim = await startSimulator(simulatorOptions);
  cleanups.push(() => sim.close());
  const relay = await startRelay(sim, env);
  cleanups.push(() => relay.close());
  return { sim, relay };
}

/** Creates a `ws` WebSocket class that counts sockets and the frames received per generation. */
function countingWebSocket() {
  const counts = { created: 0, frames: new Map<string, number>() };
  class CountingWebSocket extends WebSocket {
    constructor(url: string) {
      super(url);
      counts.created += 1;
      this.on("message", (data) => {
        const message = JSON.parse(String(data)) as { generation?: { generation_id: string }; generation_id?: string };
        const id = message.generation?.generation_id ?? message.generation_id ?? "";
        counts.frames.set(id, (counts.frames.get(id) ?? 0) + 1);
      });
    }
  }
  return { Socket: CountingWebSocket, counts };
}

/** Creates an `eventsource` EventSource class that counts streams and records their URLs. */
function countingEventSource() {
  const counts = { created: 0, urls: [] as string[] };
  class CountingEventSource extends EventSource {
    constructor(url: string) {
      super(url);
      counts.created += 1;
      counts.urls.push(url);
    }
  }
  return { Source: CountingEventSource, counts };
}

function client(baseUrl: string, options: Partial<RelayClientOptions> = {}): RelayClient {
  const relayClient = createRelayClient({
    baseUrl,
    WebSocket,
    EventSource,
    reconnect: { initialDelayMs: 100, maxDelayMs: 800 },
    ...options,
  });
  cleanups.push(() => relayClient.close());
  return relayClient;
}

interface Collected {
  statuses: RelayStatus[];
  upstreamMessages: string[];
  /** Resolves with "final", "timeout" or "error:<code>" when the watch ends. */
  ended: Promise<string>;
  stop: () => void;
}

function collect(relayClient: RelayClient, id: string): Collected {
  const statuses: RelayStatus[] = [];
  const upstreamMessages: string[] = [];
  let end: (how: string) => void = () => {};
  const ended = new Promise<string>((resolve) => (end = resolve));
  const stop = relayClient.watch(id, {
    onStatus: (status) => {
      statuses.push(status);
      if (isFinalStatus(status)) end("final");
    },
    onTimeout: () => end("timeout"),
    onError: (error) => end(`error:${error.code}`),
    onUpstream: (message) => upstreamMessages.push(message),
  });
  return { statuses, upstreamMessages, ended, stop };
}

function within<T>(promise: Promise<T>, timeoutMs: number, what: string): Promise<T> {
  return Promise.race([
    promise,
    sleep(timeoutMs).then(() => {
      throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    }),
  ]);
}

const versionsOf = (collected: Collected) => collected.statuses.map((status) => status.version);

function expectConsecutive(versions: number[]): void {
  expect(versions.length).toBeGreaterThan(1);
  for (let i = 1; i < versions.length; i += 1) expect(versions[i]).toBe(versions[i - 1]! + 1);
}

describe("relay client", () => {
  it("delivers each version once, in order", async () => {
    const { relay } = await setup({ queueStart: 2, queueMs: 400, processingMs: 800 });
    const { Socket, counts } = countingWebSocket();
    const relayClient = client(relay.baseUrl, { WebSocket: Socket });
    const states: string[] = [];
    relayClient.onConnectionChange((state) => states.push(`${state.status} ${state.transport}`));
    const id = await generate(relay.baseUrl);

    const watched = collect(relayClient, id);
    expect(await within(watched.ended, 10_000, "final status")).toBe("final");
    expectConsecutive(versionsOf(watched));
    expect(watched.statuses.at(-1)!.status).toBe("completed");
    expect(states).toEqual(["connecting websocket", "open websocket", "idle undefined"]);
    expect(counts.created).toBe(1);
    // The last watch ended, so the client closed its socket.
    expect(relayClient.connection.status).toBe("idle");
  });

  it("generate starts watching and statuses() ends after the final one", async () => {
    const { relay } = await setup({ queueStart: 2, queueMs: 300, processingMs: 600 });
    const relayClient = client(relay.baseUrl);
    const created = await relayClient.generate({ prompt: "A lighthouse at dusk", orientation: "16:9", duration: 10 });
    expect(created.status).toBe("pending");
    expect(created.price).toBe("0.1200");

    const seen: RelayStatus[] = [];
    for await (const status of relayClient.statuses(created.generation_id)) seen.push(status);
    expect(seen.at(-1)!.status).toBe("completed");
    expect(seen.at(-1)!.video_url).toMatch(/\.mp4$/);
    for (let i = 1; i < seen.length; i += 1) expect(seen[i]!.version).toBeGreaterThan(seen[i - 1]!.version);
  });

  it("generate rejects invalid input with RelayError", async () => {
    const { relay } = await setup();
    const relayClient = client(relay.baseUrl);
    const failure = await relayClient.generate({ prompt: "" }).catch((error: unknown) => error);
    expect(failure).toBeInstanceOf(RelayError);
    expect((failure as RelayError).status).toBe(422);
    expect((failure as RelayError).message).toContain("prompt must have at least 1 character");
  });

  it("reports not_found and timeout", async () => {
    const { sim, relay } = await setup({ queueMs: 60_000, processingMs: 60_000 }, { POLL_MAX_ATTEMPTS: "3" });
    const relayClient = client(relay.baseUrl);
    const missing = collect(relayClient, "00000000-0000-4000-8000-000000000000");
    const stuck = collect(relayClient, sim.simulator.control.create());

    expect(await within(missing.ended, 10_000, "not_found")).toBe("error:not_found");
    expect(await within(stuck.ended, 10_000, "timeout")).toBe("timeout");
    const iterator = relayClient.statuses(sim.simulator.control.create());
    const failure = await (async () => {
      for await (const _ of iterator);
    })().catch((error: unknown) => error);
    expect((failure as RelayError).code).toBe("timeout");
  });

  it("shares one WebSocket among sixty watches", async () => {
    const { sim, relay } = await setup({ queueStart: 1, queueMs: 500, processingMs: 1500 });
    const { Socket, counts } = countingWebSocket();
    const relayClient = client(relay.baseUrl, { WebSocket: Socket });
    const states: string[] = [];
    relayClient.onConnectionChange((state) => states.push(state.status));

    // Sixty subscribe messages exceed the relay's 50 per second, so the client has to pace them.
    const watched = Array.from({ length: 60 }, () => collect(relayClient, sim.simulator.control.create()));
    const endings = await within(Promise.all(watched.map((w) => w.ended)), 20_000, "sixty final statuses");

    expect(endings.every((how) => how === "final")).toBe(true);
    expect(counts.created).toBe(1);
    expect(states).not.toContain("reconnecting");
    for (const w of watched) expectConsecutive(versionsOf(w));
  });

  it("stops traffic for a generation after unwatch", async () => {
    const { sim, relay } = await setup({ queueMs: 60_000, processingMs: 60_000 }, { WATCH_GRACE_MS: "0" });
    const { Socket, counts } = countingWebSocket();
    const relayClient = client(relay.baseUrl, { WebSocket: Socket });
    const [kept, dropped] = [sim.simulator.control.create(), sim.simulator.control.create()];
    const keptWatch = collect(relayClient, kept);
    const droppedWatch = collect(relayClient, dropped);
    await waitUntil(() => keptWatch.statuses.length > 0 && droppedWatch.statuses.length > 0, "both first statuses");

    droppedWatch.stop();
    await sleep(300);
    const framesAtStop = counts.frames.get(dropped);
    sim.simulator.stats.reset();
    for (const percent of [10, 20, 30]) {
      sim.simulator.control.force(kept, { status: "processing", progress_pct: percent, progress_pos_in_queue: null });
      sim.simulator.control.force(dropped, { status: "processing", progress_pct: percent, progress_pos_in_queue: null });
      await sleep(250);
    }

    await waitUntil(() => keptWatch.statuses.some((s) => s.progress_pct === 30), "kept generation at 30 %");
    expect(counts.frames.get(dropped)).toBe(framesAtStop);
    expect(droppedWatch.statuses).toHaveLength(1);
    expect(sim.simulator.stats.statusRequests(dropped)).toBe(0);
    expect(sim.simulator.stats.statusRequests(kept)).toBeGreaterThan(3);

    keptWatch.stop();
    expect(relayClient.connection.status).toBe("idle");
  });

  it("falls back to SSE when upgrades are rejected", async () => {
    const { relay } = await setup({ queueStart: 2, queueMs: 300, processingMs: 600 });
    const proxy = await startRelayProxy(relay.baseUrl, { rejectUpgrades: true });
    cleanups.push(() => proxy.close());
    const { Source, counts } = countingEventSource();
    const relayClient = client(proxy.url, { EventSource: Source });
    const id = await generate(relay.baseUrl);

    const watched = collect(relayClient, id);
    expect(await within(watched.ended, 10_000, "final status over SSE")).toBe("final");
    expectConsecutive(versionsOf(watched));
    expect(proxy.rejectedUpgrades).toBe(1);
    expect(counts.created).toBe(1);
  });

  it("keeps twenty watches on one SSE stream", async () => {
    const { sim, relay } = await setup({ queueStart: 1, queueMs: 400, processingMs: 1200 });
    const { Source, counts } = countingEventSource();
    const relayClient = client(relay.baseUrl, { transport: "sse", EventSource: Source });

    const ids = Array.from({ length: 20 }, () => sim.simulator.control.create());
    const watched = ids.map((id) => collect(relayClient, id));
    await within(Promise.all(watched.map((w) => w.ended)), 15_000, "twenty final statuses");

    expect(counts.created).toBe(1);
    expect(counts.urls[0]).toContain(`ids=${ids.join(",")}`);
    for (const w of watched) expectConsecutive(versionsOf(w));
  });

  it("reopens the SSE stream from the positions when watches change", async () => {
    const { sim, relay } = await setup({ queueStart: 3, queueMs: 60_000, processingMs: 60_000 });
    const { Source, counts } = countingEventSource();
    const relayClient = client(relay.baseUrl, { transport: "sse", EventSource: Source });
    const [first, second] = [sim.simulator.control.create(), sim.simulator.control.create()];

    const firstWatch = collect(relayClient, first);
    await waitUntil(() => firstWatch.statuses.length === 1, "first status of the first generation");
    const secondWatch = collect(relayClient, second);
    await waitUntil(() => secondWatch.statuses.length === 1, "first status of the second generation");

    expect(counts.created).toBe(2);
    expect(counts.urls[1]).toContain(`after=${first}:${firstWatch.statuses[0]!.version}`);
    sim.simulator.control.finish(first, "completed");
    sim.simulator.control.finish(second, "failed", "Content policy violation.");
    await within(Promise.all([firstWatch.ended, secondWatch.ended]), 10_000, "both final statuses");
    expectConsecutive(versionsOf(firstWatch));
    expectConsecutive(versionsOf(secondWatch));
    expect(secondWatch.statuses.at(-1)!.error_message).toBe("Content policy violation.");
  });

  describe.each([
    { transport: "websocket" as const, store: "redis" },
    { transport: "sse" as const, store: "redis" },
    { transport: "websocket" as const, store: "memory" },
    { transport: "sse" as const, store: "memory" },
  ])("over $transport with the $store store", ({ transport, store }) => {
    it("resumes after the relay restarts mid-generation", async () => {
      const sim = await startSimulator({ queueStart: 2, queueMs: 1000, processingMs: 2500 });
      cleanups.push(() => sim.close());
      const env: Record<string, string> = store === "redis" ? { REDIS_URL: inject("redisUrl"), REDIS_KEY_PREFIX: `sdk${Date.now()}:` } : {};
      let relay = await startRelay(sim, env);
      cleanups.push(() => relay.close());
      const proxy = await startRelayProxy(relay.baseUrl);
      cleanups.push(() => proxy.close());
      const relayClient = client(proxy.url, { transport });
      const id = await generate(relay.baseUrl);

      const watched = collect(relayClient, id);
      await waitUntil(() => watched.statuses.some((s) => s.status === "processing"), "a processing status");
      proxy.setTarget(undefined);
      await relay.close();
      await sleep(700);
      relay = await startRelay(sim, env);
      proxy.setTarget(relay.baseUrl);

      expect(await within(watched.ended, 15_000, "final status after the restart")).toBe("final");
      expect(watched.statuses.at(-1)!.status).toBe("completed");
      const versions = versionsOf(watched);
      // A Redis store keeps versions across the restart; a memory store starts them over once.
      const drops = versions.filter((version, i) => i > 0 && version <= versions[i - 1]!).length;
      expect(drops).toBe(store === "redis" ? 0 : 1);
    });
  });

  it("backoff delays grow to the maximum with full jitter", () => {
    vi.spyOn(Math, "random").mockReturnValue(0.999);
    const backoff = createBackoff({ initialDelayMs: 100, maxDelayMs: 1000 });
    const delays = Array.from({ length: 6 }, () => Math.round(backoff.next()));
    expect(delays).toEqual([100, 200, 400, 799, 999, 999]);
    backoff.reset();
    expect(Math.round(backoff.next())).toBe(100);

    vi.spyOn(Math, "random").mockReturnValue(0);
    expect(backoff.next()).toBe(0);
  });
});
