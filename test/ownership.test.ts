/**
 * Ownership, stream tickets and grants, with Redis: a generation created
 * through the relay is readable by its creator, admins and grant holders only,
 * and everyone else gets exactly the response of an unknown id on REST, SSE,
 * the multi-generation stream and WebSocket, without an upstream request.
 */
import { createHmac, randomUUID } from "node:crypto";
import { Redis } from "ioredis";
import { afterAll, afterEach, beforeAll, describe, expect, inject, it } from "vitest";
import { startSimulator } from "./support/relay-harness.js";
import type { RelayHandle, SimulatorHandle } from "./support/relay-harness.js";
import { CleanupStack, eventData, httpRequest, openProbeSse, openProbeWebSocket } from "./support/probe-clients.js";
import type { HttpResult, ProbeWebSocket, SseItem, WsMessage } from "./support/probe-clients.js";
import { keySlot } from "./support/key-slot.js";
import { SecretLedger, bearer, hsToken, mintGrant, randomSecret, sleep } from "./support/auth-support.js";

const ledger = new SecretLedger();
const cleanup = new CleanupStack();
afterEach(() => cleanup.run());

const jwtSecret = ledger.add(randomSecret("jwt"));
const ticketSecret = ledger.add(randomSecret("ticket"));
const grantSecret = ledger.add(randomSecret("grant"));
const keyPrefix = `own-${randomUUID().slice(0, 8)}:`;

let sim: SimulatorHandle;
let relay: RelayHandle;
const tokens: Record<"alice" | "bob" | "root", string> = { alice: "", bob: "", root: "" };

function relayEnv(extra: Record<string, string> = {}): Record<string, string> {
  return {
    AUTH_MODE: "jwt",
    AUTH_JWT_SECRET: jwtSecret,
    AUTH_TICKET_SECRET: ticketSecret,
    AUTH_GRANT_SECRET: grantSecret,
    AUTH_ADMIN_CLAIM: "role=admin",
    REDIS_URL: inject("redisUrl"),
    REDIS_KEY_PREFIX: keyPrefix,
    // This file creates many generations that never finish; the limits have their own tests.
    MAX_ACTIVE_GENERATIONS: "1000",
    GENERATIONS_PER_HOUR: "1000",
    ...extra,
  };
}

beforeAll(async () => {
  sim = await startSimulator({ queueMs: 600_000, processingMs: 600_000 });
  relay = await ledger.startRelay(sim, relayEnv());
  tokens.alice = ledger.add(await hsToken({ secret: jwtSecret, sub: "alice" }));
  tokens.bob = ledger.add(await hsToken({ secret: jwtSecret, sub: "bob" }));
  tokens.root = ledger.add(await hsToken({ secret: jwtSecret, sub: "root", claims: { role: "admin" } }));
});
afterAll(async () => {
  await relay?.close();
  await sim?.close();
});

async function createAs(user: keyof typeof tokens, prompt = "owned generation"): Promise<string> {
  const result = await httpRequest(`${relay.baseUrl}/v1/sora/generate`, { headers: bearer(tokens[user]), json: { prompt } });
  expect(result.status, result.text).toBe(201);
  return result.json.generation_id as string;
}

/** The parts of an HTTP response a client can observe, with per-request values removed. */
function observable(result: HttpResult, id: string) {
  const headers = { ...result.headers };
  for (const name of ["date", "x-request-id", "keep-alive", "connection"]) delete headers[name];
  return { status: result.status, headers, body: result.text.replaceAll(id, "<id>") };
}

async function wsAnswerFor(socket: ProbeWebSocket, id: string): Promise<WsMessage> {
  socket.sendJson({ type: "subscribe", generation_id: id });
  return socket.messages.next((message) => message.generation_id === id || (message.generation as { generation_id?: string })?.generation_id === id, `the response for ${id}`);
}

async function multiStreamItems(url: string, headers: Record<string, string> = {}): Promise<SseItem[]> {
  const stream = await openProbeSse(url, headers);
  cleanup.add(() => stream.close());
  await stream.items.next((item) => item.kind === "event" && item.event === "end", "the end event");
  return stream.items.items;
}

