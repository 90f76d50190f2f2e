/**
 * GET /metrics against a real relay and simulator: the exposition format,
 * upstream counters by route and outcome, rejections by reason, push counters,
 * the separate METRICS_PORT server, and label values that never carry ids.
 */
import { afterEach, describe, expect, it } from "vitest";
import { inject } from "vitest";
import { startRelay, startSimulator } from "./support/relay-harness.js";
import type { RelayHandle, SimulatorHandle } from "./support/relay-harness.js";
import { CleanupStack, httpRequest } from "./support/ops-clients.js";
import { generate, openWebSocket } from "./support/clients.js";

const cleanup = new CleanupStack();
afterEach(() => cleanup.run());

async function setup(env: Record<string, string> = {}): Promise<{ sim: SimulatorHandle; relay: RelayHandle }> {
  const sim = await startSimulator({ queueStart: 1, queueMs: 600_000, processingMs: 600_000 });
  cleanup.add(() => sim.close());
  const relay = await startRelay(sim, { UPSTREAM_TIMEOUT_MS: "300", ...env });
  cleanup.add(() => relay.close());
  return { sim, relay };
}

/** Parses the text exposition into `name{labels}` → value. */
function parseExposition(text: string): Map<string, number> {
  const samples = new Map<string, number>();
  for (const line of text.split("\n")) {
    if (line === "" || line.startsWith("#")) continue;
    const separator = line.lastIndexOf(" ");
    samples.set(line.slice(0, separator), Number(line.slice(separator + 1)));
  }
  return samples;
}

async function scrape(url: string): Promise<Map<string, number>> {
  const result = await httpRequest(`${url}/metrics`);
  expect(result.status, result.text).toBe(200);
  return parseExposition(result.text);
}

const UUID = /[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}/i;

