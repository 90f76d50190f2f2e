/**
 * /healthz and /readyz against a real relay: readiness names the failing
 * check, fails while Runblob rejects the relay's token, and recovers after
 * the next successful upstream request.
 */
import { afterEach, describe, expect, it } from "vitest";
import { startRelay, startSimulator } from "./support/relay-harness.js";
import type { RelayHandle, SimulatorHandle } from "./support/relay-harness.js";
import { CleanupStack, httpRequest } from "./support/ops-clients.js";

const cleanup = new CleanupStack();
afterEach(() => cleanup.run());

async function setup(): Promise<{ sim: SimulatorHandle; relay: RelayHandle }> {
  const sim = await startSimulator();
  cleanup.add(() => sim.close());
  const relay = await startRelay(sim);
  cleanup.add(() => relay.close());
  return { sim, relay };
}

describe("health endpoints", () => {
  it("healthz answers 200", async () => {
    const { relay } = await setup();
    const result = await httpRequest(`${relay.baseUrl}/healthz`);
    expect(result.status).toBe(200);
    expect(result.json).toEqual({ status: "ok" });
  });

  it("readyz lists every check when ready", async () => {
    const { relay } = await setup();
    const result = await httpRequest(`${relay.baseUrl}/readyz`);
    expect(result.status).toBe(200);
    expect(result.json).toEqual({ status: "ready", checks: { shutdown: "ok", upstream_credentials: "ok" }, failing: [] });
  });

  it("readyz fails while the token is rejected", async () => {
    const { sim, relay } = await setup();
    sim.simulator.control.injectFaults("list", [{ status: 401, body: JSON.stringify({ detail: "Invalid token" }), contentType: "application/json" }]);

    const rejected = await httpRequest(`${relay.baseUrl}/v1/sora/generations`);
    expect(rejected.status).toBe(503);

    const notReady = await httpRequest(`${relay.baseUrl}/readyz`);
    expect(notReady.status).toBe(503);
    expect(notReady.json.status).toBe("not ready");
    expect(notReady.json.failing).toEqual(["upstream_credentials"]);
    expect(notReady.json.checks.upstream_credentials).toMatch(/HTTP 401/);
    expect(notReady.json.checks.shutdown).toBe("ok");
    expect(relay.logs.some((line) => line.includes("Runblob rejected the relay's token"))).toBe(true);
    expect(relay.logs.join("")).not.toContain(sim.token);

    // The next successful request clears the check.
    const accepted = await httpRequest(`${relay.baseUrl}/v1/sora/generations`);
    expect(accepted.status).toBe(200);
    const ready = await httpRequest(`${relay.baseUrl}/readyz`);
    expect(ready.status).toBe(200);
    expect(ready.json.failing).toEqual([]);
  });

  it("readyz fails on 403 from a status poll", async () => {
    const { sim, relay } = await setup();
    const id = sim.simulator.control.create();
    sim.simulator.control.injectFaults("status", [{ status: 403 }]);

    const answer = await httpRequest(`${relay.baseUrl}/v1/sora/generations/${id}`);
    expect(answer.status).toBe(503);
    const notReady = await httpRequest(`${relay.baseUrl}/readyz`);
    expect(notReady.status).toBe(503);
    expect(notReady.json.checks.upstream_credentials).toMatch(/HTTP 403/);
  });
});
