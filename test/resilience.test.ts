/**
 * Upstream resilience against the simulator's fault injection: retries with
 * backoff and Retry-After, the request budget, the circuit breaker and its
 * upstream events, the webhook fast path.
 */
import { afterEach, describe, expect, it } from "vitest";
import { startRelay, startSimulator } from "./support/relay-harness.js";
import type { RelayHandle, SimulatorHandle } from "./support/relay-harness.js";
import { generate, openEventSource, openWebSocket } from "./support/clients.js";
import type { WsClient } from "./support/clients.js";
import { StatusRequestLog } from "./support/status-request-log.js";
import { startRelayProcess } from "./support/relay-process.js";

const cleanups: Array<() => unknown> = [];
afterEach(async () => {
  for (const cleanup of cleanups.reverse()) await cleanup();
  cleanups.length = 0;
});

async function setup(
  env: Record<string, string>,
  simulatorOptions: Parameters<typeof startSimulator>[0] = {},
): Promise<{ sim: SimulatorHandle; relay: RelayHandle }> {
  const sim = await startSimulator({ queueMs: 600_000, processingMs: 600_000, ...simulatorOptions });
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
const RETRIES_ON = { UPSTREAM_RETRY_ATTEMPTS: "3", UPSTREAM_RETRY_BASE_MS: "20", UPSTREAM_RETRY_MAX_DELAY_MS: "3000" };

describe("upstream retries", () => {
  it("retries 429 after its Retry-After", async () => {
    const { sim, relay } = await setup(RETRIES_ON);
    const id = sim.simulator.control.create();
    sim.simulator.control.injectFaults("status", [{ status: 429, body: '{"detail":"slow down"}', headers: { "retry-after": "1" } }]);

    const started = performance.now();
    const response = await fetch(`${relay.baseUrl}/v1/sora/generations/${id}`);
    const elapsed = performance.now() - started;

    expect(response.status).toBe(200);
    expect(elapsed).toBeGreaterThanOrEqual(950);
    expect(sim.simulator.stats.statusRequests(id)).toBe(2);
  });

  it("retries a burst of 502 and 503 answers", async () => {
    const { sim, relay } = await setup(RETRIES_ON);
    const id = sim.simulator.control.create();
    sim.simulator.control.injectFaults("status", [
      { status: 502, body: "<html>bad gateway</html>", contentType: "text/html" },
      { status: 503, body: '{"detail":"unavailable"}' },
    ]);

    const response = await fetch(`${relay.baseUrl}/v1/sora/generations/${id}`);

    expect(response.status).toBe(200);
    expect(sim.simulator.stats.statusRequests(id)).toBe(3);
  });

  it("gives up after the last attempt", async () => {
    const { sim, relay } = await setup(RETRIES_ON);
    const id = sim.simulator.control.create();
    sim.simulator.control.injectFaults("status", [{ status: 503 }, { status: 503 }, { status: 503 }, { status: 503 }]);

    const response = await fetch(`${relay.baseUrl}/v1/sora/generations/${id}`);

    expect(response.status).toBe(502);
    expect(sim.simulator.stats.statusRequests(id)).toBe(3);
  });

  it("does not retry 500 or 404", async () => {
    const { sim, relay } = await setup(RETRIES_ON);
    const id = sim.simulator.control.create();
    sim.simulator.control.injectFaults("status", [{ status: 500, body: '{"detail":"bug"}' }]);

    const failed = await fetch(`${relay.baseUrl}/v1/sora/generations/${id}`);
    expect(failed.status).toBe(502);
    expect(sim.simulator.stats.statusRequests(id)).toBe(1);

    const unknown = "00000000-0000-4000-8000-000000000000";
    const missing = await fetch(`${relay.baseUrl}/v1/sora/generations/${unknown}`);
    expect(missing.status).toBe(404);
    expect(sim.simulator.stats.statusRequests(unknown)).toBe(1);
  });

  it("never retries generate", async () => {
    const { sim, relay } = await setup(RETRIES_ON);
    sim.simulator.control.injectFaults("generate", [{ reset: true }]);

    const response = await fetch(`${relay.baseUrl}/v1/sora/generate`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ prompt: "A lost answer" }),
    });

    expect(response.status).toBe(502);
    expect(((await response.json()) as { detail: string }).detail).toContain("may or may not have been created");
    expect(sim.simulator.stats.requests("generate")).toBe(1);
  });

  it("caches a 404 briefly", async () => {
    const { sim, relay } = await setup({ NOT_FOUND_CACHE_MS: "60000" });
    const unknown = "00000000-0000-4000-8000-000000000001";

    for (let i = 0; i < 5; i += 1) {
      const response = await fetch(`${relay.baseUrl}/v1/sora/generations/${unknown}`);
      expect(response.status).toBe(404);
    }
    expect(sim.simulator.stats.statusRequests(unknown)).toBe(1);
  });

  it("follows a same-origin redirect on status", async () => {
    const { sim, relay } = await setup({});
    const id = sim.simulator.control.create();
    sim.simulator.control.injectFaults("status", [
      { status: 307, headers: { location: `/v1/sora/generations/${id}/` }, body: "" },
    ]);

    const response = await fetch(`${relay.baseUrl}/v1/sora/generations/${id}`);

    expect(response.status).toBe(200);
    expect(sim.simulator.stats.statusRequests(id)).toBe(2);
  });

  it("does not follow a redirect to another origin", async () => {
    const { sim, relay } = await setup({});
    const id = sim.simulator.control.create();
    sim.simulator.control.injectFaults("status", [
      { status: 308, headers: { location: `http://127.0.0.2:9/v1/sora/generations/${id}/` }, body: "" },
    ]);

    const response = await fetch(`${relay.baseUrl}/v1/sora/generations/${id}`);

    expect(response.status).toBe(502);
    expect(sim.simulator.stats.statusRequests(id)).toBe(1);
  });
});

