/**
 * Authentication end to end: a real relay and simulator over HTTP, real
 * WebSocket and SSE clients. Every rejected credential is tried on REST, SSE
 * and WebSocket, must get 401 and must cost no upstream request.
 */
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { ConfigError, loadConfig, redactedConfig } from "../src/config/env.js";
import { startSimulator } from "./support/relay-harness.js";
import type { RelayHandle, SimulatorHandle } from "./support/relay-harness.js";
import { CleanupStack, httpRequest, openProbeWebSocket } from "./support/probe-clients.js";
import type { HttpResult } from "./support/probe-clients.js";
import {
  SecretLedger,
  bearer,
  hmacTokenWithKey,
  hsToken,
  randomSecret,
  standardClaims,
  startJwksServer,
  tamperedToken,
  unsecuredToken,
} from "./support/auth-support.js";
import type { JwksServer } from "./support/auth-support.js";

const ledger = new SecretLedger();
const cleanup = new CleanupStack();
afterEach(() => cleanup.run());

const ISSUER = "https://issuer.example.test";
const AUDIENCE = "runblob-relay-test";

/** Sends the same credential headers to a REST read, generate, an SSE stream and a WebSocket upgrade. */
async function tryEveryTransport(relay: RelayHandle, sim: SimulatorHandle, headers: Record<string, string>) {
  const id = sim.simulator.control.create();
  // Polls of generations watched by earlier tests go on meanwhile, so only requests this probe could cause are counted.
  const stats = sim.simulator.stats;
  const probeRequests = () => stats.requests("generate") + stats.requests("list") + stats.statusRequests(id);
  const before = probeRequests();
  const results: Record<string, HttpResult | string> = {
    status: await httpRequest(`${relay.baseUrl}/v1/sora/generations/${id}`, { headers }),
    generate: await httpRequest(`${relay.baseUrl}/v1/sora/generate`, { headers, json: { prompt: "p" } }),
    list: await httpRequest(`${relay.baseUrl}/v1/sora/generations`, { headers }),
    sse: await httpRequest(`${relay.baseUrl}/v1/sora/generations/${id}/events`, { headers }),
    multiSse: await httpRequest(`${relay.baseUrl}/v1/sora/events?ids=${id}`, { headers }),
  };
  results.websocket = await openProbeWebSocket(relay.wsUrl, headers).then(
    (socket) => {
      socket.close();
      return "opened";
    },
    (error: Error) => error.message,
  );
  return { results, upstreamRequests: probeRequests() - before };
}

function expectRejectedEverywhere(outcome: Awaited<ReturnType<typeof tryEveryTransport>>, detail: RegExp): void {
  for (const [route, result] of Object.entries(outcome.results)) {
    if (typeof result === "string") {
      expect(result, route).toBe("WebSocket upgrade failed with HTTP 401");
      continue;
    }
    expect(result.status, `${route}: ${result.text}`).toBe(401);
    expect(result.json.detail, route).toMatch(detail);
    expect(result.headers["www-authenticate"], route).toMatch(/^Bearer realm="runblob-relay"/);
  }
  expect(outcome.upstreamRequests).toBe(0);
}

