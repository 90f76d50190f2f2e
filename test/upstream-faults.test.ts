/**
 * How the relay survives Runblob's failures, injected at the simulator: CDN
 * error pages, late responses, connection resets and a rejected token. REST
 * clients get 502, 503 or 504 in Runblob's error shape. Push subscribers get
 * `upstream_error` during a failure streak and statuses again after it.
 */
import { randomUUID } from "node:crypto";
import { afterEach, describe, expect, it } from "vitest";
import { startRelay, startSimulator } from "./support/relay-harness.js";
import type { RelayHandle, SimulatorHandle } from "./support/relay-harness.js";
import {
  CleanupStack,
  eventData,
  httpRequest,
  openProbeSse,
  openProbeWebSocket,
  waitUntil,
} from "./support/probe-clients.js";
import type { HttpResult, SseItem, WsMessage } from "./support/probe-clients.js";
import type { Fault } from "../src/simulator/faults.js";
import type { RouteKey } from "../src/simulator/stats.js";

const cleanup = new CleanupStack();
afterEach(() => cleanup.run());

async function setup(env: Record<string, string> = {}): Promise<{ sim: SimulatorHandle; relay: RelayHandle }> {
  // Generations stay pending for 10 minutes unless a test forces another status.
  const sim = await startSimulator({ queueStart: 1, queueMs: 600_000, processingMs: 600_000 });
  cleanup.add(() => sim.close());
  const relay = await startRelay(sim, env);
  cleanup.add(() => relay.close());
  return { sim, relay };
}

const htmlPage = (status: number): Fault => ({
  status,
  body: `<html><head><title>${status}</title></head><body><h1>${status} Error</h1><p>cdn-edge</p></body></html>`,
  contentType: "text/html; charset=utf-8",
});
const jsonError = (status: number, detail: string): Fault => ({ status, body: JSON.stringify({ detail }), contentType: "application/json" });
const RESET: Fault = { reset: true };

/** Asserts `{"detail": "<string>"}` with the given status, never an upstream HTML page, and returns the detail. */
function expectDetail(result: HttpResult, status: number): string {
  expect(result.status, result.text).toBe(status);
  expect(result.headers["content-type"]).toMatch(/^application\/json/);
  expect(result.json, result.text).toEqual({ detail: expect.any(String) });
  const detail = result.json.detail as string;
  expect(detail.length).toBeGreaterThan(0);
  expect(detail).not.toMatch(/<html|cdn-edge/i);
  return detail;
}

interface RouteCall {
  route: RouteKey;
  name: string;
  call(relay: RelayHandle, sim: SimulatorHandle): Promise<HttpResult>;
}

const routeCalls: RouteCall[] = [
  {
    route: "status",
    name: "status",
    call: (relay, sim) => httpRequest(`${relay.baseUrl}/v1/sora/generations/${sim.simulator.control.create()}`),
  },
  { route: "list", name: "list", call: (relay) => httpRequest(`${relay.baseUrl}/v1/sora/generations?limit=5`) },
  { route: "generate", name: "generate", call: (relay) => httpRequest(`${relay.baseUrl}/v1/sora/generate`, { json: { prompt: "p" } }) },
];

/** Asserts that the relay still serves every route normally. */
async function expectRelayServes(relay: RelayHandle, sim: SimulatorHandle): Promise<void> {
  const health = await httpRequest(`${relay.baseUrl}/healthz`);
  expect(health.status, health.text).toBe(200);
  const status = await httpRequest(`${relay.baseUrl}/v1/sora/generations/${sim.simulator.control.create()}`);
  expect(status.status, status.text).toBe(200);
  const list = await httpRequest(`${relay.baseUrl}/v1/sora/generations`);
  expect(list.status, list.text).toBe(200);
  const created = await httpRequest(`${relay.baseUrl}/v1/sora/generate`, { json: { prompt: "after the fault" } });
  expect(created.status, created.text).toBe(201);
}