describe("request budget", () => {
  it("keeps the upstream rate under the ceiling with 1,000 watched generations", async () => {
    const ceiling = 100;
    const sim = await startSimulator({ queueMs: 600_000, processingMs: 600_000 });
    cleanups.push(() => sim.close());
    // A separate process, so the simulator's arrival times are not bunched by the relay's own event loop.
    const relay = await startRelayProcess({
      name: "budget",
      env: {
        RUNBLOB_TOKEN: sim.token,
        RUNBLOB_BASE_URL: sim.url,
        UPSTREAM_MAX_RPS: String(ceiling),
        UPSTREAM_CLIENT_RESERVE: "10",
        UPSTREAM_CONNECTIONS: "32",
        UPSTREAM_MAX_CONCURRENT: "32",
        POLL_INTERVAL_MS: "1000",
        POLL_CONCURRENCY: "200",
        WS_MAX_SUBSCRIPTIONS: "1000",
        WS_MAX_MESSAGES_PER_SECOND: "100000",
      },
    });
    cleanups.push(() => relay.stop());
    const ids = Array.from({ length: 1000 }, () => sim.simulator.control.create());
    const log = new StatusRequestLog(sim);
    const socket = track(await openWebSocket(relay.wsUrl));
    for (const id of ids) socket.send({ type: "subscribe", generation_id: id });

    await sleep(16_000);

    const times = ids.flatMap((id) => [...log.times(id)]).sort((a, b) => a - b);
    const busiest = (windowMs: number) => {
      let most = 0;
      for (let start = 0, end = 0; end < times.length; end += 1) {
        while (times[end]! - times[start]! >= windowMs) start += 1;
        most = Math.max(most, end - start + 1);
      }
      return most;
    };
    const busiestSecond = busiest(1000);
    const busiestTwoSeconds = busiest(2000);
    console.log(
      `request budget: ${times.length} status requests in 16 s, busiest 1-second window ${busiestSecond}, ` +
        `busiest 2-second window ${busiestTwoSeconds} (ceiling ${ceiling} per second)`,
    );
    // The relay starts at most `ceiling` requests in any 1.1 s. Arrival times are taken in this test
    // process, whose event loop also runs the clients, so a busy machine can shift arrivals by a few
    // hundred ms; over 2-second windows that shift cannot lift the rate above the ceiling.
    expect(busiestTwoSeconds).toBeLessThanOrEqual(2 * ceiling);
    // The budget was the limit, not the load: 1,000 generations at 1 s intervals ask for 1,000 per second.
    expect(times.length).toBeGreaterThan(ceiling * 12);
    // Deferred polls go oldest first, so nearly every generation is polled within one round of the
    // budget (about 11 s here); reads for new subscribers compete with the polls, so a few wait longer.
    const neverPolled = ids.filter((id) => log.times(id).length === 0);
    console.log(`request budget: ${ids.length - neverPolled.length} of ${ids.length} generations polled within 16 s`);
    expect(neverPolled.length).toBeLessThanOrEqual(ids.length * 0.1);
  });

  it("counts only sent polls as attempts", async () => {
    const maxAttempts = 3;
    const { sim, relay } = await setup({
      UPSTREAM_MAX_RPS: "6",
      UPSTREAM_CLIENT_RESERVE: "1",
      POLL_INTERVAL_MS: "100",
      POLL_MAX_ATTEMPTS: String(maxAttempts),
      POLL_CONCURRENCY: "50",
      WS_MAX_MESSAGES_PER_SECOND: "100000",
    });
    const ids = Array.from({ length: 20 }, () => sim.simulator.control.create());
    const socket = track(await openWebSocket(relay.wsUrl));
    for (const id of ids) socket.send({ type: "subscribe", generation_id: id });
    // The budget allows 5 polls per second against 200 asked for, so most polls are deferred many times.
    await socket.waitFor((m) => m.type === "timeout", 15_000, "a first timeout");
    await sleep(2000);

    const timedOut = socket.received.filter((m) => m.type === "timeout").map((m) => String(m.generation_id));
    const requests = timedOut.map((id) => sim.simulator.stats.statusRequests(id));
    console.log(`attempts: ${timedOut.length} generations timed out after ${requests.join(", ")} status requests`);
    // A deferred poll is taken back, so a watch times out only after maxAttempts requests really reached Runblob.
    for (const count of requests) expect(count).toBeGreaterThanOrEqual(maxAttempts);
  });

  it("lets client calls through while polls use the budget", async () => {
    const { sim, relay } = await setup({
      UPSTREAM_MAX_RPS: "40",
      UPSTREAM_CLIENT_RESERVE: "10",
      POLL_INTERVAL_MS: "200",
      POLL_CONCURRENCY: "200",
      WS_MAX_SUBSCRIPTIONS: "1000",
      WS_MAX_MESSAGES_PER_SECOND: "100000",
    });
    const ids = Array.from({ length: 300 }, () => sim.simulator.control.create());
    const socket = track(await openWebSocket(relay.wsUrl));
    for (const id of ids) socket.send({ type: "subscribe", generation_id: id });
    await sleep(1500);

    const extra = sim.simulator.control.create();
    const started = performance.now();
    const response = await fetch(`${relay.baseUrl}/v1/sora/generations/${extra}`);
    const elapsed = performance.now() - started;

    expect(response.status).toBe(200);
    // Polls leave 10 starts per second for clients, so the call does not queue behind 300 polls.
    expect(elapsed).toBeLessThan(1000);
  });
});

