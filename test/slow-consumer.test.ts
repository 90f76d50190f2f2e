/**
 * A client that stops reading while statuses keep changing must not grow the
 * relay's memory, because its messages are conflated to the latest status per
 * generation. The final status still reaches it once it reads again, and
 * subscribers that do read still get every version in order.
 *
 * Statuses change on every poll because the test pins a new progress value
 * (with a large padding field, so the kernel's socket buffers fill within a
 * second or two) on every generation every 50 ms.
 */
import http from "node:http";
import { afterEach, describe, expect, it } from "vitest";
import WebSocket from "ws";
import type { Registry } from "prom-client";
import { startRelay, startSimulator } from "./support/relay-harness.js";
import type { RelayHandle, SimulatorHandle } from "./support/relay-harness.js";
import { CleanupStack, waitUntil } from "./support/ops-clients.js";

const cleanup = new CleanupStack();
afterEach(() => cleanup.run());

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

const MAX_BUFFERED_BYTES = 1_048_576;

async function setup(): Promise<{ sim: SimulatorHandle; relay: RelayHandle }> {
  const sim = await startSimulator({ queueStart: 1, queueMs: 600_000, processingMs: 600_000 });
  cleanup.add(() => sim.close());
  const relay = await startRelay(sim, {
    POLL_INTERVAL_MS: "100",
    MAX_BUFFERED_BYTES: String(MAX_BUFFERED_BYTES),
    PUSH_CONFLATE_BYTES: "65536",
    // The paused client cannot respond to pings, and the test is about conflation, not the ping sweep.
    WS_PING_INTERVAL_MS: "600000",
    LOG_LEVEL: "info",
  });
  cleanup.add(() => relay.close());
  return { sim, relay };
}

/** Sum of a metric's values whose labels include `labels`. */
async function metricValue(registry: Registry, name: string, labels: Record<string, string> = {}): Promise<number> {
  const metric = registry.getSingleMetric(name);
  if (metric === undefined) throw new Error(`metric ${name} is not registered`);
  const { values } = await metric.get();
  return values
    .filter((value) => Object.entries(labels).every(([key, expected]) => value.labels[key] === expected))
    .reduce((total, value) => total + value.value, 0);
}

/**
 * Changes every generation's status every 50 ms until stopped; each change
 * carries `paddingBytes` of filler so frames are large.
 */
function floodChanges(sim: SimulatorHandle, ids: string[], paddingBytes: number): { stop(): Promise<number> } {
  const padding = "x".repeat(paddingBytes);
  let tick = 0;
  let running = true;
  const loop = (async () => {
    while (running) {
      tick += 1;
      for (const id of ids) sim.simulator.control.force(id, { status: "processing", progress_pct: tick % 100, padding: `${tick}:${padding}` });
      await sleep(50);
    }
  })();
  return {
    async stop() {
      running = false;
      await loop;
      return tick;
    },
  };
}

interface Peak {
  pending: number;
  buffered: number;
}

/** Samples the relay's pending-message and buffered-byte gauges of one transport every 100 ms. */
function samplePeaks(registry: Registry, transport: "websocket" | "sse"): { stop(): Promise<Peak> } {
  const peak: Peak = { pending: 0, buffered: 0 };
  let running = true;
  const loop = (async () => {
    while (running) {
      peak.pending = Math.max(peak.pending, await metricValue(registry, "relay_push_pending_messages", { transport }));
      peak.buffered = Math.max(peak.buffered, await metricValue(registry, "relay_push_buffered_bytes", { transport }));
      await sleep(100);
    }
  })();
  return {
    async stop() {
      running = false;
      await loop;
      return peak;
    },
  };
}

type StatusMessage = { type: string; generation?: { generation_id: string; version: number; status: string } };

/** Versions received per generation, in arrival order. */
function versionsByGeneration(messages: StatusMessage[]): Map<string, Array<{ version: number; status: string }>> {
  const byId = new Map<string, Array<{ version: number; status: string }>>();
  for (const message of messages) {
    if (message.type !== "status" || message.generation === undefined) continue;
    const list = byId.get(message.generation.generation_id) ?? [];
    list.push({ version: message.generation.version, status: message.generation.status });
    byId.set(message.generation.generation_id, list);
  }
  return byId;
}

async function openRecordingWebSocket(url: string): Promise<{ socket: WebSocket; messages: StatusMessage[] }> {
  const socket = new WebSocket(url);
  const messages: StatusMessage[] = [];
  socket.on("message", (data) => messages.push(JSON.parse(String(data)) as StatusMessage));
  socket.on("error", () => undefined);
  await new Promise<void>((resolve, reject) => {
    socket.once("open", () => resolve());
    socket.once("error", reject);
  });
  cleanup.add(() => socket.terminate());
  return { socket, messages };
}