describe("AUTH_MODE=jwt with AUTH_JWT_SECRET", () => {
  const secret = ledger.add(randomSecret("jwt-secret"));
  const otherSecret = ledger.add(randomSecret("other-secret"));
  let sim: SimulatorHandle;
  let relay: RelayHandle;
  let jwks: JwksServer;

  beforeAll(async () => {
    sim = await startSimulator({ queueMs: 600_000, processingMs: 600_000 });
    jwks = await startJwksServer();
    relay = await ledger.startRelay(sim, {
      AUTH_MODE: "jwt",
      AUTH_JWT_SECRET: secret,
      AUTH_JWT_ISSUER: ISSUER,
      AUTH_JWT_AUDIENCE: AUDIENCE,
      AUTH_ADMIN_CLAIM: "role=admin",
      AUTH_COOKIE: "relay_session",
      AUTH_TICKET_SECRET: randomSecret("ticket-secret"),
    });
  });
  afterAll(async () => {
    await relay?.close();
    await sim?.close();
    await jwks?.close();
  });

  const valid = (overrides: Partial<Parameters<typeof hsToken>[0]> = {}) =>
    hsToken({ secret, sub: "alice", issuer: ISSUER, audience: AUDIENCE, ...overrides }).then((token) => ledger.add(token));

  it("accepts a valid token on REST, SSE and WebSocket", async () => {
    const token = await valid();
    const created = await httpRequest(`${relay.baseUrl}/v1/sora/generate`, { headers: bearer(token), json: { prompt: "mine" } });
    expect(created.status, created.text).toBe(201);
    const id = created.json.generation_id as string;
    const status = await httpRequest(`${relay.baseUrl}/v1/sora/generations/${id}`, { headers: bearer(token) });
    expect(status.status, status.text).toBe(200);

    const socket = await openProbeWebSocket(relay.wsUrl, bearer(token));
    cleanup.add(() => socket.close());
    socket.sendJson({ type: "subscribe", generation_id: id });
    const message = await socket.messages.next((item) => item.type === "status", "the first status");
    expect((message.generation as { generation_id: string }).generation_id).toBe(id);
  });

  it("accepts the token from the AUTH_COOKIE cookie", async () => {
    const token = await valid();
    const usage = await httpRequest(`${relay.baseUrl}/v1/sora/usage`, { headers: { cookie: `theme=dark; relay_session=${token}` } });
    expect(usage.status, usage.text).toBe(200);
    expect(usage.json.user_id).toBe("alice");
  });

  it("rejects a missing token", async () => {
    expectRejectedEverywhere(await tryEveryTransport(relay, sim, {}), /^authentication required/);
  });

  it("rejects an expired token", async () => {
    const token = await valid({ expiresInSeconds: -60 });
    expectRejectedEverywhere(await tryEveryTransport(relay, sim, bearer(token)), /expired/);
  });

  it("rejects a token of another issuer", async () => {
    const token = await valid({ issuer: "https://evil.example.test" });
    expectRejectedEverywhere(await tryEveryTransport(relay, sim, bearer(token)), /the iss claim check failed/);
  });

  it("rejects a token for another audience", async () => {
    const token = await valid({ audience: "another-service" });
    expectRejectedEverywhere(await tryEveryTransport(relay, sim, bearer(token)), /the aud claim check failed/);
  });

  it("rejects alg none", async () => {
    const token = ledger.add(unsecuredToken({ ...standardClaims("alice"), iss: ISSUER, aud: AUDIENCE }));
    expectRejectedEverywhere(await tryEveryTransport(relay, sim, bearer(token)), /invalid token/);
  });

  it("rejects RS256 where HS256 is configured", async () => {
    const token = ledger.add(await jwks.signRs256({ ...standardClaims("alice"), iss: ISSUER, aud: AUDIENCE }));
    expectRejectedEverywhere(await tryEveryTransport(relay, sim, bearer(token)), /algorithm is not accepted/);
  });

  it("rejects a tampered token", async () => {
    const token = ledger.add(tamperedToken(await valid()));
    expectRejectedEverywhere(await tryEveryTransport(relay, sim, bearer(token)), /signature does not verify/);
  });

  it("rejects a token signed with another secret", async () => {
    const token = await valid({ secret: otherSecret });
    expectRejectedEverywhere(await tryEveryTransport(relay, sim, bearer(token)), /signature does not verify/);
  });

  it("rejects a token without sub or exp", async () => {
    const noSubject = await valid({ sub: undefined });
    expectRejectedEverywhere(await tryEveryTransport(relay, sim, bearer(noSubject)), /sub claim/);
    const noExpiry = ledger.add(hmacTokenWithKey({ sub: "alice", iss: ISSUER, aud: AUDIENCE }, secret));
    expectRejectedEverywhere(await tryEveryTransport(relay, sim, bearer(noExpiry)), /exp claim/);
  });

  it("rejects an Authorization header that is not Bearer", async () => {
    const outcome = await tryEveryTransport(relay, sim, { authorization: "Basic YWxpY2U6cGFzc3dvcmQ=" });
    expectRejectedEverywhere(outcome, /must be Bearer/);
    const result = outcome.results.status as HttpResult;
    expect(result.headers["www-authenticate"]).toContain('error="invalid_request"');
  });

  it("rejects a bad token even with a valid cookie", async () => {
    const cookie = await valid();
    const result = await httpRequest(`${relay.baseUrl}/v1/sora/usage`, {
      headers: { authorization: "Bearer not.a.token", cookie: `relay_session=${cookie}` },
    });
    expect(result.status, result.text).toBe(401);
  });

  it("marks admins by AUTH_ADMIN_CLAIM", async () => {
    const admin = await valid({ sub: "root", claims: { role: "admin" } });
    const user = await valid({ sub: "bob", claims: { role: "viewer" } });
    const adminList = await httpRequest(`${relay.baseUrl}/v1/sora/generations`, { headers: bearer(admin) });
    const userList = await httpRequest(`${relay.baseUrl}/v1/sora/generations`, { headers: bearer(user) });
    // The simulator contains generations of other tests' users; only the admin sees them.
    expect(adminList.json.length).toBeGreaterThan(0);
    expect(userList.json).toEqual([]);
  });

  it("counts rejections as unauthenticated", async () => {
    expect((await httpRequest(`${relay.baseUrl}/v1/sora/usage`)).status).toBe(401);
    const metrics = await httpRequest(`${relay.baseUrl}/metrics`);
    expect(metrics.text).toMatch(/^relay_rejected_requests_total\{reason="unauthenticated"\} [1-9]/m);
    expect(metrics.text).not.toMatch(/^relay_rejected_requests_total\{reason="upstream"\} [1-9]/m);
  });

  it("keeps health checks public", async () => {
    expect((await httpRequest(`${relay.baseUrl}/healthz`)).status).toBe(200);
    expect((await httpRequest(`${relay.baseUrl}/healthz`, { headers: { authorization: "Basic x" } })).status).toBe(200);
    // The OpenAPI routes are registered before the security hooks, so their requests carry no principal at all.
    expect((await httpRequest(`${relay.baseUrl}/docs/json`, { headers: { authorization: "Bearer x.y.z" } })).status).toBe(200);
  });
});

