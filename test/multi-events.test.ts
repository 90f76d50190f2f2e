/**
 * GET /v1/sora/events: several generations on one SSE stream, read with a real
 * EventSource. Covers the cursor in each event id, resume from Last-Event-ID
 * and `after`, the end of the stream, input validation, and a relay restart.
 */
import { afterEach, describe, expect, it } from "vitest";
import { inject } from "vitest";
import { startRelay, startSimulator } from "./support/relay-harness.js";
import type { RelayHandle, SimulatorHandle } from "./support/relay-harness.js";
import { generate, openEventSource } from "./support/clients.js";
import type { SseClient, SseEvent } from "./support/clients.js";

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

type StreamClient = SseClient & { end(timeoutMs?: number): Promise<SseEvent> };

/** An EventSource that also records the `end` event, which the shared client helper does not listen for. */
function openStream(url: string, options: { lastEventId?: string } = {}): StreamClient {
  const client = openEventSource(url, options);
  cleanups.push(() => client.close());
  const ended = new Promise<SseEvent>((resolve) => {
    client.source.addEventListener("end", (event) => resolve({ type: "end", id: event.lastEventId, data: event.data }));
  });
  return {
    ...client,
    end: (timeoutMs = 10_000) =>
      Promise.race([
        ended,
        sleep(timeoutMs).then(() => {
          throw new Error(`no end event within ${timeoutMs} ms; received ${client.received.length} events: ${JSON.stringify(client.received.slice(-3))}`);
        }),
      ]),
  };
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

type Status = { generation_id: string; status: string; version: number; progress_pct?: number | null };

const statusOf = (event: SseEvent) => JSON.parse(event.data) as Status;
const statusesOf = (client: SseClient, id: string) =>
  client.received.filter((e) => e.type === "status").map(statusOf).filter((s) => s.generation_id === id);
const isFinal = (event: SseEvent) => event.type === "status" && ["completed", "failed"].includes(statusOf(event).status);
const eventsUrl = (relay: RelayHandle, ids: string[], after?: string) =>
  `${relay.baseUrl}/v1/sora/events?ids=${ids.join(",")}${after === undefined ? "" : `&after=${after}`}`;

async function detailOf(response: Response): Promise<Array<{ loc: unknown[]; msg: string }>> {
  expect(response.status).toBe(422);
  return ((await response.json()) as { detail: Array<{ loc: unknown[]; msg: string }> }).detail;
}

describe("multi-generation SSE stream", () => {
  it("streams all generations in order, then end", async () => {
    const { relay } = await setup({ queueStart: 2, queueMs: 400, processingMs: 800 });
    const ids = [await generate(relay.baseUrl), await generate(relay.baseUrl), await generate(relay.baseUrl)];
    const stream = openStream(eventsUrl(relay, ids));

    const end = await stream.end(15_000);
    expect(end.id).toBe("-,-,-");
    for (const id of ids) {
      const versions = statusesOf(stream, id).map((s) => s.version);
      expect(versions.length).toBeGreaterThan(2);
      for (let i = 1; i < versions.length; i += 1) expect(versions[i]).toBe(versions[i - 1]! + 1);
      expect(statusesOf(stream, id).at(-1)!.status).toBe("completed");
    }
    // Each status event's id is the cursor of all three positions at that moment.
    for (const event of stream.received.filter((e) => e.type === "status")) {
      const status = statusOf(event);
      const entry = event.id!.split(",")[ids.indexOf(status.generation_id)];
      expect(entry).toBe(isFinal(event) ? "-" : String(status.version));
    }
  });

  it("answers 204 to the reconnect after the end", async () => {
    const { sim, relay } = await setup({ queueMs: 60_000, processingMs: 60_000 });
    const ids = [await generate(relay.baseUrl), await generate(relay.baseUrl)];
    const stream = openStream(eventsUrl(relay, ids));
    await stream.waitFor((e) => e.type === "status");
    for (const id of ids) sim.simulator.control.finish(id, "completed");
    const end = await stream.end();

    const reconnect = await fetch(eventsUrl(relay, ids), { headers: { "last-event-id": end.id! } });
    expect(reconnect.status).toBe(204);
  });

  it("resumes every generation from Last-Event-ID", async () => {
    const { sim, relay } = await setup({ queueStart: 5, queueMs: 60_000, processingMs: 60_000 });
    const [a, b, c] = [await generate(relay.baseUrl), await generate(relay.baseUrl), await generate(relay.baseUrl)] as [string, string, string];
    const first = openStream(eventsUrl(relay, [a, b, c]));
    await first.waitFor(() => statusesOf(first, a).length + statusesOf(first, b).length + statusesOf(first, c).length === 3, 10_000, "three first statuses");
    sim.simulator.control.force(a, { status: "processing", progress_pct: 10, progress_pos_in_queue: null });
    const last = await first.waitFor((e) => e.type === "status" && statusOf(e).progress_pct === 10, 10_000, "a at 10 %");
    first.close();

    // While disconnected: b changes, a and c do not.
    sim.simulator.control.force(b, { status: "processing", progress_pct: 40, progress_pos_in_queue: null });
    await sleep(400);

    const resumed = openStream(eventsUrl(relay, [a, b, c]), { lastEventId: last.id! });
    const snapshot = await resumed.waitFor((e) => e.type === "status", 10_000, "b's new status");
    expect(statusOf(snapshot).generation_id).toBe(b);
    expect(statusOf(snapshot).progress_pct).toBe(40);
    await sleep(400);
    expect(resumed.received.filter((e) => e.type === "status")).toHaveLength(1);

    sim.simulator.control.finish(c, "failed", "Content policy violation.");
    const failed = await resumed.waitFor(isFinal, 10_000, "c's final status");
    expect(statusOf(failed).generation_id).toBe(c);
    expect(failed.id!.split(",")[2]).toBe("-");
  });

  it("resumes from after positions in the URL", async () => {
    const { sim, relay } = await setup({ queueStart: 5, queueMs: 60_000, processingMs: 60_000 });
    const [a, b] = [await generate(relay.baseUrl), await generate(relay.baseUrl)] as [string, string];
    sim.simulator.control.force(a, { status: "processing", progress_pct: 10, progress_pos_in_queue: null });
    await sleep(300);
    const current = (await (await fetch(`${relay.baseUrl}/v1/sora/generations/${a}`)).json()) as Status;

    const stream = openStream(eventsUrl(relay, [a, b], `${a}:${current.version}`));
    const event = await stream.waitFor((e) => e.type === "status", 10_000, "b's status");
    expect(statusOf(event).generation_id).toBe(b);
    expect(event.id).toBe(`${current.version},${statusOf(event).version}`);
    await sleep(400);
    expect(statusesOf(stream, a)).toHaveLength(0);
  });

  it("starts over when a position is above the stored version", async () => {
    const { relay } = await setup({ queueMs: 60_000, processingMs: 60_000 });
    const id = await generate(relay.baseUrl);
    // A position from a store that lost its history, as after a restart without Redis.
    const stream = openStream(eventsUrl(relay, [id], `${id}:50`));
    const event = await stream.waitFor((e) => e.type === "status", 10_000, "current status");
    expect(statusOf(event).version).toBeLessThan(50);
  });

  it("sends not_found and timeout with generation_id", async () => {
    const { sim, relay } = await setup({ queueMs: 60_000, processingMs: 60_000 }, { POLL_MAX_ATTEMPTS: "3" });
    const unknown = "00000000-0000-4000-8000-000000000000";
    const watched = sim.simulator.control.create();
    const stream = openStream(eventsUrl(relay, [unknown, watched]));

    const notFound = await stream.waitFor((e) => e.type === "error", 10_000, "not_found event");
    expect(JSON.parse(notFound.data)).toEqual({ code: "not_found", message: "generation not found", generation_id: unknown });
    expect(notFound.id!.split(",")[0]).toBe("-");
    const timeout = await stream.waitFor((e) => e.type === "timeout", 10_000, "timeout event");
    expect(JSON.parse(timeout.data)).toEqual({ generation_id: watched });
    const end = await stream.end();
    expect(end.id).toBe("-,-");
  });

  it("rejects invalid ids, after and Last-Event-ID with 422", async () => {
    const { relay } = await setup({}, { WS_MAX_SUBSCRIPTIONS: "3" });
    const id = "3da42dea-70a9-4951-81c5-4aa9c000fe2d";
    const other = "550e8400-e29b-41d4-a716-446655440000";
    const url = (query: string) => `${relay.baseUrl}/v1/sora/events?${query}`;

    const badId = await detailOf(await fetch(url(`ids=${id},not-a-uuid`)));
    expect(badId[0]!.msg).toBe('invalid generation_id "not-a-uuid": expected a UUID');
    expect(badId[0]!.loc).toEqual(["query", "ids", "1"]);

    const missing = await detailOf(await fetch(url("")));
    expect(missing[0]!.loc).toEqual(["query", "ids"]);

    const tooMany = await detailOf(await fetch(url(`ids=${[id, other, crypto.randomUUID(), crypto.randomUUID()].join(",")}`)));
    expect(tooMany[0]!.msg).toContain("at most 3 generations");

    const repeated = await detailOf(await fetch(url(`ids=${id},${id}`)));
    expect(repeated[0]!.msg).toBe(`generation_id "${id}" appears more than once in ids`);

    const strayAfter = await detailOf(await fetch(url(`ids=${id}&after=${other}:3`)));
    expect(strayAfter[0]!.msg).toBe(`after names generation_id "${other}", which is not in ids`);

    const badAfter = await detailOf(await fetch(url(`ids=${id}&after=${id}`)));
    expect(badAfter[0]!.msg).toContain("<generation_id>:<version>");

    const badCursor = await detailOf(await fetch(url(`ids=${id}`), { headers: { "last-event-id": "abc" } }));
    expect(badCursor[0]!.loc).toEqual(["header", "last-event-id"]);

    const shortCursor = await detailOf(await fetch(url(`ids=${id},${other}`), { headers: { "last-event-id": "4" } }));
    expect(shortCursor[0]!.msg).toContain("Last-Event-ID has 1 entries but ids names 2 generations");
  });

  it("resumes on its own across a relay restart", async () => {
    const sim = await startSimulator({ queueStart: 2, queueMs: 1500, processingMs: 2500 });
    cleanups.push(() => sim.close());
    const env = { REDIS_URL: inject("redisUrl"), REDIS_KEY_PREFIX: `multi${Date.now()}:` };
    let relay = await startRelay(sim, env);
    const port = new URL(relay.baseUrl).port;
    cleanups.push(() => relay.close());
    const ids = [await generate(relay.baseUrl), await generate(relay.baseUrl)];
    const stream = openStream(eventsUrl(relay, ids));
    await stream.waitFor((e) => e.type === "status" && statusOf(e).status === "processing", 10_000, "a processing status");

    // The relay asks clients to come back after 1 to 5 s; the EventSource reconnects by itself.
    await relay.close();
    relay = await startRelay(sim, { ...env, PORT: port });
    await stream.end(20_000);

    for (const id of ids) {
      const versions = statusesOf(stream, id).map((s) => s.version);
      for (let i = 1; i < versions.length; i += 1) expect(versions[i]).toBeGreaterThan(versions[i - 1]!);
      expect(statusesOf(stream, id).at(-1)!.status).toBe("completed");
    }
  });
});
