/**
 * Property-based input tests with fast-check against an authenticated relay:
 * random generate bodies, query strings and WebSocket frames never get a 5xx,
 * never crash the relay, and never cost an upstream request when the relay
 * rejects them.
 */
import { randomUUID } from "node:crypto";
import fc from "fast-check";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startSimulator } from "./support/relay-harness.js";
import type { RelayHandle, SimulatorHandle } from "./support/relay-harness.js";
import { httpRequest, openProbeWebSocket } from "./support/probe-clients.js";
import type { ProbeWebSocket } from "./support/probe-clients.js";
import { SecretLedger, bearer, hsToken, randomSecret } from "./support/auth-support.js";

const ledger = new SecretLedger();
const jwtSecret = ledger.add(randomSecret("jwt"));
/** Statuses the relay sends for input it rejects itself, before any upstream request. */
const REJECTIONS = new Set([400, 401, 403, 404, 413, 415, 422, 429]);

let sim: SimulatorHandle;
let relay: RelayHandle;
let headers: Record<string, string>;

beforeAll(async () => {
  sim = await startSimulator({ queueMs: 600_000, processingMs: 600_000 });
  relay = await ledger.startRelay(sim, {
    AUTH_MODE: "jwt",
    AUTH_JWT_SECRET: jwtSecret,
    AUTH_GRANT_SECRET: ledger.add(randomSecret("grant")),
    RATE_LIMIT_PER_IP: "0",
    RATE_LIMIT_PER_USER: "0",
    GENERATIONS_PER_HOUR: "100000",
    MAX_ACTIVE_GENERATIONS: "100000",
    DAILY_SPEND_LIMIT_USD: "100000",
    WS_MAX_MESSAGES_PER_SECOND: "100000",
    // Debug lines for every request would make this run slow; the leak scan still reads every line written.
    LOG_LEVEL: "info",
  });
  headers = bearer(ledger.add(await hsToken({ secret: jwtSecret, sub: "fuzzer" })));
});
afterAll(async () => {
  await relay?.close();
  await sim?.close();
});

const jsonValue = fc.jsonValue({ maxDepth: 3 });
const promptLike = fc.oneof(fc.string({ maxLength: 50 }), fc.integer(), fc.constant(""), fc.constant(null));
const generateBody = fc.oneof(
  jsonValue.map((value) => JSON.stringify(value)),
  fc.record(
    {
      prompt: promptLike,
      orientation: fc.oneof(fc.constantFrom("9:16", "16:9", "4:3"), fc.string({ maxLength: 5 })),
      duration: fc.oneof(fc.constantFrom(10, 15, 12, -1), fc.double()),
      image_url: fc.oneof(fc.webUrl(), fc.string({ maxLength: 20 })),
      callback_url: fc.oneof(fc.webUrl(), fc.string({ maxLength: 20 })),
      extra: jsonValue,
    },
    { requiredKeys: [] },
  ).map((value) => JSON.stringify(value)),
  fc.string({ maxLength: 200 }),
);
const contentType = fc.constantFrom("application/json", "text/plain", "application/x-www-form-urlencoded", "application/json; charset=utf-8");

describe("random generate bodies", () => {
  it("never get a 5xx or an upstream call when rejected", async () => {
    await fc.assert(
      fc.asyncProperty(generateBody, contentType, async (body, type) => {
        const before = sim.simulator.stats.requests("generate");
        const result = await httpRequest(`${relay.baseUrl}/v1/sora/generate`, { method: "POST", headers: { ...headers, "content-type": type }, rawBody: body });
        const upstreamCalls = sim.simulator.stats.requests("generate") - before;
        expect(result.status, result.text).toBeLessThan(500);
        if (REJECTIONS.has(result.status)) expect(upstreamCalls, `${result.status} ${result.text}`).toBe(0);
        else expect(upstreamCalls).toBe(1);
      }),
      { numRuns: 150 },
    );
  });
});