describe("AUTH_MODE=jwt with AUTH_JWKS_URL", () => {
  let sim: SimulatorHandle;
  let relay: RelayHandle;
  let jwks: JwksServer;

  beforeAll(async () => {
    sim = await startSimulator({ queueMs: 600_000, processingMs: 600_000 });
    jwks = await startJwksServer();
    relay = await ledger.startRelay(sim, { AUTH_MODE: "jwt", AUTH_JWKS_URL: jwks.url, AUTH_JWT_ISSUER: ISSUER });
  });
  afterAll(async () => {
    await relay?.close();
    await sim?.close();
    await jwks?.close();
  });

  const claims = (sub = "carol") => ({ ...standardClaims(sub), iss: ISSUER });

  it("accepts RS256 and ES256 tokens", async () => {
    for (const token of [await jwks.signRs256(claims()), await jwks.signEs256(claims())]) {
      ledger.add(token);
      const usage = await httpRequest(`${relay.baseUrl}/v1/sora/usage`, { headers: bearer(token) });
      expect(usage.status, usage.text).toBe(200);
      expect(usage.json.user_id).toBe("carol");
    }
  });

  it("caches the key set", async () => {
    const before = jwks.requests();
    for (let i = 0; i < 5; i += 1) {
      const token = ledger.add(await jwks.signRs256(claims()));
      expect((await httpRequest(`${relay.baseUrl}/v1/sora/usage`, { headers: bearer(token) })).status).toBe(200);
    }
    expect(jwks.requests() - before).toBe(0);
  });

  it("rejects HS256 signed with the public key", async () => {
    const token = ledger.add(hmacTokenWithKey(claims(), jwks.rsaPublicPem, { kid: "rsa-1" }));
    expectRejectedEverywhere(await tryEveryTransport(relay, sim, bearer(token)), /algorithm is not accepted/);
  });

  it("rejects alg none", async () => {
    const token = ledger.add(unsecuredToken(claims()));
    expectRejectedEverywhere(await tryEveryTransport(relay, sim, bearer(token)), /invalid token/);
  });

  it("rejects expired, wrong-issuer and tampered tokens", async () => {
    const expired = ledger.add(await jwks.signRs256({ ...claims(), exp: Math.floor(Date.now() / 1000) - 60 }));
    expectRejectedEverywhere(await tryEveryTransport(relay, sim, bearer(expired)), /expired/);
    const foreign = ledger.add(await jwks.signEs256({ ...claims(), iss: "https://evil.example.test" }));
    expectRejectedEverywhere(await tryEveryTransport(relay, sim, bearer(foreign)), /iss claim/);
    const tampered = ledger.add(tamperedToken(await jwks.signRs256(claims())));
    expectRejectedEverywhere(await tryEveryTransport(relay, sim, bearer(tampered)), /signature does not verify/);
  });
});

