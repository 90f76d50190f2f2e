/**
 * The SSE endpoint's input checks and stream framing, read from the raw
 * response body with fetch. Errors come as JSON before any stream starts.
 * An opened stream carries the SSE headers, a `retry:` hint, status events
 * with ids, and keep-alive comments.
 */
import { randomUUID } from "node:crypto";
import { EventSource } from "eventsource";
import { afterEach, describe, expect, it } from "vitest";
import { startRelay, startSimulator } from "./support/relay-harness.js";
import type { RelayHandle, SimulatorHandle } from "./support/relay-harness.js";
import { CleanupStack, EVENT_TIMEOUT_MS, eventData, httpRequest, openProbeSse, upstreamRequestTotal } from "./support/probe-clients.js";
import type { HttpResult, SseItem } from "./support/probe-clients.js";

const cleanup = new CleanupStack();
afterEach(() => cleanup.run());

async function setup(env: Record<string, string> = {}): Promise<{ sim: SimulatorHandle; relay: RelayHandle }> {
  // Generations stay pending for 10 minutes, so a stream stays open for the whole test.
  const sim = await startSimulator({ queueStart: 1, queueMs: 600_000, processingMs: 600_000 });
  cleanup.add(() => sim.close());
  const relay = await startRelay(sim, env);
  cleanup.add(() => relay.close());
  return { sim, relay };
}

const eventsUrl = (relay: RelayHandle, id: string) => `${relay.baseUrl}/v1/sora/generations/${id}/events`;
const isEvent = (name: string) => (item: SseItem) => item.kind === "event" && item.event === name;

/** Asserts a JSON error response (not a stream) with the given status. */
function expectJsonError(result: HttpResult, status: number): void {
  expect(result.status, result.text).toBe(status);
  expect(result.headers["content-type"]).toMatch(/^application\/json/);
  expect(result.headers["x-accel-buffering"]).toBeUndefined();
}

function expectIssueAt(result: HttpResult, loc: string[]): void {
  expectJsonError(result, 422);
  expect(result.json.detail).toEqual(
    expect.arrayContaining([{ type: expect.any(String), loc, msg: expect.any(String) }]),
  );
}

describe("SSE requests rejected before the stream", () => {
  const invalidIds = ["abc", "550e8400-e29b-41d4-a716-44665544000", "..%2Fbalance", "550e8400e29b41d4a716446655440000x"];

  it.each(invalidIds)("rejects id %s with 422", async (id) => {
    const { sim, relay } = await setup();
    const before = upstreamRequestTotal(sim);

    const result = await httpRequest(eventsUrl(relay, id), { headers: { accept: "text/event-stream" } });
    expectIssueAt(result, ["path", "id"]);
    expect(upstreamRequestTotal(sim)).toBe(before);
  });

  it("rejects an unknown id with Runblob's 404", async () => {
    const { sim, relay } = await setup();
    const id = randomUUID();

    const result = await httpRequest(eventsUrl(relay, id), { headers: { accept: "text/event-stream" } });
    expectJsonError(result, 404);
    expect(result.json).toEqual({ detail: "Generation not found" });
    expect(sim.simulator.stats.statusRequests(id)).toBeGreaterThanOrEqual(1);
  });

  const invalidLastEventIds = ["abc", "-1", "1.5", "0x1", "1e3", "1234567890123456"];

  it.each(invalidLastEventIds)("rejects Last-Event-ID %j with 422", async (lastEventId) => {
    const { sim, relay } = await setup();
    const id = sim.simulator.control.create();
    const before = upstreamRequestTotal(sim);

    const result = await httpRequest(eventsUrl(relay, id), { headers: { accept: "text/event-stream", "last-event-id": lastEventId } });
    expectIssueAt(result, ["header", "last-event-id"]);
    expect(upstreamRequestTotal(sim)).toBe(before);
  });

  it("answers 204 after the final version", async () => {
    const { sim, relay } = await setup();
    const id = sim.simulator.control.create({ queueMs: 0, processingMs: 0 });

    const result = await httpRequest(eventsUrl(relay, id), { headers: { accept: "text/event-stream", "last-event-id": "1" } });
    expect(result.status, result.text).toBe(204);
    expect(result.text).toBe("");
  });
});