describe("REST answers to Runblob outages", () => {
  const outages = routeCalls.flatMap((routeCall) => [500, 502, 503, 504].map((status) => ({ ...routeCall, status })));

  it.each(outages)("$name: HTML $status becomes 502", async ({ route, call, status }) => {
    const { sim, relay } = await setup();
    sim.simulator.control.injectFaults(route, [htmlPage(status)]);

    const result = await call(relay, sim);
    expectDetail(result, 502);
    expect(sim.simulator.stats.requests(route)).toBe(1);
    await expectRelayServes(relay, sim);
  });

  it.each(routeCalls)("$name: JSON 503 becomes 502", async ({ route, call }) => {
    const { sim, relay } = await setup();
    sim.simulator.control.injectFaults(route, [jsonError(503, "Service temporarily unavailable")]);

    const result = await call(relay, sim);
    expectDetail(result, 502);
    expect(sim.simulator.stats.requests(route)).toBe(1);
  });

  it.each(routeCalls.filter(({ route }) => route !== "generate"))("$name: a late response becomes 504", async ({ route, call }) => {
    const { sim, relay } = await setup({ UPSTREAM_TIMEOUT_MS: "500" });
    sim.simulator.control.injectFaults(route, [{ delayMs: 5_000 }]);

    const started = performance.now();
    const result = await call(relay, sim);
    expectDetail(result, 504);
    // The relay gives up at its own timeout, not when the late response finally comes.
    expect(performance.now() - started).toBeLessThan(4_000);
    await expectRelayServes(relay, sim);
  });

  it.each(routeCalls.filter(({ route }) => route !== "generate"))("$name: a connection reset becomes 502", async ({ route, call }) => {
    const { sim, relay } = await setup();
    sim.simulator.control.injectFaults(route, [RESET]);

    const result = await call(relay, sim);
    expectDetail(result, 502);
    await expectRelayServes(relay, sim);
  });

  const credentialFaults = routeCalls.flatMap((routeCall) => [401, 403].map((status) => ({ ...routeCall, status })));

  it.each(credentialFaults)("$name: upstream $status becomes 503", async ({ route, call, status }) => {
    const { sim, relay } = await setup();
    sim.simulator.control.injectFaults(route, [jsonError(status, status === 401 ? "Invalid token" : "Forbidden")]);

    const result = await call(relay, sim);
    expect(expectDetail(result, 503)).toMatch(/relay's upstream credentials were rejected/);
  });

  it("answers 503 with a wrong token", async () => {
    const sim = await startSimulator();
    cleanup.add(() => sim.close());
    const relay = await startRelay(sim, { RUNBLOB_TOKEN: "not-the-simulator-token" });
    cleanup.add(() => relay.close());

    for (const { call } of routeCalls) {
      const result = await call(relay, sim);
      expect(expectDetail(result, 503)).toMatch(/relay's upstream credentials were rejected/);
    }
  });
});

describe("generate is never retried", () => {
  it("sends a timed-out generate once", async () => {
    const { sim, relay } = await setup({ UPSTREAM_TIMEOUT_MS: "500" });
    sim.simulator.control.injectFaults("generate", [{ delayMs: 2_000 }]);

    const result = await httpRequest(`${relay.baseUrl}/v1/sora/generate`, { json: { prompt: "slow" } });
    expect(expectDetail(result, 502)).toMatch(/may or may not have been created/);
    expect(sim.simulator.stats.requests("generate")).toBe(1);

    // A retry would come within a timeout or two. Nothing signals its absence, so this waits past the delayed response.
    await new Promise((resolve) => setTimeout(resolve, 2_500));
    expect(sim.simulator.stats.requests("generate")).toBe(1);
  });

  it("sends a reset generate once", async () => {
    const { sim, relay } = await setup();
    sim.simulator.control.injectFaults("generate", [RESET]);

    const result = await httpRequest(`${relay.baseUrl}/v1/sora/generate`, { json: { prompt: "reset" } });
    expect(expectDetail(result, 502)).toMatch(/may or may not have been created/);
    expect(sim.simulator.stats.requests("generate")).toBe(1);
    expect(sim.simulator.control.pendingFaults().generate).toBe(0);
  });
});

describe("push subscribers during Runblob failures", () => {
  const streakFaults: Fault[] = [htmlPage(503), RESET, jsonError(500, "Internal Server Error"), htmlPage(502)];

  it("WebSocket: upstream_error, then recovery", async () => {
    const { sim, relay } = await setup();
    const id = sim.simulator.control.create();
    const client = await openProbeWebSocket(relay.wsUrl);
    cleanup.add(() => client.close());

    client.sendJson({ type: "subscribe", generation_id: id });
    await client.messages.next(isWsStatus(id, "pending"), "the first status");

    sim.simulator.control.injectFaults("status", streakFaults);
    const error = await client.messages.next(isWsError("upstream_error"), "upstream_error");
    expect(error).toEqual({ type: "error", code: "upstream_error", message: expect.any(String), generation_id: id });

    sim.simulator.control.force(id, { status: "processing", progress_pct: 40 });
    const recovered = await client.messages.next(isWsStatus(id, "processing"), "the status after recovery");
    expect(recovered.generation).toMatchObject({ generation_id: id, status: "processing", progress_pct: 40, version: 2 });
    expect(sim.simulator.control.pendingFaults().status).toBe(0);
    // One failure streak is reported once, not once per failed poll.
    expect(client.messages.items.filter(isWsError("upstream_error"))).toHaveLength(1);

    sim.simulator.control.finish(id, "completed");
    const final = await client.messages.next(isWsStatus(id, "completed"), "the final status");
    expect(final.generation).toMatchObject({ version: 3 });
  });

  it("WebSocket: subscribe during an outage", async () => {
    const { sim, relay } = await setup();
    const id = sim.simulator.control.create();
    sim.simulator.control.injectFaults("status", [htmlPage(503), htmlPage(503), htmlPage(503)]);
    const client = await openProbeWebSocket(relay.wsUrl);
    cleanup.add(() => client.close());

    client.sendJson({ type: "subscribe", generation_id: id });
    const error = await client.messages.next(isWsError("upstream_error"), "upstream_error");
    expect(error.generation_id).toBe(id);
    const status = await client.messages.next(isWsStatus(id, "pending"), "the status after the outage");
    expect(status.generation).toMatchObject({ generation_id: id, version: 1 });
  });

  it("WebSocket: poll-time 404 is not_found", async () => {
    const { sim, relay } = await setup();
    const id = sim.simulator.control.create();
    const client = await openProbeWebSocket(relay.wsUrl);
    cleanup.add(() => client.close());

    client.sendJson({ type: "subscribe", generation_id: id });
    await client.messages.next(isWsStatus(id, "pending"), "the first status");

    sim.simulator.control.injectFaults("status", [jsonError(404, "Generation not found")]);
    const error = await client.messages.next(isWsError("not_found"), "not_found");
    expect(error).toEqual({ type: "error", code: "not_found", message: expect.any(String), generation_id: id });

    // The subscription is over: a later change is not pushed. Polls stop too, so nothing could observe one.
    const polls = sim.simulator.stats.statusRequests(id);
    sim.simulator.control.force(id, { status: "processing", progress_pct: 10 });
    client.sendJson({ type: "subscribe", generation_id: sim.simulator.control.create() });
    await client.messages.next((message) => message.type === "status" && message.generation !== undefined, "a status of the second subscription");
    expect(client.messages.items.filter(isWsStatus(id, "processing"))).toHaveLength(0);
    expect(sim.simulator.stats.statusRequests(id)).toBe(polls);
  });

  it("SSE: upstream_error, then recovery", async () => {
    const { sim, relay } = await setup();
    const id = sim.simulator.control.create();
    const stream = await openProbeSse(`${relay.baseUrl}/v1/sora/generations/${id}/events`);
    cleanup.add(() => stream.close());
    await stream.items.next(isSseStatus("pending"), "the first status event");

    sim.simulator.control.injectFaults("status", streakFaults);
    const error = await stream.items.next(isSseEvent("error"), "an error event");
    expect(eventData(error)).toEqual({ code: "upstream_error", message: expect.any(String), generation_id: id });

    sim.simulator.control.force(id, { status: "processing", progress_pct: 40 });
    const recovered = await stream.items.next(isSseStatus("processing"), "the status event after recovery");
    expect(recovered).toMatchObject({ id: "2" });
    expect(eventData(recovered)).toMatchObject({ generation_id: id, progress_pct: 40, version: 2 });
    expect(stream.items.items.filter(isSseEvent("error"))).toHaveLength(1);
  });

  it("SSE: poll-time 404 is not_found", async () => {
    const { sim, relay } = await setup();
    const id = sim.simulator.control.create();
    const stream = await openProbeSse(`${relay.baseUrl}/v1/sora/generations/${id}/events`);
    cleanup.add(() => stream.close());
    await stream.items.next(isSseStatus("pending"), "the first status event");

    sim.simulator.control.injectFaults("status", [jsonError(404, "Generation not found")]);
    const error = await stream.items.next(isSseEvent("error"), "an error event");
    expect(eventData(error)).toEqual({ code: "not_found", message: expect.any(String), generation_id: id });
    await stream.ended;
  });
});

describe("a long run of upstream failures", () => {
  it("serves after 1,000 upstream failures", async () => {
    // Two pooled connections: a response body left unread would hold one and stall the requests after it.
    const { sim, relay } = await setup({ UPSTREAM_CONNECTIONS: "2", UPSTREAM_MAX_CONCURRENT: "2", UPSTREAM_CLIENT_RESERVE: "0", UPSTREAM_TIMEOUT_MS: "5000" });
    const kinds: Fault[] = [htmlPage(500), htmlPage(502), jsonError(503, "Service Unavailable"), htmlPage(504), jsonError(500, "Internal Server Error")];
    const faults = Array.from({ length: 1000 }, (_, i) => (i % 50 === 49 ? RESET : kinds[i % kinds.length]!));
    sim.simulator.control.injectFaults("status", faults);

    const statuses = new Map<number, number>();
    let next = 0;
    const worker = async () => {
      while (next < faults.length) {
        next += 1;
        // A distinct id per request, so no two requests share one upstream call.
        const result = await httpRequest(`${relay.baseUrl}/v1/sora/generations/${randomUUID()}`);
        statuses.set(result.status, (statuses.get(result.status) ?? 0) + 1);
        if (result.status === 502) expect(result.json).toEqual({ detail: expect.any(String) });
      }
    };
    await Promise.all(Array.from({ length: 4 }, worker));

    expect(Object.fromEntries(statuses)).toEqual({ 502: 1000 });
    expect(sim.simulator.stats.requests("status")).toBe(1000);
    expect(sim.simulator.control.pendingFaults().status).toBe(0);
    await expectRelayServes(relay, sim);
  });

  it("recovers a watch after 1,000 failures", async () => {
    const { sim, relay } = await setup({ POLL_INTERVAL_MS: "100", POLL_MAX_ATTEMPTS: "100000" });
    const id = sim.simulator.control.create();
    const client = await openProbeWebSocket(relay.wsUrl);
    cleanup.add(() => client.close());
    client.sendJson({ type: "subscribe", generation_id: id });
    await client.messages.next(isWsStatus(id, "pending"), "the first status");

    // Each poll uses up one fault; 1,000 polls at 100 ms would take 100 s, so REST reads of other ids use up most of them.
    sim.simulator.control.injectFaults("status", Array.from({ length: 1000 }, () => htmlPage(502)));
    await client.messages.next(isWsError("upstream_error"), "upstream_error");
    while (sim.simulator.control.pendingFaults().status > 0) {
      await Promise.all(Array.from({ length: 4 }, () => httpRequest(`${relay.baseUrl}/v1/sora/generations/${randomUUID()}`)));
    }

    sim.simulator.control.force(id, { status: "processing", progress_pct: 70 });
    const recovered = await client.messages.next(isWsStatus(id, "processing"), "the status after 1,000 failures");
    expect(recovered.generation).toMatchObject({ generation_id: id, progress_pct: 70, version: 2 });
    await waitUntil(() => sim.simulator.stats.statusRequests(id) > 1, "the watched generation is polled");
  });
});

function isWsStatus(generationId: string, status: string): (message: WsMessage) => boolean {
  return (message) => {
    const generation = message.generation as { generation_id?: string; status?: string } | undefined;
    return message.type === "status" && generation?.generation_id === generationId && generation.status === status;
  };
}

function isWsError(code: string): (message: WsMessage) => boolean {
  return (message) => message.type === "error" && message.code === code;
}

function isSseEvent(name: string): (item: SseItem) => boolean {
  return (item) => item.kind === "event" && item.event === name;
}

function isSseStatus(status: string): (item: SseItem) => boolean {
  return (item) => item.kind === "event" && item.event === "status" && (JSON.parse(item.data) as { status?: string }).status === status;
}