const queryPart = fc.oneof(
  fc.string({ maxLength: 30 }),
  fc.uuid(),
  fc.array(fc.uuid(), { maxLength: 4 }).map((ids) => ids.join(",")),
  fc.integer().map(String),
);
const queryString = fc
  .array(fc.tuple(fc.constantFrom("ids", "after", "limit", "offset", "ticket", "grant", "x", "ids[]"), queryPart), { maxLength: 4 })
  .map((pairs) => new URLSearchParams(pairs).toString());

const UUID_PATTERN = /[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}/g;

describe("random query strings", () => {
  it("never get a 5xx or a status request", async () => {
    const paths = fc.oneof(
      fc.constant("/v1/sora/generations"),
      fc.constant("/v1/sora/events"),
      fc.uuid().map((id) => `/v1/sora/generations/${id}`),
      fc.uuid().map((id) => `/v1/sora/generations/${id}/events`),
      fc.string({ maxLength: 40 }).map((segment) => `/v1/sora/generations/${encodeURIComponent(segment)}`),
    );
    await fc.assert(
      fc.asyncProperty(paths, queryString, fc.boolean(), async (path, query, authenticated) => {
        // Generations created by the generate fuzzing above are still polled in the background, so
        // only status requests for ids named in this request count.
        const named = `${path}?${query}`.toLowerCase().match(UUID_PATTERN) ?? [];
        const statusRequests = () => named.reduce((sum, id) => sum + sim.simulator.stats.statusRequests(id), 0);
        const before = { status: statusRequests(), list: sim.simulator.stats.requests("list") };
        const controller = new AbortController();
        const timer = setTimeout(() => controller.abort(), 2000);
        const response = await fetch(`${relay.baseUrl}${path}?${query}`, { headers: authenticated ? headers : {}, signal: controller.signal });
        const text = response.headers.get("content-type")?.startsWith("text/event-stream") ? "" : await response.text();
        controller.abort();
        clearTimeout(timer);
        const after = { status: statusRequests(), list: sim.simulator.stats.requests("list") };
        expect(response.status, `${path}?${query}: ${text}`).toBeLessThan(500);
        // The caller owns none of these generations and is no admin, so nothing is ever read upstream.
        expect(after.status - before.status, `${path}?${query}`).toBe(0);
        expect(after.list - before.list, `${path}?${query}`).toBe(0);
      }),
      { numRuns: 150 },
    );
  });
});

const frame = fc.oneof(
  fc.string({ maxLength: 200 }).map((text) => ({ text })),
  jsonValue.map((value) => ({ text: JSON.stringify(value) })),
  fc
    .record({
      type: fc.constantFrom("subscribe", "unsubscribe", "ping", ""),
      generation_id: fc.oneof(fc.uuid(), fc.string({ maxLength: 40 })),
      after_version: fc.oneof(fc.nat(), fc.integer(), fc.string({ maxLength: 5 })),
    }, { requiredKeys: ["type"] })
    .map((message) => ({ text: JSON.stringify(message) })),
  fc.uint8Array({ maxLength: 100 }).map((bytes) => ({ binary: Buffer.from(bytes) })),
);

describe("random WebSocket frames", () => {
  it("never close the socket or reach Runblob", async () => {
    const socket: ProbeWebSocket = await openProbeWebSocket(relay.wsUrl, headers);
    try {
      const before = sim.simulator.stats.requests("status");
      await fc.assert(
        fc.asyncProperty(fc.array(frame, { minLength: 1, maxLength: 10 }), async (frames) => {
          for (const item of frames) {
            if ("binary" in item) socket.sendBinary(item.binary);
            else socket.sendText(item.text);
          }
          // A subscribe to an unknown id gets not_found back, so the relay has read every frame before it.
          const probe = randomUUID();
          socket.sendJson({ type: "subscribe", generation_id: probe });
          await socket.messages.next((message) => message.generation_id === probe, "the probe's not_found");
        }),
        { numRuns: 100 },
      );
      expect(socket.socket.readyState).toBe(socket.socket.OPEN);
      expect(sim.simulator.stats.requests("status") - before).toBe(0);
      expect((await httpRequest(`${relay.baseUrl}/healthz`)).status).toBe(200);
    } finally {
      socket.close();
    }
  });
});

describe("log output of the fuzz tests", () => {
  it("contains no secret used in this file", () => {
    ledger.expectNoLeaks();
  });
});