describe("SSE stream", () => {
  it("sends headers, retry and first status", async () => {
    const { sim, relay } = await setup();
    const id = sim.simulator.control.create();

    const stream = await openProbeSse(eventsUrl(relay, id));
    cleanup.add(() => stream.close());
    expect(stream.headers.get("content-type")).toMatch(/^text\/event-stream/);
    expect(stream.headers.get("cache-control")).toMatch(/(^|,\s*)no-cache(\s*,|$)/);
    expect(stream.headers.get("x-accel-buffering")).toBe("no");

    const retry = await stream.items.next((item) => item.kind === "retry", "a retry: line");
    expect(retry).toEqual({ kind: "retry", ms: expect.any(Number) });
    const status = await stream.items.next(isEvent("status"), "the first status event");
    expect(status).toMatchObject({ kind: "event", event: "status", id: "1" });
    expect(eventData(status)).toMatchObject({ generation_id: id, status: "pending", version: 1 });
  });

  it("accepts Last-Event-ID 0", async () => {
    const { sim, relay } = await setup();
    const id = sim.simulator.control.create();

    const stream = await openProbeSse(eventsUrl(relay, id), { "last-event-id": "0" });
    cleanup.add(() => stream.close());
    const status = await stream.items.next(isEvent("status"), "the first status event");
    expect(eventData(status)).toMatchObject({ generation_id: id, version: 1 });
  });

  it("sends keep-alive comments", async () => {
    const { sim, relay } = await setup({ SSE_KEEPALIVE_MS: "1000" });
    const id = sim.simulator.control.create();

    const stream = await openProbeSse(eventsUrl(relay, id));
    cleanup.add(() => stream.close());
    await stream.items.next(isEvent("status"), "the first status event");
    const first = await stream.items.next((item) => item.kind === "comment", "a keep-alive comment", EVENT_TIMEOUT_MS);
    expect(first).toEqual({ kind: "comment", text: "keep-alive" });
    await stream.items.next((item) => item.kind === "comment", "a second keep-alive comment", EVENT_TIMEOUT_MS);
  });

  it("keeps idle gaps under the interval", async () => {
    const { sim, relay } = await setup({ SSE_KEEPALIVE_MS: "1000" });
    const id = sim.simulator.control.create();

    const stream = await openProbeSse(eventsUrl(relay, id));
    cleanup.add(() => stream.close());
    await stream.items.next(isEvent("status"), "the first status event");
    await stream.items.next((item) => item.kind === "comment", "a keep-alive comment", EVENT_TIMEOUT_MS);
    const first = Date.now();
    await stream.items.next((item) => item.kind === "comment", "a second keep-alive comment", EVENT_TIMEOUT_MS);

    // Comments go to streams silent for half the interval, checked every half interval.
    expect(Date.now() - first).toBeLessThanOrEqual(1000 + 250);
  });

  it("skips comments on busy streams", async () => {
    const { sim, relay } = await setup({ SSE_KEEPALIVE_MS: "1000" });
    // The queue position drops every 100 ms for 10 s, so each 100 ms poll finds a change.
    const id = sim.simulator.control.create({ queueStart: 100, queueMs: 10_000 });

    const stream = await openProbeSse(eventsUrl(relay, id));
    cleanup.add(() => stream.close());
    await stream.items.next(isEvent("status"), "the first status event");
    await new Promise((resolve) => setTimeout(resolve, 2500));

    const statuses = stream.items.items.filter(isEvent("status")).length;
    const comments = stream.items.items.filter((item) => item.kind === "comment").length;
    expect(statuses).toBeGreaterThan(10);
    expect(comments).toBe(0);
  });

  it("ends after a final status", async () => {
    const { sim, relay } = await setup();
    const id = sim.simulator.control.create({ queueMs: 0, processingMs: 0 });

    const stream = await openProbeSse(eventsUrl(relay, id));
    cleanup.add(() => stream.close());
    const status = await stream.items.next(isEvent("status"), "the final status event");
    expect(eventData(status)).toMatchObject({ generation_id: id, status: "completed", version: 1 });
    await stream.ended;
  });

  it("feeds a real EventSource client", async () => {
    const { sim, relay } = await setup();
    const id = sim.simulator.control.create();

    const source = new EventSource(eventsUrl(relay, id));
    cleanup.add(() => source.close());
    const event = await new Promise<MessageEvent>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error("no status event within the timeout")), EVENT_TIMEOUT_MS);
      source.addEventListener("status", (received) => {
        clearTimeout(timer);
        resolve(received);
      });
    });
    expect(event.lastEventId).toBe("1");
    expect(JSON.parse(event.data as string)).toMatchObject({ generation_id: id, status: "pending", version: 1 });
  });
});