describe("AUTH_MODE=api-key", () => {
  const aliceKey = ledger.add(randomSecret("alice-key"));
  const adminKey = ledger.add(randomSecret("admin-key"));
  let sim: SimulatorHandle;
  let relay: RelayHandle;

  beforeAll(async () => {
    sim = await startSimulator({ queueMs: 600_000, processingMs: 600_000 });
    relay = await ledger.startRelay(sim, { AUTH_MODE: "api-key", AUTH_API_KEYS: `${aliceKey}:alice,${adminKey}:ops:admin` });
  });
  afterAll(async () => {
    await relay?.close();
    await sim?.close();
  });

  it("maps each key to its user", async () => {
    const alice = await httpRequest(`${relay.baseUrl}/v1/sora/usage`, { headers: bearer(aliceKey) });
    expect(alice.status, alice.text).toBe(200);
    expect(alice.json.user_id).toBe("alice");
    const ops = await httpRequest(`${relay.baseUrl}/v1/sora/usage`, { headers: bearer(adminKey) });
    expect(ops.json.user_id).toBe("ops");
  });

  it("rejects unknown, truncated and extended keys", async () => {
    for (const key of [randomSecret("guess"), aliceKey.slice(0, -1), `${aliceKey}x`]) {
      expectRejectedEverywhere(await tryEveryTransport(relay, sim, bearer(ledger.add(key))), /^invalid API key$/);
    }
  });

  it("lists everything for an admin key", async () => {
    sim.simulator.control.create();
    const list = await httpRequest(`${relay.baseUrl}/v1/sora/generations`, { headers: bearer(adminKey) });
    expect(list.status).toBe(200);
    expect(list.json.length).toBeGreaterThan(0);
  });
});

