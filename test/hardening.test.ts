/** Cases found by attacking the relay: each was a fault, and each test fails without its fix. */
import { afterEach, describe, expect, it } from "vitest";
import { startRelay, startSimulator } from "./support/relay-harness.js";
import type { RelayHandle, SimulatorHandle } from "./support/relay-harness.js";

const cleanups: Array<() => unknown> = [];
afterEach(async () => {
  for (const cleanup of cleanups.reverse()) await cleanup();
  cleanups.length = 0;
});

async function setup(env: Record<string, string> = {}): Promise<{ sim: SimulatorHandle; relay: RelayHandle }> {
  const sim = await startSimulator({ queueMs: 600_000, processingMs: 600_000 });
  cleanups.push(() => sim.close());
  const relay = await startRelay(sim, env);
  cleanups.push(() => relay.close());
  return { sim, relay };
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

describe("relay hardening", () => {
  it("forgets SSE requests aborted during the first read", async () => {
    const { sim, relay } = await setup();
    sim.simulator.control.setLatency(800);
    const ids = Array.from({ length: 20 }, () => sim.simulator.control.create());

    await Promise.all(
      ids.map(async (id) => {
        const controller = new AbortController();
        const request = fetch(`${relay.baseUrl}/v1/sora/generations/${id}/events`, { signal: controller.signal }).catch(() => undefined);
        await sleep(100);
        controller.abort();
        await request;
      }),
    );
    await sleep(1500);

    const metrics = await (await fetch(`${relay.baseUrl}/metrics`)).text();
    const open = /relay_open_connections\{transport="sse"\} (\d+)/.exec(metrics);
    expect(open?.[1]).toBe("0");
  });

  it("keeps webhook tokens out of the logs", async () => {
    const { relay } = await setup({ PUBLIC_BASE_URL: "http://127.0.0.1:9" });
    const token = "T".repeat(43);

    const response = await fetch(`${relay.baseUrl}/v1/sora/webhooks/${token}`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: "{}",
    });

    expect(response.status).toBe(200);
    expect(relay.logs.join("")).not.toContain(token);
    expect(relay.logs.join("")).toContain("/v1/sora/webhooks/[redacted]");
  });

  it("treats an uppercase id as the same generation", async () => {
    const { sim, relay } = await setup();
    const id = sim.simulator.control.create();

    const lower = await fetch(`${relay.baseUrl}/v1/sora/generations/${id}`);
    const upper = await fetch(`${relay.baseUrl}/v1/sora/generations/${id.toUpperCase()}`);

    expect(lower.status).toBe(200);
    expect(upper.status).toBe(200);
    expect(((await upper.json()) as { generation_id: string }).generation_id).toBe(id);
    // The second read is served from the store: one upstream request for both spellings.
    expect(sim.simulator.stats.statusRequests(id)).toBe(1);
  });

  it.each([
    ["white space only", "   \n\t "],
    ["a NUL character", "a cat\u0000"],
    ["a lone surrogate", "a cat \ud800"],
  ])("rejects a prompt of %s without an upstream call", async (_name, prompt) => {
    const { sim, relay } = await setup();

    const response = await fetch(`${relay.baseUrl}/v1/sora/generate`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ prompt }),
    });

    expect(response.status).toBe(422);
    const detail = ((await response.json()) as { detail: Array<{ loc: string[] }> }).detail;
    expect(detail[0]?.loc).toEqual(["body", "prompt"]);
    expect(sim.simulator.stats.requests("generate")).toBe(0);
  });
});