describe("another user's generation", () => {
  it("gets the unknown-id response by REST", async () => {
    const id = await createAs("alice");
    const unknown = randomUUID();
    const foreign = await httpRequest(`${relay.baseUrl}/v1/sora/generations/${id}`, { headers: bearer(tokens.bob) });
    const missing = await httpRequest(`${relay.baseUrl}/v1/sora/generations/${unknown}`, { headers: bearer(tokens.bob) });
    expect(foreign.status).toBe(404);
    expect(foreign.json).toEqual({ detail: "Generation not found" });
    expect(observable(foreign, id)).toEqual(observable(missing, unknown));
    expect(sim.simulator.stats.statusRequests(unknown)).toBe(0);

    const own = await httpRequest(`${relay.baseUrl}/v1/sora/generations/${id}`, { headers: bearer(tokens.alice) });
    expect(own.status, own.text).toBe(200);
  });

  it("gets the unknown-id response by SSE", async () => {
    const id = await createAs("alice");
    const unknown = randomUUID();
    const foreign = await httpRequest(`${relay.baseUrl}/v1/sora/generations/${id}/events`, { headers: bearer(tokens.bob) });
    const missing = await httpRequest(`${relay.baseUrl}/v1/sora/generations/${unknown}/events`, { headers: bearer(tokens.bob) });
    expect(foreign.status).toBe(404);
    expect(observable(foreign, id)).toEqual(observable(missing, unknown));
    expect(sim.simulator.stats.statusRequests(unknown)).toBe(0);
  });

  it("gets the unknown-id response on the multi-generation stream", async () => {
    const id = await createAs("alice");
    const unknown = randomUUID();
    const foreign = await multiStreamItems(`${relay.baseUrl}/v1/sora/events?ids=${id}`, bearer(tokens.bob));
    const missing = await multiStreamItems(`${relay.baseUrl}/v1/sora/events?ids=${unknown}`, bearer(tokens.bob));
    const events = (items: SseItem[]) => items.filter((item) => item.kind === "event").map((item) => ({ ...item, data: item.data.replace(/[0-9a-f-]{36}/, "<id>") }));
    expect(events(foreign)).toEqual(events(missing));
    expect(eventData(foreign.find((item) => item.kind === "event" && item.event === "error")!).code).toBe("not_found");
    expect(sim.simulator.stats.statusRequests(unknown)).toBe(0);
  });

  it("gets not_found over WebSocket like an unknown id", async () => {
    const id = await createAs("alice");
    const unknown = randomUUID();
    const socket = await openProbeWebSocket(relay.wsUrl, bearer(tokens.bob));
    cleanup.add(() => socket.close());
    const foreign = await wsAnswerFor(socket, id);
    const missing = await wsAnswerFor(socket, unknown);
    expect(foreign).toEqual({ type: "error", code: "not_found", message: "generation not found", generation_id: id });
    expect({ ...missing, generation_id: id }).toEqual(foreign);
    expect(sim.simulator.stats.statusRequests(unknown)).toBe(0);

    const own = await openProbeWebSocket(relay.wsUrl, bearer(tokens.alice));
    cleanup.add(() => own.close());
    expect((await wsAnswerFor(own, id)).type).toBe("status");
  });

  it("stays hidden on another instance", async () => {
    const id = await createAs("alice");
    const second = await ledger.startRelay(sim, relayEnv());
    cleanup.add(() => second.close());
    expect((await httpRequest(`${second.baseUrl}/v1/sora/generations/${id}`, { headers: bearer(tokens.bob) })).status).toBe(404);
    expect((await httpRequest(`${second.baseUrl}/v1/sora/generations/${id}`, { headers: bearer(tokens.alice) })).status).toBe(200);
  });

  it("is readable by an admin", async () => {
    const id = await createAs("alice");
    const result = await httpRequest(`${relay.baseUrl}/v1/sora/generations/${id}`, { headers: bearer(tokens.root) });
    expect(result.status, result.text).toBe(200);
  });
});