describe("authentication configuration", () => {
  const base = { RUNBLOB_TOKEN: "rb-test-token-0123456789", RUNBLOB_BASE_URL: "http://127.0.0.1:9" };

  function problemsOf(env: Record<string, string>): string[] {
    try {
      loadConfig(env);
    } catch (error) {
      if (error instanceof ConfigError) return error.problems;
      throw error;
    }
    return [];
  }

  it("defaults to none outside production", () => {
    expect(loadConfig({ ...base, NODE_ENV: "development" }).AUTH_MODE).toBeUndefined();
    expect(problemsOf({ ...base, NODE_ENV: "test" })).toEqual([]);
  });

  it("requires AUTH_MODE in production", () => {
    const problems = problemsOf({ ...base, NODE_ENV: "production" });
    expect(problems).toHaveLength(1);
    expect(problems[0]).toMatch(/^AUTH_MODE=unset: required when NODE_ENV=production/);
    expect(problemsOf({ ...base, NODE_ENV: "production", AUTH_MODE: "none" })).toEqual([]);
  });

  it("requires one JWT key source", () => {
    expect(problemsOf({ ...base, AUTH_MODE: "jwt" })[0]).toMatch(/set exactly one of AUTH_JWT_SECRET/);
    const both = problemsOf({ ...base, AUTH_MODE: "jwt", AUTH_JWT_SECRET: randomSecret("s"), AUTH_JWKS_URL: "http://127.0.0.1:1/jwks" });
    expect(both[0]).toMatch(/set exactly one of AUTH_JWT_SECRET/);
  });

  it("rejects HS algorithms for a key set", () => {
    const problems = problemsOf({ ...base, AUTH_MODE: "jwt", AUTH_JWKS_URL: "http://127.0.0.1:1/jwks", AUTH_JWT_ALGORITHMS: "RS256,HS256" });
    expect(problems[0]).toMatch(/^AUTH_JWT_ALGORITHMS=/);
  });

  it("rejects short and shared secrets without showing them", () => {
    const short = "short-secret";
    const shared = randomSecret("shared");
    const problems = problemsOf({ ...base, AUTH_MODE: "jwt", AUTH_JWT_SECRET: shared, AUTH_TICKET_SECRET: shared, AUTH_GRANT_SECRET: short });
    expect(problems.join("\n")).toMatch(/AUTH_GRANT_SECRET=\(value hidden\): AUTH_GRANT_SECRET is too short/);
    expect(problemsOf({ ...base, AUTH_MODE: "jwt", AUTH_JWT_SECRET: shared, AUTH_TICKET_SECRET: shared })[0]).toMatch(
      /AUTH_JWT_SECRET and AUTH_TICKET_SECRET have the same value/,
    );
    expect(problems.join("\n")).not.toContain(short);
    expect(problems.join("\n")).not.toContain(shared);
  });

  it("names bad API key entries by position only", () => {
    const key = randomSecret("k");
    const problems = problemsOf({ ...base, AUTH_MODE: "api-key", AUTH_API_KEYS: `${key}:alice,short:bob,${key}:carol:root` });
    expect(problems).toEqual([
      "AUTH_API_KEYS entry 2: the key must be 16-256 characters of A-Z a-z 0-9 . _ ~ + / = -",
      "AUTH_API_KEYS entry 3: expected <key>:<user id> or <key>:<user id>:admin",
    ]);
    expect(problems.join("\n")).not.toContain(key);
  });

  it("requires AUTH_TICKET_SECRET in production", () => {
    const problems = problemsOf({ ...base, NODE_ENV: "production", AUTH_MODE: "jwt", AUTH_JWT_SECRET: randomSecret("s") });
    expect(problems).toEqual([expect.stringMatching(/^AUTH_TICKET_SECRET=unset: required when NODE_ENV=production/)]);
  });

  it("redacts every auth secret at start-up", () => {
    const secrets = { AUTH_JWT_SECRET: randomSecret("a"), AUTH_TICKET_SECRET: randomSecret("b"), AUTH_GRANT_SECRET: randomSecret("c") };
    const redacted = JSON.stringify(redactedConfig(loadConfig({ ...base, AUTH_MODE: "jwt", ...secrets })));
    for (const secret of Object.values(secrets)) expect(redacted).not.toContain(secret);
    const keys = redactedConfig(loadConfig({ ...base, AUTH_MODE: "api-key", AUTH_API_KEYS: `${secrets.AUTH_JWT_SECRET}:alice` }));
    expect(keys.AUTH_API_KEYS).toBe("[redacted]");
  });
});

describe("log output of the authentication tests", () => {
  it("contains no secret used in this file", () => {
    ledger.expectNoLeaks();
  });
});