describe("GET /metrics", () => {
  it("serves the Prometheus text format", async () => {
    const { relay } = await setup();
    const result = await httpRequest(`${relay.baseUrl}/metrics`);

    expect(result.status).toBe(200);
    expect(result.headers["content-type"]).toMatch(/^text\/plain; version=0\.0\.4/);
    expect(result.text).toContain("# TYPE relay_upstream_requests_total counter");
    // prom-client's default process metrics.
    expect(result.text).toContain("process_cpu_user_seconds_total");
    expect(result.text).toContain("nodejs_eventloop_lag_seconds");
    expect(result.text).toContain("relay_watched_generations 0");
  });

  it("counts upstream requests by route and outcome", async () => {
    const { sim, relay } = await setup();
    await generate(relay.baseUrl);
    sim.simulator.control.injectFaults("list", [{ status: 503 }, { reset: true }, { delayMs: 1000 }]);
    sim.simulator.control.injectFaults("status", [{ status: 200, body: "<html>not json</html>", contentType: "text/html" }]);

    for (let i = 0; i < 3; i += 1) await httpRequest(`${relay.baseUrl}/v1/sora/generations`);
    await httpRequest(`${relay.baseUrl}/v1/sora/generations?limit=5`);
    await httpRequest(`${relay.baseUrl}/v1/sora/generations/${sim.simulator.control.create()}`);
    await httpRequest(`${relay.baseUrl}/v1/sora/generations/00000000-0000-4000-8000-000000000000`);

    const samples = await scrape(relay.baseUrl);
    expect(samples.get('relay_upstream_requests_total{route="generate",status_class="2xx"}')).toBe(1);
    expect(samples.get('relay_upstream_requests_total{route="list",status_class="5xx"}')).toBe(1);
    expect(samples.get('relay_upstream_requests_total{route="list",status_class="network"}')).toBe(1);
    expect(samples.get('relay_upstream_requests_total{route="list",status_class="timeout"}')).toBe(1);
    expect(samples.get('relay_upstream_requests_total{route="list",status_class="2xx"}')).toBe(1);
    expect(samples.get('relay_upstream_requests_total{route="status",status_class="invalid"}')).toBeGreaterThanOrEqual(1);
    expect(samples.get('relay_upstream_requests_total{route="status",status_class="4xx"}')).toBeGreaterThanOrEqual(1);
    expect(samples.get('relay_upstream_request_duration_seconds_count{route="list"}')).toBe(4);
    expect(samples.get('relay_upstream_requests_in_flight{route="list"}')).toBe(0);
  });

  it("counts rejected requests by reason", async () => {
    const { relay } = await setup({ WS_MAX_SUBSCRIPTIONS: "1" });
    await httpRequest(`${relay.baseUrl}/v1/sora/generate`, { json: { prompt: "" } });
    await httpRequest(`${relay.baseUrl}/v1/sora/generate`, { json: { prompt: "x".repeat(15 * 1024 * 1024) } });
    await httpRequest(`${relay.baseUrl}/no/such/route`);
    await httpRequest(`${relay.baseUrl}/v1/sora/generations/00000000-0000-4000-8000-000000000000`);

    const socket = await openWebSocket(relay.wsUrl);
    cleanup.add(() => socket.close());
    socket.send({ type: "subscribe", generation_id: "not-a-uuid" });
    await socket.waitFor((m) => m.code === "invalid_generation_id", 10_000, "invalid_generation_id");
    socket.send({ type: "subscribe", generation_id: "00000000-0000-4000-8000-000000000001" });
    socket.send({ type: "subscribe", generation_id: "00000000-0000-4000-8000-000000000002" });
    await socket.waitFor((m) => m.code === "too_many_subscriptions", 10_000, "too_many_subscriptions");

    const samples = await scrape(relay.baseUrl);
    expect(samples.get('relay_rejected_requests_total{reason="validation"}')).toBe(2);
    expect(samples.get('relay_rejected_requests_total{reason="body_too_large"}')).toBe(1);
    expect(samples.get('relay_rejected_requests_total{reason="not_found"}')).toBeGreaterThanOrEqual(2);
    expect(samples.get('relay_rejected_requests_total{reason="too_many_subscriptions"}')).toBe(1);
  });

  it("counts pushed messages and subscribers by transport", async () => {
    const { sim, relay } = await setup();
    const id = sim.simulator.control.create();
    const sockets = [await openWebSocket(relay.wsUrl), await openWebSocket(relay.wsUrl)];
    for (const socket of sockets) {
      cleanup.add(() => socket.close());
      socket.send({ type: "subscribe", generation_id: id });
    }
    for (const socket of sockets) await socket.waitFor((m) => m.type === "status", 10_000, "first status");

    let samples = await scrape(relay.baseUrl);
    expect(samples.get('relay_open_connections{transport="websocket"}')).toBe(2);
    expect(samples.get('relay_subscribers{transport="websocket"}')).toBe(2);
    expect(samples.get("relay_subscribed_generations")).toBe(1);
    expect(samples.get("relay_watched_generations")).toBe(1);

    sim.simulator.control.force(id, { status: "processing", progress_pct: 50 });
    let version = 0;
    for (const socket of sockets) {
      const changed = await socket.waitFor(
        (m) => m.type === "status" && (m.generation as { progress_pct: number }).progress_pct === 50,
        10_000,
        "changed status",
      );
      version = (changed.generation as { version: number }).version;
    }
    samples = await scrape(relay.baseUrl);
    expect(samples.get('relay_push_messages_total{transport="websocket",type="status"}')).toBe(4);
    expect(samples.get('relay_push_bytes_total{transport="websocket"}')).toBeGreaterThan(400);
    // One latency sample per change (versions 1 and 2), however many subscribers it reached.
    expect(version).toBe(2);
    expect(samples.get("relay_push_latency_seconds_count")).toBe(2);
  });

  it("labels carry no generation or request ids", async () => {
    const { sim, relay } = await setup();
    const id = await generate(relay.baseUrl);
    await httpRequest(`${relay.baseUrl}/v1/sora/generations/${id}`, { headers: { "x-request-id": "request-label-check" } });
    await httpRequest(`${relay.baseUrl}/v1/sora/generations/${sim.simulator.control.create()}/events?x=1`, { headers: { "last-event-id": "abc" } });

    const result = await httpRequest(`${relay.baseUrl}/metrics`);
    expect(result.text).not.toMatch(UUID);
    expect(result.text).not.toContain("request-label-check");
    expect(result.text).toContain('route="/v1/sora/generations/:id"');
  });

  it("reports the Redis connections as ready", async () => {
    const { relay } = await setup({ REDIS_URL: inject("redisUrl"), REDIS_KEY_PREFIX: `metrics${Date.now()}:` });
    const samples = await scrape(relay.baseUrl);
    expect(samples.get('relay_redis_connection_ready{role="command"}')).toBe(1);
    expect(samples.get('relay_redis_connection_ready{role="subscriber"}')).toBe(1);
  });
});

describe("METRICS_PORT", () => {
  it("moves /metrics to its own port", async () => {
    const { relay } = await setup({ METRICS_PORT: "0" });
    const metricsUrl = relay.relay.metricsUrl;
    expect(metricsUrl).toBeDefined();
    expect(metricsUrl).not.toBe(relay.baseUrl);

    const separate = await httpRequest(`${metricsUrl}/metrics`);
    expect(separate.status).toBe(200);
    expect(separate.text).toContain("relay_upstream_requests_total");

    const main = await httpRequest(`${relay.baseUrl}/metrics`);
    expect(main.status).toBe(404);
    const other = await httpRequest(`${metricsUrl}/healthz`);
    expect(other.status).toBe(404);
  });
});