describe("GET /v1/sora/generations", () => {
  it("lists own generations newest first", async () => {
    const user = `lister-${randomUUID().slice(0, 8)}`;
    const token = ledger.add(await hsToken({ secret: jwtSecret, sub: user }));
    const ids: string[] = [];
    for (let i = 0; i < 3; i += 1) {
      const created = await httpRequest(`${relay.baseUrl}/v1/sora/generate`, { headers: bearer(token), json: { prompt: `list ${i}` } });
      ids.push(created.json.generation_id as string);
      await sleep(5);
    }
    const list = (query: string) => httpRequest(`${relay.baseUrl}/v1/sora/generations${query}`, { headers: bearer(token) });
    const firstPage = await list("?limit=2");
    expect(firstPage.status, firstPage.text).toBe(200);
    expect(firstPage.json.map((item: { generation_id: string }) => item.generation_id)).toEqual([ids[2], ids[1]]);
    const secondPage = await list("?limit=2&offset=2");
    expect(secondPage.json.map((item: { generation_id: string }) => item.generation_id)).toEqual([ids[0]]);
    expect((await list("?limit=101")).status).toBe(422);
    expect((await list("?offset=-1")).status).toBe(422);
  });

  it("shows nothing of other users", async () => {
    const stranger = ledger.add(await hsToken({ secret: jwtSecret, sub: `stranger-${randomUUID()}` }));
    await createAs("alice");
    const list = await httpRequest(`${relay.baseUrl}/v1/sora/generations`, { headers: bearer(stranger) });
    expect(list.json).toEqual([]);
  });

  it("passes Runblob's full list to admins", async () => {
    const id = await createAs("alice");
    const list = await httpRequest(`${relay.baseUrl}/v1/sora/generations?limit=100`, { headers: bearer(tokens.root) });
    expect(list.json.map((item: { generation_id: string }) => item.generation_id)).toContain(id);
  });
});

describe("ownership records in Redis", () => {
  it("use the generation's hash tag", async () => {
    const id = await createAs("alice");
    const redis = new Redis(inject("redisUrl"));
    cleanup.add(() => redis.quit());
    const key = `${keyPrefix}{${id}}:owner`;
    expect(await redis.get(key)).toBe("alice");
    expect(keySlot(key)).toBe(keySlot(`${keyPrefix}{${id}}:poller`));
    expect(await redis.ttl(key)).toBeGreaterThan(0);
  });
});

