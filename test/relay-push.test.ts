/**
 * The relay's core promise, end to end over real sockets: one upstream poll
 * per interval however many subscribers, every version once and in order,
 * final statuses end subscriptions, resume without gaps.
 */
import { afterEach, describe, expect, it } from "vitest";
import { inject } from "vitest";
import { startRelay, startSimulator } from "./support/relay-harness.js";
import type { RelayHandle, SimulatorHandle } from "./support/relay-harness.js";
import { generate, openEventSource, openWebSocket } from "./support/clients.js";
import type { SseClient, WsClient } from "./support/clients.js";

const cleanups: Array<() => unknown> = [];
afterEach(async () => {
  for (const cleanup of cleanups.reverse()) await cleanup();
  cleanups.length = 0;
});

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

function track<T extends { close(): void }>(client: T): T {
  cleanups.push(() => client.close());
  return client;
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

type Status = { status: string; version: number; progress_pct?: number | null; progress_pos_in_queue?: number | null };

const wsVersions = (client: WsClient) =>
  client.received.filter((m) => m.type === "status").map((m) => (m.generation as Status).version);
const sseVersions = (client: SseClient) =>
  client.received.filter((e) => e.type === "status").map((e) => (JSON.parse(e.data) as Status).version);

const storeKinds = [
  { name: "memory store", env: () => ({}) },
  { name: "redis store", env: () => ({ REDIS_URL: inject("redisUrl"), REDIS_KEY_PREFIX: `t${Date.now()}${Math.random().toString(36).slice(2, 8)}:` }) },
];

describe.each(storeKinds)("relay push with $name", ({ env }) => {
  it("polls once per interval for 50 WebSocket and 50 SSE subscribers", async () => {
    const intervalMs = 200;
    const { sim, relay } = await setup({ queueStart: 5, queueMs: 60_000, processingMs: 60_000 }, {
      ...env(),
      POLL_INTERVAL_MS: String(intervalMs),
    });
    const id = await generate(relay.baseUrl);

    const sockets = await Promise.all(Array.from({ length: 50 }, () => openWebSocket(relay.wsUrl)));
    sockets.forEach(track);
    for (const socket of sockets) socket.send({ type: "subscribe", generation_id: id });
    const streams = Array.from({ length: 50 }, () => track(openEventSource(`${relay.baseUrl}/v1/sora/generations/${id}/events`)));
    await Promise.all([
      ...sockets.map((s) => s.waitFor((m) => m.type === "status", 10_000, "first WebSocket status")),
      ...streams.map((s) => s.waitFor((e) => e.type === "status", 10_000, "first SSE status")),
    ]);

    sim.simulator.stats.reset();
    const started = performance.now();
    await sleep(intervalMs * 10);
    const elapsedIntervals = (performance.now() - started) / intervalMs;
    const polls = sim.simulator.stats.statusRequests(id);
    console.log(`50 WebSocket + 50 SSE subscribers: ${polls} status requests in ${elapsedIntervals.toFixed(2)} intervals of ${intervalMs} ms`);

    // One poll per interval, give or take the poll at each edge of the window.
    expect(polls).toBeGreaterThanOrEqual(Math.floor(elapsedIntervals) - 1);
    expect(polls).toBeLessThanOrEqual(Math.ceil(elapsedIntervals) + 1);
  });

  it("delivers every version once and in order to WebSocket and SSE", async () => {
    const { relay } = await setup({ queueStart: 3, queueMs: 600, processingMs: 1000 }, { ...env(), POLL_INTERVAL_MS: "100" });
    const id = await generate(relay.baseUrl);
    const socket = track(await openWebSocket(relay.wsUrl));
    socket.send({ type: "subscribe", generation_id: id });
    const stream = track(openEventSource(`${relay.baseUrl}/v1/sora/generations/${id}/events`));

    await socket.waitFor((m) => m.type === "status" && (m.generation as Status).status === "completed", 15_000, "completed over WebSocket");
    await stream.waitFor((e) => e.type === "status" && (JSON.parse(e.data) as Status).status === "completed", 15_000, "completed over SSE");

    for (const versions of [wsVersions(socket), sseVersions(stream)]) {
      expect(versions.length).toBeGreaterThan(3);
      for (let i = 1; i < versions.length; i += 1) expect(versions[i]).toBe(versions[i - 1]! + 1);
    }
    // SSE event ids are the versions.
    for (const event of stream.received.filter((e) => e.type === "status")) {
      expect(Number(event.id)).toBe((JSON.parse(event.data) as Status).version);
    }
  });

  it("ends the SSE stream and the WebSocket subscription after a final status", async () => {
    const { sim, relay } = await setup({ queueMs: 60_000, processingMs: 60_000 }, env());
    const id = await generate(relay.baseUrl);
    const socket = track(await openWebSocket(relay.wsUrl));
    socket.send({ type: "subscribe", generation_id: id });
    const stream = track(openEventSource(`${relay.baseUrl}/v1/sora/generations/${id}/events`));
    await socket.waitFor((m) => m.type === "status");
    await stream.waitFor((e) => e.type === "status");

    sim.simulator.control.finish(id, "failed", "Image contains photorealistic people.");
    const final = await socket.waitFor((m) => m.type === "status" && (m.generation as Status).status === "failed");
    expect((final.generation as { error_message: string }).error_message).toBe("Image contains photorealistic people.");
    // The relay ends the stream; the EventSource notices and tries to reconnect, which gets 204.
    await stream.errors.waitFor(() => true, 10_000, "end of the SSE stream");

    // No further polls once final.
    await sleep(300);
    sim.simulator.stats.reset();
    await sleep(500);
    expect(sim.simulator.stats.statusRequests(id)).toBe(0);
    const statusCount = socket.received.filter((m) => m.type === "status").length;
    await sleep(300);
    expect(socket.received.filter((m) => m.type === "status").length).toBe(statusCount);
  });

  it("resumes SSE from Last-Event-ID with the current status only", async () => {
    const { sim, relay } = await setup({ queueStart: 5, queueMs: 60_000, processingMs: 60_000 }, env());
    const id = await generate(relay.baseUrl);
    const first = track(openEventSource(`${relay.baseUrl}/v1/sora/generations/${id}/events`));
    await first.waitFor((e) => e.type === "status");
    sim.simulator.control.force(id, { status: "processing", progress_pct: 10, progress_pos_in_queue: null });
    await first.waitFor((e) => e.type === "status" && (JSON.parse(e.data) as Status).progress_pct === 10);
    sim.simulator.control.force(id, { status: "processing", progress_pct: 20, progress_pos_in_queue: null });
    const latest = await first.waitFor((e) => e.type === "status" && (JSON.parse(e.data) as Status).progress_pct === 20);
    first.close();

    // A client that saw version 1 gets one snapshot (the newest), not the steps in between.
    const resumed = track(openEventSource(`${relay.baseUrl}/v1/sora/generations/${id}/events`, { lastEventId: "1" }));
    const snapshot = await resumed.waitFor((e) => e.type === "status");
    expect(snapshot.id).toBe(latest.id);
    // A client already at the newest version gets nothing until the next change.
    const upToDate = track(openEventSource(`${relay.baseUrl}/v1/sora/generations/${id}/events`, { lastEventId: latest.id }));
    await sleep(400);
    expect(upToDate.received.filter((e) => e.type === "status")).toHaveLength(0);
    sim.simulator.control.force(id, { status: "processing", progress_pct: 30, progress_pos_in_queue: null });
    const next = await upToDate.waitFor((e) => e.type === "status");
    expect(Number(next.id)).toBe(Number(latest.id) + 1);
  });

  it("answers 204 to a reconnect at or past the final version", async () => {
    const { sim, relay } = await setup({ queueMs: 60_000, processingMs: 60_000 }, env());
    const id = await generate(relay.baseUrl);
    sim.simulator.control.finish(id, "completed");
    const answer = await fetch(`${relay.baseUrl}/v1/sora/generations/${id}`);
    const final = (await answer.json()) as Status;
    expect(final.status).toBe("completed");

    const atFinal = await fetch(`${relay.baseUrl}/v1/sora/generations/${id}/events`, {
      headers: { "last-event-id": String(final.version) },
    });
    expect(atFinal.status).toBe(204);
    const behind = await fetch(`${relay.baseUrl}/v1/sora/generations/${id}/events`, {
      headers: { "last-event-id": String(final.version - 1) },
    });
    expect(behind.status).toBe(200);
    const text = await behind.text();
    expect(text).toContain(`id: ${final.version}\n`);
    expect(text).toContain("event: status\n");
  });

  it("resumes a WebSocket subscription after a given version", async () => {
    const { sim, relay } = await setup({ queueStart: 5, queueMs: 60_000, processingMs: 60_000 }, env());
    const id = await generate(relay.baseUrl);
    const socket = track(await openWebSocket(relay.wsUrl));
    socket.send({ type: "subscribe", generation_id: id });
    const first = await socket.waitFor((m) => m.type === "status");
    const version = (first.generation as Status).version;

    const resumed = track(await openWebSocket(relay.wsUrl));
    resumed.send({ type: "subscribe", generation_id: id, after_version: version });
    await sleep(400);
    expect(resumed.received.filter((m) => m.type === "status")).toHaveLength(0);

    sim.simulator.control.finish(id, "completed");
    const final = await resumed.waitFor((m) => m.type === "status");
    expect((final.generation as Status).version).toBe(version + 1);
    expect((final.generation as Status).status).toBe("completed");
  });

  it("sends timeout after POLL_MAX_ATTEMPTS polls of a non-final status", async () => {
    const { sim, relay } = await setup({ queueMs: 60_000, processingMs: 60_000 }, { ...env(), POLL_MAX_ATTEMPTS: "3" });
    const id = sim.simulator.control.create();
    const socket = track(await openWebSocket(relay.wsUrl));
    socket.send({ type: "subscribe", generation_id: id });
    const stream = track(openEventSource(`${relay.baseUrl}/v1/sora/generations/${id}/events`));

    const timeout = await socket.waitFor((m) => m.type === "timeout", 10_000, "timeout over WebSocket");
    expect(timeout.generation_id).toBe(id);
    const sseTimeout = await stream.waitFor((e) => e.type === "timeout", 10_000, "timeout over SSE");
    expect(JSON.parse(sseTimeout.data)).toEqual({ generation_id: id });

    sim.simulator.stats.reset();
    await sleep(500);
    expect(sim.simulator.stats.statusRequests(id)).toBe(0);
  });

  it("stops polling once the last subscriber has been gone for the grace period", async () => {
    const { sim, relay } = await setup({ queueMs: 60_000, processingMs: 60_000 }, { ...env(), WATCH_GRACE_MS: "300" });
    const id = sim.simulator.control.create();
    const socket = track(await openWebSocket(relay.wsUrl));
    socket.send({ type: "subscribe", generation_id: id });
    await socket.waitFor((m) => m.type === "status");
    await sleep(300);
    expect(sim.simulator.stats.statusRequests(id)).toBeGreaterThan(1);

    socket.send({ type: "unsubscribe", generation_id: id });
    await sleep(700);
    sim.simulator.stats.reset();
    await sleep(500);
    expect(sim.simulator.stats.statusRequests(id)).toBe(0);
  });
});
