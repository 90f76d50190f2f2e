/**
 * Browser origins: a request from a site that is not the relay's own and not
 * in ALLOWED_ORIGINS gets 403 before any work, on REST, SSE, the
 * multi-generation stream and WebSocket upgrades, even with a valid cookie
 * (cross-site WebSocket hijacking). Listed origins get CORS headers.
 */
import { randomUUID } from "node:crypto";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { startSimulator } from "./support/relay-harness.js";
import type { RelayHandle, SimulatorHandle } from "./support/relay-harness.js";
import { CleanupStack, httpRequest, openProbeWebSocket } from "./support/probe-clients.js";
import { SecretLedger, hsToken, randomSecret } from "./support/auth-support.js";

const ledger = new SecretLedger();
const cleanup = new CleanupStack();
afterEach(() => cleanup.run());

const APP_ORIGIN = "https://app.example.test";
const FOREIGN_ORIGIN = "https://evil.example.test";
const jwtSecret = ledger.add(randomSecret("jwt"));

let sim: SimulatorHandle;
let relay: RelayHandle;
let cookie: string;

beforeAll(async () => {
  sim = await startSimulator({ queueMs: 600_000, processingMs: 600_000 });
  relay = await ledger.startRelay(sim, {
    AUTH_MODE: "jwt",
    AUTH_JWT_SECRET: jwtSecret,
    AUTH_COOKIE: "session",
    ALLOWED_ORIGINS: `${APP_ORIGIN},http://localhost:5173`,
  });
  cookie = `session=${ledger.add(await hsToken({ secret: jwtSecret, sub: "alice" }))}`;
});
afterAll(async () => {
  await relay?.close();
  await sim?.close();
});

async function generateWithCookie(origin?: string) {
  return httpRequest(`${relay.baseUrl}/v1/sora/generate`, {
    headers: { cookie, ...(origin === undefined ? {} : { origin }) },
    json: { prompt: "origin test" },
  });
}

describe("a foreign origin", () => {
  it("is rejected on REST before the upstream call", async () => {
    const before = sim.simulator.stats.requests("generate");
    const result = await generateWithCookie(FOREIGN_ORIGIN);
    expect(result.status, result.text).toBe(403);
    expect(result.json.detail).toMatch(/origin "https:\/\/evil.example.test" are not allowed/);
    expect(result.headers["access-control-allow-origin"]).toBeUndefined();
    expect(sim.simulator.stats.requests("generate")).toBe(before);
  });

  it("is rejected on SSE and the multi-generation stream", async () => {
    const id = randomUUID();
    for (const path of [`/v1/sora/generations/${id}/events`, `/v1/sora/events?ids=${id}`, `/v1/sora/generations/${id}`]) {
      const result = await httpRequest(`${relay.baseUrl}${path}`, { headers: { cookie, origin: FOREIGN_ORIGIN } });
      expect(result.status, `${path}: ${result.text}`).toBe(403);
    }
    expect(sim.simulator.stats.statusRequests(id)).toBe(0);
  });

  it("cannot open a WebSocket with the user's cookie", async () => {
    await expect(openProbeWebSocket(relay.wsUrl, { cookie, origin: FOREIGN_ORIGIN })).rejects.toThrow("HTTP 403");
    await expect(openProbeWebSocket(relay.wsUrl, { cookie, origin: "null" })).rejects.toThrow("HTTP 403");
  });

  it("is counted as forbidden_origin", async () => {
    await generateWithCookie(FOREIGN_ORIGIN);
    const metrics = await httpRequest(`${relay.baseUrl}/metrics`);
    expect(metrics.text).toMatch(/^relay_rejected_requests_total\{reason="forbidden_origin"\} [1-9]/m);
  });

  it("gets 403 on preflight", async () => {
    const preflight = await httpRequest(`${relay.baseUrl}/v1/sora/generate`, {
      method: "OPTIONS",
      headers: { origin: FOREIGN_ORIGIN, "access-control-request-method": "POST" },
    });
    expect(preflight.status).toBe(403);
    expect(preflight.headers["access-control-allow-origin"]).toBeUndefined();
  });
});

describe("an allowed origin", () => {
  it("gets CORS headers on REST", async () => {
    const result = await generateWithCookie(APP_ORIGIN);
    expect(result.status, result.text).toBe(201);
    expect(result.headers["access-control-allow-origin"]).toBe(APP_ORIGIN);
    expect(result.headers["access-control-allow-credentials"]).toBe("true");
    expect(String(result.headers["access-control-expose-headers"])).toContain("retry-after");
  });

  it("passes preflight", async () => {
    const preflight = await httpRequest(`${relay.baseUrl}/v1/sora/generate`, {
      method: "OPTIONS",
      headers: { origin: APP_ORIGIN, "access-control-request-method": "POST", "access-control-request-headers": "authorization,content-type" },
    });
    expect(preflight.status).toBe(204);
    expect(preflight.headers["access-control-allow-origin"]).toBe(APP_ORIGIN);
    expect(String(preflight.headers["access-control-allow-headers"])).toContain("authorization");
  });

  it("opens a WebSocket", async () => {
    const socket = await openProbeWebSocket(relay.wsUrl, { cookie, origin: APP_ORIGIN });
    cleanup.add(() => socket.close());
    expect(socket.socket.readyState).toBe(socket.socket.OPEN);
  });

  it("includes the relay's own origin", async () => {
    const result = await generateWithCookie(relay.baseUrl);
    expect(result.status, result.text).toBe(201);
    const socket = await openProbeWebSocket(relay.wsUrl, { cookie, origin: relay.baseUrl });
    cleanup.add(() => socket.close());
  });

  it("includes requests without Origin", async () => {
    expect((await generateWithCookie()).status).toBe(201);
  });
});

describe("AUTH_MODE=none without ALLOWED_ORIGINS", () => {
  it("rejects foreign origins on every transport", async () => {
    const open = await ledger.startRelay(sim, {});
    cleanup.add(() => open.close());
    const id = sim.simulator.control.create();
    const headers = { origin: FOREIGN_ORIGIN };
    expect((await httpRequest(`${open.baseUrl}/v1/sora/generations/${id}`, { headers })).status).toBe(403);
    expect((await httpRequest(`${open.baseUrl}/v1/sora/generations/${id}/events`, { headers })).status).toBe(403);
    expect((await httpRequest(`${open.baseUrl}/v1/sora/events?ids=${id}`, { headers })).status).toBe(403);
    await expect(openProbeWebSocket(open.wsUrl, headers)).rejects.toThrow("HTTP 403");
    expect(sim.simulator.stats.statusRequests(id)).toBe(0);
    expect((await httpRequest(`${open.baseUrl}/v1/sora/generations/${id}`, { headers: { origin: open.baseUrl } })).status).toBe(200);
  });
});

describe("log output of the origin tests", () => {
  it("contains no secret used in this file", () => {
    ledger.expectNoLeaks();
  });
});