describe("stream tickets", () => {
  async function ticketFor(user: keyof typeof tokens, base = relay.baseUrl): Promise<string> {
    const issued = await httpRequest(`${base}/v1/sora/tickets`, { method: "POST", headers: bearer(tokens[user]) });
    expect(issued.status, issued.text).toBe(201);
    expect(issued.headers["cache-control"]).toBe("no-store");
    return ledger.add(issued.json.ticket as string);
  }

  it("open SSE, multi-SSE and WebSocket", async () => {
    const id = await createAs("alice");
    const ticket = await ticketFor("alice");
    const stream = await openProbeSse(`${relay.baseUrl}/v1/sora/generations/${id}/events?ticket=${ticket}`);
    cleanup.add(() => stream.close());
    await stream.items.next((item) => item.kind === "event" && item.event === "status", "an SSE status");
    const multi = await openProbeSse(`${relay.baseUrl}/v1/sora/events?ids=${id}&ticket=${ticket}`);
    cleanup.add(() => multi.close());
    await multi.items.next((item) => item.kind === "event" && item.event === "status", "a multi-SSE status");
    const socket = await openProbeWebSocket(`${relay.wsUrl}?ticket=${ticket}`);
    cleanup.add(() => socket.close());
    expect((await wsAnswerFor(socket, id)).type).toBe("status");
  });

  it("grant no access to another user's generation", async () => {
    const id = await createAs("bob");
    const ticket = await ticketFor("alice");
    const sse = await httpRequest(`${relay.baseUrl}/v1/sora/generations/${id}/events?ticket=${ticket}`);
    expect(sse.status).toBe(404);
    expect(sse.json).toEqual({ detail: "Generation not found" });
    const socket = await openProbeWebSocket(`${relay.wsUrl}?ticket=${ticket}`);
    cleanup.add(() => socket.close());
    expect((await wsAnswerFor(socket, id)).code).toBe("not_found");
  });

  it("are rejected on REST routes", async () => {
    const ticket = await ticketFor("alice");
    const generate = await httpRequest(`${relay.baseUrl}/v1/sora/generate?ticket=${ticket}`, { json: { prompt: "p" } });
    expect(generate.status).toBe(401);
    expect(generate.json.detail).toMatch(/tickets are accepted only on the SSE and WebSocket URLs/);
    expect((await httpRequest(`${relay.baseUrl}/v1/sora/tickets?ticket=${ticket}`, { method: "POST" })).status).toBe(401);
  });

  it("are rejected when tampered or forged", async () => {
    const id = await createAs("alice");
    const ticket = await ticketFor("alice");
    const [header, , signature] = ticket.split(".");
    const forgedPayload = Buffer.from(JSON.stringify({ sub: "bob", exp: Math.floor(Date.now() / 1000) + 60 })).toString("base64url");
    for (const bad of [`${header}.${forgedPayload}.${signature}`, await hsToken({ secret: jwtSecret, sub: "alice" })]) {
      ledger.add(bad);
      const result = await httpRequest(`${relay.baseUrl}/v1/sora/generations/${id}/events?ticket=${bad}`);
      expect(result.status, result.text).toBe(401);
      expect(result.json.detail).toMatch(/^invalid ticket/);
    }
  });

  it("expire after AUTH_TICKET_TTL_SECONDS", async () => {
    const shortLived = await ledger.startRelay(sim, relayEnv({ AUTH_TICKET_TTL_SECONDS: "5" }));
    cleanup.add(() => shortLived.close());
    const id = await createAs("alice");
    const ticket = await ticketFor("alice", shortLived.baseUrl);
    const url = `${shortLived.baseUrl}/v1/sora/generations/${id}`;
    const fresh = await openProbeSse(`${url}/events?ticket=${ticket}`);
    fresh.close();
    // 5 s of lifetime and 5 s of allowed clock skew.
    await sleep(10_500);
    const expired = await httpRequest(`${url}/events?ticket=${ticket}`);
    expect(expired.status).toBe(401);
    expect(expired.json.detail).toMatch(/^ticket has expired/);
    await expect(openProbeWebSocket(`${shortLived.wsUrl}?ticket=${ticket}`)).rejects.toThrow("HTTP 401");
  }, 20_000);
});