describe("slow consumers", () => {
  it("conflates a WebSocket that stops reading", async () => {
    const { sim, relay } = await setup();
    const registry = relay.relay.metrics.registry;
    const generations = 30;
    const ids = Array.from({ length: generations }, () => sim.simulator.control.create());

    const reader = await openRecordingWebSocket(relay.wsUrl);
    const slow = await openRecordingWebSocket(relay.wsUrl);
    for (const id of ids) {
      reader.socket.send(JSON.stringify({ type: "subscribe", generation_id: id }));
      slow.socket.send(JSON.stringify({ type: "subscribe", generation_id: id }));
    }
    await waitUntil(() => versionsByGeneration(slow.messages).size === generations, "the slow client has every first status");
    slow.socket.pause();

    const peaks = samplePeaks(registry, "websocket");
    const flood = floodChanges(sim, ids, 16 * 1024);
    await sleep(7000);
    const ticks = await flood.stop();
    for (const id of ids) sim.simulator.control.finish(id, "completed");

    await waitUntil(
      () => [...versionsByGeneration(reader.messages).values()].every((list) => list.at(-1)?.status === "completed"),
      "the reading client has every final status",
      20_000,
    );
    const peak = await peaks.stop();
    const conflated = await metricValue(registry, "relay_push_conflated_messages_total", { transport: "websocket" });
    const disconnects = await metricValue(registry, "relay_push_slow_consumer_disconnects_total", { transport: "websocket" });

    // The relay held at most one status per generation and kept its buffer under the drop limit.
    expect(ticks).toBeGreaterThan(50);
    expect(conflated).toBeGreaterThan(0);
    expect(peak.pending).toBeGreaterThan(0);
    expect(peak.pending).toBeLessThanOrEqual(generations);
    expect(peak.buffered).toBeLessThan(MAX_BUFFERED_BYTES);
    expect(disconnects).toBe(0);

    // The reading client saw every version, once and in order, up to the final one.
    const readerVersions = versionsByGeneration(reader.messages);
    let readerTotal = 0;
    for (const id of ids) {
      const versions = readerVersions.get(id)!.map((entry) => entry.version);
      readerTotal += versions.length;
      expect(versions, `versions of ${id}`).toEqual(Array.from({ length: versions.length }, (_, index) => versions[0]! + index));
    }
    expect(readerTotal).toBeGreaterThan(1000);

    // Once it reads again, the slow client gets the final status of every generation, after fewer messages.
    slow.socket.resume();
    await waitUntil(
      () => [...versionsByGeneration(slow.messages).values()].every((list) => list.at(-1)?.status === "completed"),
      "the slow client has every final status",
      20_000,
    );
    const slowVersions = versionsByGeneration(slow.messages);
    let slowTotal = 0;
    for (const id of ids) {
      const versions = slowVersions.get(id)!;
      slowTotal += versions.length;
      expect(versions.at(-1)!.version, `final version of ${id}`).toBe(readerVersions.get(id)!.at(-1)!.version);
      const numbers = versions.map((entry) => entry.version);
      expect(numbers, `versions of ${id} increase`).toEqual([...numbers].sort((a, b) => a - b));
      expect(new Set(numbers).size, `versions of ${id} are unique`).toBe(numbers.length);
    }
    expect(slowTotal).toBeLessThan(readerTotal);
    expect(await metricValue(registry, "relay_push_pending_messages", { transport: "websocket" })).toBe(0);
  }, 60_000);

  it("conflates an SSE stream that stops reading", async () => {
    const { sim, relay } = await setup();
    const registry = relay.relay.metrics.registry;
    const id = sim.simulator.control.create();
    const url = `${relay.baseUrl}/v1/sora/generations/${id}/events`;

    const fast = openRawSse(url);
    const slow = openRawSse(url);
    await waitUntil(() => fast.statuses().length > 0 && slow.statuses().length > 0, "both streams have the first status");
    slow.pause();

    const peaks = samplePeaks(registry, "sse");
    const flood = floodChanges(sim, [id], 256 * 1024);
    await sleep(6000);
    await flood.stop();
    sim.simulator.control.finish(id, "completed");

    await waitUntil(() => fast.ended, "the reading stream ends after the final status", 20_000);
    const peak = await peaks.stop();
    const conflated = await metricValue(registry, "relay_push_conflated_messages_total", { transport: "sse" });
    const disconnects = await metricValue(registry, "relay_push_slow_consumer_disconnects_total", { transport: "sse" });

    expect(conflated).toBeGreaterThan(0);
    expect(peak.pending).toBeGreaterThan(0);
    expect(peak.pending).toBeLessThanOrEqual(2);
    expect(peak.buffered).toBeLessThan(MAX_BUFFERED_BYTES);
    expect(disconnects).toBe(0);

    const fastVersions = fast.statuses().map((status) => status.version);
    expect(fastVersions).toEqual(Array.from({ length: fastVersions.length }, (_, index) => fastVersions[0]! + index));
    expect(fast.statuses().at(-1)!.status).toBe("completed");

    slow.resume();
    await waitUntil(() => slow.ended, "the slow stream ends after the final status", 20_000);
    const slowStatuses = slow.statuses();
    expect(slowStatuses.at(-1)!.status).toBe("completed");
    expect(slowStatuses.at(-1)!.version).toBe(fastVersions.at(-1));
    expect(slowStatuses.length).toBeLessThan(fastVersions.length);
  }, 60_000);
});

/** Opens an SSE stream over plain HTTP, with a reader that can stop reading from its socket. */
function openRawSse(url: string): {
  statuses(): Array<{ version: number; status: string }>;
  pause(): void;
  resume(): void;
  readonly ended: boolean;
} {
  let text = "";
  let ended = false;
  let response: http.IncomingMessage | undefined;
  const request = http.get(url, { headers: { accept: "text/event-stream" } }, (incoming) => {
    response = incoming;
    incoming.setEncoding("utf8");
    incoming.on("data", (chunk: string) => (text += chunk));
    incoming.on("end", () => (ended = true));
    incoming.on("error", () => (ended = true));
  });
  request.on("error", () => (ended = true));
  cleanup.add(() => request.destroy());

  return {
    statuses() {
      // The part after the last blank line is an event still being received.
      const events = text.split("\n\n").slice(0, -1).filter((block) => block.startsWith("event: status\n"));
      return events.map((block) => JSON.parse(block.slice(block.indexOf("data: ") + 6)) as { version: number; status: string });
    },
    pause: () => response?.pause(),
    resume: () => response?.resume(),
    get ended() {
      return ended;
    },
  };
}