describe("circuit breaker", () => {
  it("tells subscribers degraded, then ok, and keeps their status", async () => {
    const { sim, relay } = await setup({ BREAKER_FAILURE_THRESHOLD: "3", BREAKER_COOLDOWN_MS: "500", POLL_INTERVAL_MS: "100" });
    const id = sim.simulator.control.create();
    const socket = track(await openWebSocket(relay.wsUrl));
    socket.send({ type: "subscribe", generation_id: id });
    const stream = track(openEventSource(`${relay.baseUrl}/v1/sora/generations/${id}/events`));
    await socket.waitFor((m) => m.type === "status");
    await stream.waitFor((e) => e.type === "status");

    sim.simulator.control.injectFaults("status", Array.from({ length: 6 }, () => ({ status: 503 })));
    const degraded = await socket.waitFor((m) => m.type === "upstream" && m.state === "degraded", 10_000, "degraded");
    expect(degraded).toEqual({ type: "upstream", state: "degraded" });
    const sseDegraded = await stream.waitFor((e) => e.type === "upstream", 10_000, "SSE upstream event");
    expect(JSON.parse(sseDegraded.data)).toEqual({ state: "degraded" });

    // While open, the last known status stays available without reaching Runblob.
    const during = await fetch(`${relay.baseUrl}/v1/sora/generations/${id}`);
    expect(during.status).toBe(200);

    await socket.waitFor((m) => m.type === "upstream" && m.state === "ok", 10_000, "ok after the cool-down");
    sim.simulator.control.finish(id, "completed");
    await socket.waitFor((m) => m.type === "status" && (m.generation as { status: string }).status === "completed", 10_000, "final status");
  });

  it("pauses polls while open", async () => {
    const { sim, relay } = await setup({ BREAKER_FAILURE_THRESHOLD: "2", BREAKER_COOLDOWN_MS: "1500", POLL_INTERVAL_MS: "100" });
    const id = sim.simulator.control.create();
    const socket: WsClient = track(await openWebSocket(relay.wsUrl));
    socket.send({ type: "subscribe", generation_id: id });
    await socket.waitFor((m) => m.type === "status");

    sim.simulator.control.injectFaults("status", Array.from({ length: 50 }, () => ({ status: 502 })));
    await socket.waitFor((m) => m.type === "upstream" && m.state === "degraded", 10_000, "degraded");
    const atOpen = sim.simulator.stats.statusRequests(id);
    await sleep(1000);

    // At 100 ms intervals, 10 polls would have gone out; the open breaker sends none.
    expect(sim.simulator.stats.statusRequests(id) - atOpen).toBe(0);
  });
});