describe("grants", () => {
  it("open the granted generations", async () => {
    const id = await createAs("alice");
    const grant = ledger.add(await mintGrant(grantSecret, "alice", [id]));
    const status = await httpRequest(`${relay.baseUrl}/v1/sora/generations/${id}?grant=${grant}`);
    expect(status.status, status.text).toBe(200);
    const byHeader = await httpRequest(`${relay.baseUrl}/v1/sora/generations/${id}`, { headers: { "x-relay-grant": grant } });
    expect(byHeader.status, byHeader.text).toBe(200);
    const stream = await openProbeSse(`${relay.baseUrl}/v1/sora/generations/${id}/events?grant=${grant}`);
    cleanup.add(() => stream.close());
    await stream.items.next((item) => item.kind === "event" && item.event === "status", "an SSE status");
    const socket = await openProbeWebSocket(`${relay.wsUrl}?grant=${grant}`);
    cleanup.add(() => socket.close());
    expect((await wsAnswerFor(socket, id)).type).toBe("status");
  });

  it("match ids whatever their case", async () => {
    const id = await createAs("alice");
    const grant = ledger.add(await mintGrant(grantSecret, "bob", [id.toUpperCase()]));
    expect((await httpRequest(`${relay.baseUrl}/v1/sora/generations/${id}?grant=${grant}`)).status).toBe(200);
    expect((await httpRequest(`${relay.baseUrl}/v1/sora/generations/${id.toUpperCase()}?grant=${grant}`)).status).toBe(200);
    const own = await httpRequest(`${relay.baseUrl}/v1/sora/generations/${id.toUpperCase()}`, { headers: bearer(tokens.alice) });
    expect(own.status, own.text).toBe(200);
  });

  it("open nothing beyond their ids", async () => {
    const granted = await createAs("alice");
    const other = await createAs("alice");
    const grant = ledger.add(await mintGrant(grantSecret, "alice", [granted]));
    const rest = await httpRequest(`${relay.baseUrl}/v1/sora/generations/${other}?grant=${grant}`);
    expect(rest.status).toBe(404);
    expect(rest.json).toEqual({ detail: "Generation not found" });
    const multi = await openProbeSse(`${relay.baseUrl}/v1/sora/events?ids=${granted},${other}&grant=${grant}`);
    cleanup.add(() => multi.close());
    const error = await multi.items.next((item) => item.kind === "event" && item.event === "error", "the not_found event");
    expect(eventData(error)).toEqual({ code: "not_found", message: "generation not found", generation_id: other });
    const status = await multi.items.next((item) => item.kind === "event" && item.event === "status", "the granted status");
    expect(eventData(status).generation_id).toBe(granted);
    const socket = await openProbeWebSocket(`${relay.wsUrl}?grant=${grant}`);
    cleanup.add(() => socket.close());
    expect((await wsAnswerFor(socket, other)).code).toBe("not_found");
    expect((await httpRequest(`${relay.baseUrl}/v1/sora/generations?grant=${grant}`)).status).toBe(401);
    expect((await httpRequest(`${relay.baseUrl}/v1/sora/generate?grant=${grant}`, { json: { prompt: "p" } })).status).toBe(401);
  });

  it("minted by the README snippet work", async () => {
    const id = await createAs("alice");
    // The README's snippet, which uses node:crypto only.
    function mintGrantWithoutLibrary(secret: string, userId: string, generationIds: string[], ttlSeconds = 3600): string {
      const encode = (value: object) => Buffer.from(JSON.stringify(value)).toString("base64url");
      const now = Math.floor(Date.now() / 1000);
      const claims = { sub: userId, gen: generationIds, aud: "runblob-relay:grant", iat: now, exp: now + ttlSeconds };
      const input = `${encode({ alg: "HS256", typ: "JWT" })}.${encode(claims)}`;
      return `${input}.${createHmac("sha256", secret).update(input).digest("base64url")}`;
    }
    const grant = ledger.add(mintGrantWithoutLibrary(grantSecret, "alice", [id]));
    const status = await httpRequest(`${relay.baseUrl}/v1/sora/generations/${id}`, { headers: { "x-relay-grant": grant } });
    expect(status.status, status.text).toBe(200);
  });

  it("are rejected when expired or forged", async () => {
    const id = await createAs("alice");
    const expired = ledger.add(await mintGrant(grantSecret, "alice", [id], -60));
    const forged = ledger.add(await mintGrant(ticketSecret, "alice", [id]));
    const wrongAudience = ledger.add(await hsToken({ secret: grantSecret, sub: "alice", claims: { gen: [id] } }));
    const expectations: Array<[string, RegExp]> = [
      [expired, /^grant has expired/],
      [forged, /^invalid grant/],
      [wrongAudience, /^invalid grant/],
    ];
    for (const [grant, detail] of expectations) {
      const result = await httpRequest(`${relay.baseUrl}/v1/sora/generations/${id}?grant=${grant}`);
      expect(result.status, result.text).toBe(401);
      expect(result.json.detail).toMatch(detail);
    }
  });
});

describe("log output of the ownership tests", () => {
  it("contains no secret used in this file", () => {
    ledger.expectNoLeaks();
  });
});