describe("webhook fast path", () => {
  async function completionLatency(withWebhooks: boolean): Promise<number> {
    const sim = await startSimulator({ queueMs: 600_000, processingMs: 600_000 });
    cleanups.push(() => sim.close());
    // The relay's own URL is needed for PUBLIC_BASE_URL, so it listens on a fixed free port.
    const port = await freePort();
    const env: Record<string, string> = { POLL_INTERVAL_MS: "3000", PORT: String(port) };
    if (withWebhooks) env.PUBLIC_BASE_URL = `http://127.0.0.1:${port}`;
    const relay = await startRelay(sim, env);
    cleanups.push(() => relay.close());

    const id = await generate(relay.baseUrl);
    const socket = track(await openWebSocket(relay.wsUrl));
    socket.send({ type: "subscribe", generation_id: id });
    await socket.waitFor((m) => m.type === "status");
    await sleep(500);

    const finishedAt = performance.now();
    sim.simulator.control.finish(id, "completed");
    await socket.waitFor((m) => m.type === "status" && (m.generation as { status: string }).status === "completed", 10_000, "completed");
    return performance.now() - finishedAt;
  }

  it("pushes a completion before the next poll", async () => {
    const withWebhook = await completionLatency(true);
    const withoutWebhook = await completionLatency(false);
    console.log(`completion to subscriber: ${withWebhook.toFixed(0)} ms with the webhook, ${withoutWebhook.toFixed(0)} ms by polling (3 s interval)`);
    expect(withWebhook).toBeLessThan(500);
    expect(withoutWebhook).toBeGreaterThan(withWebhook);
  });

  it("changes nothing on a forged delivery", async () => {
    const port = await freePort();
    const { sim, relay } = await setup({ PUBLIC_BASE_URL: `http://127.0.0.1:${port}`, PORT: String(port), POLL_INTERVAL_MS: "5000" });
    const id = await generate(relay.baseUrl);
    const socket = track(await openWebSocket(relay.wsUrl));
    socket.send({ type: "subscribe", generation_id: id });
    await socket.waitFor((m) => m.type === "status");
    sim.simulator.stats.reset();

    const forged = await fetch(`${relay.baseUrl}/v1/sora/webhooks/${"A".repeat(43)}`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ generation_id: id, status: "completed", video_url: "https://evil.example/x.mp4" }),
    });
    expect(forged.status).toBe(200);
    const malformed = await fetch(`${relay.baseUrl}/v1/sora/webhooks/short`, { method: "POST", headers: { "content-type": "application/json" }, body: "{}" });
    expect(malformed.status).toBe(422);
    await sleep(300);

    expect(sim.simulator.stats.statusRequests(id)).toBe(0);
    expect(socket.received.filter((m) => m.type === "status")).toHaveLength(1);
  });
});

async function freePort(): Promise<number> {
  const { createServer } = await import("node:net");
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => {
      const address = server.address();
      server.close(() => resolve(typeof address === "object" && address !== null ? address.port : 0));
    });
  });
}
