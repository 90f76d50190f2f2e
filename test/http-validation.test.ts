/**
 * Request validation of the relay's REST routes, end to end over HTTP against
 * a real simulator. Every rejected request is also checked at the simulator:
 * invalid input must never cost an upstream request.
 */
import { randomUUID } from "node:crypto";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { startRelay, startSimulator } from "./support/relay-harness.js";
import type { RelayHandle, SimulatorHandle } from "./support/relay-harness.js";
import { CleanupStack, httpRequest, upstreamRequestTotal, waitUntil } from "./support/probe-clients.js";
import type { HttpOptions, HttpResult } from "./support/probe-clients.js";

const UUID_PATTERN = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
const TEN_MB = 10 * 1024 * 1024;
const GENERATE_BODY_LIMIT = 14 * 1024 * 1024;

const PNG_SIGNATURE = Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]);
const JPEG_HEAD = Buffer.from([0xff, 0xd8, 0xff, 0xe0, 0x00, 0x10, 0x4a, 0x46, 0x49, 0x46, 0x00, 0x01]);
const WEBP_HEAD = Buffer.concat([Buffer.from("RIFF"), Buffer.from([0x24, 0x00, 0x00, 0x00]), Buffer.from("WEBPVP8 ")]);
const GIF_HEAD = Buffer.from("GIF89a\x01\x00\x01\x00\x00\x00", "latin1");

/** Builds a file of `size` bytes that starts with `head` and is zero-filled after it. */
function fileWithHead(head: Buffer, size: number): Buffer {
  const file = Buffer.alloc(size);
  head.copy(file);
  return file;
}

const smallPng = fileWithHead(PNG_SIGNATURE, 64).toString("base64");

/** Asserts a 422 in Runblob's shape with an issue at `loc`, and returns that issue. */
function expectValidationIssue(result: HttpResult, loc: Array<string | number>): { type: string; loc: unknown[]; msg: string } {
  expect(result.status, result.text).toBe(422);
  expect(result.headers["content-type"]).toMatch(/^application\/json/);
  expect(Array.isArray(result.json?.detail), result.text).toBe(true);
  for (const issue of result.json.detail as unknown[]) {
    expect(issue).toEqual({ type: expect.any(String), loc: expect.any(Array), msg: expect.any(String) });
  }
  const issue = (result.json.detail as Array<{ type: string; loc: unknown[]; msg: string }>).find(
    (candidate) => JSON.stringify(candidate.loc) === JSON.stringify(loc),
  );
  expect(issue, `no issue at ${JSON.stringify(loc)} in ${result.text}`).toBeDefined();
  expect(issue!.msg.length).toBeGreaterThan(0);
  return issue!;
}

/** Asserts `{"detail": "<string>"}` with the given status, and returns the detail. */
function expectDetail(result: HttpResult, status: number): string {
  expect(result.status, result.text).toBe(status);
  expect(result.headers["content-type"]).toMatch(/^application\/json/);
  expect(result.json, result.text).toEqual({ detail: expect.any(String) });
  return result.json.detail as string;
}

/** Sends one request and asserts that the relay made no upstream request for it. */
async function requestWithoutUpstream(sim: SimulatorHandle, url: string, options: HttpOptions = {}): Promise<HttpResult> {
  const before = upstreamRequestTotal(sim);
  const result = await httpRequest(url, options);
  expect(upstreamRequestTotal(sim), `upstream requests for ${options.method ?? "GET"} ${url}`).toBe(before);
  return result;
}

describe("POST /v1/sora/generate rejects invalid input", () => {
  let sim: SimulatorHandle;
  let relay: RelayHandle;
  let generateUrl: string;

  beforeAll(async () => {
    sim = await startSimulator();
    relay = await startRelay(sim);
    generateUrl = `${relay.baseUrl}/v1/sora/generate`;
  });

  afterAll(async () => {
    await relay?.close();
    await sim?.close();
  });

  const invalidBodies: Array<{ name: string; body: unknown; loc: string[] }> = [
    { name: "missing prompt", body: {}, loc: ["body", "prompt"] },
    { name: "empty prompt", body: { prompt: "" }, loc: ["body", "prompt"] },
    { name: "prompt of 4001 characters", body: { prompt: "a".repeat(4001) }, loc: ["body", "prompt"] },
    { name: "prompt of 4001 emoji", body: { prompt: "\u{1F3AC}".repeat(4001) }, loc: ["body", "prompt"] },
    { name: "numeric prompt", body: { prompt: 42 }, loc: ["body", "prompt"] },
    { name: "null prompt", body: { prompt: null }, loc: ["body", "prompt"] },
    { name: "orientation 1:1", body: { prompt: "p", orientation: "1:1" }, loc: ["body", "orientation"] },
    { name: "orientation 9-16", body: { prompt: "p", orientation: "9-16" }, loc: ["body", "orientation"] },
    { name: "numeric orientation", body: { prompt: "p", orientation: 916 }, loc: ["body", "orientation"] },
    { name: "duration as string", body: { prompt: "p", duration: "10" }, loc: ["body", "duration"] },
    { name: "duration 12", body: { prompt: "p", duration: 12 }, loc: ["body", "duration"] },
    { name: "duration 10.5", body: { prompt: "p", duration: 10.5 }, loc: ["body", "duration"] },
    { name: "null duration", body: { prompt: "p", duration: null }, loc: ["body", "duration"] },
    { name: "ftp image_url", body: { prompt: "p", image_url: "ftp://127.0.0.1/a.png" }, loc: ["body", "image_url"] },
    { name: "file image_url", body: { prompt: "p", image_url: "file:///etc/passwd" }, loc: ["body", "image_url"] },
    { name: "javascript image_url", body: { prompt: "p", image_url: "javascript:alert(1)" }, loc: ["body", "image_url"] },
    { name: "relative image_url", body: { prompt: "p", image_url: "/a.png" }, loc: ["body", "image_url"] },
    { name: "image_base64 outside the alphabet", body: { prompt: "p", image_base64: "!!!!" }, loc: ["body", "image_base64"] },
    { name: "image_base64 without padding", body: { prompt: "p", image_base64: smallPng.replace(/=+$/, "") + "A" }, loc: ["body", "image_base64"] },
    { name: "image_base64 with line breaks", body: { prompt: "p", image_base64: `${smallPng.slice(0, 40)}\n${smallPng.slice(40)}` }, loc: ["body", "image_base64"] },
    { name: "empty image_base64", body: { prompt: "p", image_base64: "" }, loc: ["body", "image_base64"] },
    { name: "data URL without data", body: { prompt: "p", image_base64: "data:image/png;base64," }, loc: ["body", "image_base64"] },
    { name: "GIF image_base64", body: { prompt: "p", image_base64: fileWithHead(GIF_HEAD, 64).toString("base64") }, loc: ["body", "image_base64"] },
    { name: "text image_base64", body: { prompt: "p", image_base64: Buffer.from("hello world!").toString("base64") }, loc: ["body", "image_base64"] },
    { name: "http callback_url", body: { prompt: "p", callback_url: "http://127.0.0.1/hook" }, loc: ["body", "callback_url"] },
    { name: "ftp callback_url", body: { prompt: "p", callback_url: "ftp://127.0.0.1/hook" }, loc: ["body", "callback_url"] },
    { name: "callback_url that is no URL", body: { prompt: "p", callback_url: "hook" }, loc: ["body", "callback_url"] },
    { name: "unknown field", body: { prompt: "p", model: "sora-2" }, loc: ["body", "model"] },
    { name: "JSON null body", body: null, loc: ["body"] },
    { name: "JSON array body", body: [{ prompt: "p" }], loc: ["body"] },
  ];

  it.each(invalidBodies)("rejects $name with 422", async ({ body, loc }) => {
    const result = await requestWithoutUpstream(sim, generateUrl, { method: "POST", rawBody: JSON.stringify(body), headers: { "content-type": "application/json" } });
    expectValidationIssue(result, loc);
  });

  it("types prompt issues as FastAPI does", async () => {
    const missing = await requestWithoutUpstream(sim, generateUrl, { json: {} });
    expect(expectValidationIssue(missing, ["body", "prompt"]).type).toBe("missing");

    const tooShort = await requestWithoutUpstream(sim, generateUrl, { json: { prompt: "" } });
    expect(expectValidationIssue(tooShort, ["body", "prompt"]).type).toBe("string_too_short");

    const tooLong = await requestWithoutUpstream(sim, generateUrl, { json: { prompt: "a".repeat(4001) } });
    expect(expectValidationIssue(tooLong, ["body", "prompt"]).type).toBe("string_too_long");

    // A prompt that is present but not a string is no "missing" field.
    const mistyped = await requestWithoutUpstream(sim, generateUrl, { json: { prompt: 42 } });
    expect(expectValidationIssue(mistyped, ["body", "prompt"]).type).toBe("string_type");
  });

  it("reports an unknown field as extra_forbidden", async () => {
    const result = await requestWithoutUpstream(sim, generateUrl, { json: { prompt: "p", model: "sora-2", seed: 1 } });
    expect(expectValidationIssue(result, ["body", "model"]).type).toBe("extra_forbidden");
    expect(expectValidationIssue(result, ["body", "seed"]).type).toBe("extra_forbidden");
  });

  it("rejects both image inputs with Runblob's 400", async () => {
    const result = await requestWithoutUpstream(sim, generateUrl, {
      json: { prompt: "p", image_url: "https://127.0.0.1/a.png", image_base64: smallPng },
    });
    expect(expectDetail(result, 400)).toBe("Cannot provide both image_base64 and image_url");
  });

  const invalidJsonBodies = [
    { name: "truncated object", rawBody: '{"prompt": "p"' },
    { name: "trailing comma", rawBody: '{"prompt": "p",}' },
    { name: "single quotes", rawBody: "{'prompt': 'p'}" },
    { name: "empty body", rawBody: "" },
  ];

  it.each(invalidJsonBodies)("rejects invalid JSON ($name) with 400", async ({ rawBody }) => {
    const result = await requestWithoutUpstream(sim, generateUrl, { method: "POST", rawBody, headers: { "content-type": "application/json" } });
    expect(expectDetail(result, 400)).toMatch(/JSON/);
  });

  const foreignContentTypes = [
    "text/plain",
    "text/plain; charset=utf-8",
    "application/x-www-form-urlencoded",
    "multipart/form-data; boundary=x",
    "application/xml",
  ];

  it.each(foreignContentTypes)("rejects content type %s with 415", async (contentType) => {
    const result = await requestWithoutUpstream(sim, generateUrl, {
      method: "POST",
      rawBody: JSON.stringify({ prompt: "p" }),
      headers: { "content-type": contentType },
    });
    expect(expectDetail(result, 415)).toMatch(/application\/json/);
  });

  it("rejects a body over 14 MiB with 413", async () => {
    const filler = "A".repeat(GENERATE_BODY_LIMIT);
    const rawBody = JSON.stringify({ prompt: "p", image_base64: filler });
    expect(Buffer.byteLength(rawBody)).toBeGreaterThan(GENERATE_BODY_LIMIT);

    const result = await requestWithoutUpstream(sim, generateUrl, { method: "POST", rawBody, headers: { "content-type": "application/json" } });
    expectDetail(result, 413);
  });

  it("rejects an image of 10 MB plus 1 byte with 422", async () => {
    const image = fileWithHead(PNG_SIGNATURE, TEN_MB + 1).toString("base64");
    const result = await requestWithoutUpstream(sim, generateUrl, { json: { prompt: "p", image_base64: image } });
    const issue = expectValidationIssue(result, ["body", "image_base64"]);
    expect(issue.msg).toContain(String(TEN_MB + 1));
  });
});

describe("POST /v1/sora/generate forwards valid input", () => {
  const cleanup = new CleanupStack();
  afterEach(() => cleanup.run());

  async function setup(env: Record<string, string> = {}): Promise<{ sim: SimulatorHandle; relay: RelayHandle; generateUrl: string }> {
    const sim = await startSimulator({ queueMs: 600_000, processingMs: 600_000 });
    cleanup.add(() => sim.close());
    const relay = await startRelay(sim, env);
    cleanup.add(() => relay.close());
    return { sim, relay, generateUrl: `${relay.baseUrl}/v1/sora/generate` };
  }

  it("creates and watches a generation", async () => {
    const { sim, relay, generateUrl } = await setup({ POLL_INTERVAL_MS: "10000" });

    const result = await httpRequest(generateUrl, { json: { prompt: "A lighthouse at dusk", orientation: "16:9", duration: 15 } });
    expect(result.status, result.text).toBe(201);
    expect(result.json).toEqual({ generation_id: expect.stringMatching(UUID_PATTERN), status: "pending", price: "0.1800" });
    expect(sim.simulator.stats.requests("generate")).toBe(1);
    const id = result.json.generation_id as string;

    // Watched: the relay polls the new generation at once, with no subscriber and no status request from a client.
    await waitUntil(() => sim.simulator.stats.statusRequests(id) >= 1, "the relay polls the new generation");
    const status = await httpRequest(`${relay.baseUrl}/v1/sora/generations/${id}`);
    expect(status.status, status.text).toBe(200);
    expect(status.json).toMatchObject({ generation_id: id, status: "pending", prompt: "A lighthouse at dusk", version: 1 });
  });

  const acceptedBodies: Array<{ name: string; body: Record<string, unknown> }> = [
    { name: "prompt of 1 character", body: { prompt: "a" } },
    { name: "prompt of 4000 characters", body: { prompt: "a".repeat(4000) } },
    { name: "orientation 9:16 and duration 10", body: { prompt: "p", orientation: "9:16", duration: 10 } },
    { name: "http image_url", body: { prompt: "p", image_url: "http://127.0.0.1/a.png" } },
    { name: "https image_url", body: { prompt: "p", image_url: "https://127.0.0.1/a.png" } },
    { name: "PNG image_base64", body: { prompt: "p", image_base64: smallPng } },
    { name: "JPEG image_base64", body: { prompt: "p", image_base64: fileWithHead(JPEG_HEAD, 64).toString("base64") } },
    { name: "WEBP image_base64", body: { prompt: "p", image_base64: fileWithHead(WEBP_HEAD, 64).toString("base64") } },
    { name: "PNG data URL", body: { prompt: "p", image_base64: `data:image/png;base64,${smallPng}` } },
    { name: "https callback_url", body: { prompt: "p", callback_url: "https://127.0.0.1/hook" } },
  ];

  it.each(acceptedBodies)("forwards $name", async ({ body }) => {
    const { sim, generateUrl } = await setup();
    const result = await httpRequest(generateUrl, { json: body });
    expect(result.status, result.text).toBe(201);
    expect(result.json.generation_id).toMatch(UUID_PATTERN);
    expect(sim.simulator.stats.requests("generate")).toBe(1);
  });

  it("counts prompt length in code points", async () => {
    // Runblob validates with pydantic, whose max_length counts Unicode code points; each emoji is one, but two UTF-16 units.
    const { sim, generateUrl } = await setup();
    const result = await httpRequest(generateUrl, { json: { prompt: "\u{1F3AC}".repeat(4000) } });
    expect(result.status, result.text).toBe(201);
    expect(sim.simulator.stats.requests("generate")).toBe(1);
  });

  it("accepts a 10 MB PNG image", async () => {
    const { sim, generateUrl } = await setup();
    const image = fileWithHead(PNG_SIGNATURE, TEN_MB).toString("base64");
    const rawBody = JSON.stringify({ prompt: "p", image_base64: image });
    expect(Buffer.byteLength(rawBody)).toBeLessThan(GENERATE_BODY_LIMIT);

    const result = await httpRequest(generateUrl, { method: "POST", rawBody, headers: { "content-type": "application/json" } });
    expect(result.status, result.text.slice(0, 500)).toBe(201);
    expect(result.json.generation_id).toMatch(UUID_PATTERN);
    expect(sim.simulator.stats.requests("generate")).toBe(1);
  });

  it("passes Runblob's 402 through", async () => {
    const { sim, generateUrl } = await setup();
    sim.simulator.control.setBalance(0);
    const result = await httpRequest(generateUrl, { json: { prompt: "p" } });
    expect(expectDetail(result, 402)).toBe("INSUFFICIENT_CREDITS");
    expect(sim.simulator.stats.requests("generate")).toBe(1);
  });
});

describe("GET /v1/sora/generations/{id}", () => {
  const cleanup = new CleanupStack();
  afterEach(() => cleanup.run());

  async function setup(env: Record<string, string> = {}): Promise<{ sim: SimulatorHandle; relay: RelayHandle }> {
    const sim = await startSimulator({ queueMs: 600_000, processingMs: 600_000 });
    cleanup.add(() => sim.close());
    const relay = await startRelay(sim, env);
    cleanup.add(() => relay.close());
    return { sim, relay };
  }

  const invalidIds = [
    "abc",
    "123",
    "550e8400-e29b-41d4-a716-44665544000",
    "550e8400-e29b-41d4-a716-4466554400000",
    "550e8400-e29b-41d4-a716-44665544000g",
    "..%2F..%2Fdata%2Fbalance",
    "%20550e8400-e29b-41d4-a716-446655440000",
  ];

  it.each(invalidIds)("rejects id %s with 422", async (id) => {
    const { sim, relay } = await setup();
    for (const suffix of ["", "/"]) {
      const result = await requestWithoutUpstream(sim, `${relay.baseUrl}/v1/sora/generations/${id}${suffix}`);
      expectValidationIssue(result, ["path", "id"]);
    }
  });

  it("passes Runblob's 404 through for an unknown id", async () => {
    const { sim, relay } = await setup();
    for (const suffix of ["", "/"]) {
      const id = randomUUID();
      const result = await httpRequest(`${relay.baseUrl}/v1/sora/generations/${id}${suffix}`);
      expect(result.status, result.text).toBe(404);
      expect(result.json).toEqual({ detail: "Generation not found" });
      expect(sim.simulator.stats.statusRequests(id)).toBe(1);
    }
  });

  it("answers both path forms with the same status", async () => {
    const { relay, sim } = await setup();
    const id = sim.simulator.control.create();
    const plain = await httpRequest(`${relay.baseUrl}/v1/sora/generations/${id}`);
    const slashed = await httpRequest(`${relay.baseUrl}/v1/sora/generations/${id}/`);
    expect(plain.status, plain.text).toBe(200);
    expect(slashed.status, slashed.text).toBe(200);
    expect(plain.json).toMatchObject({ generation_id: id, status: "pending", version: 1 });
    expect(slashed.json).toEqual(plain.json);
  });

  it("rereads a stale unwatched generation", async () => {
    // The baseline for the two tests below: without a watch, a stored pending status older than one interval is read again.
    const intervalMs = 100;
    const { sim, relay } = await setup({ POLL_INTERVAL_MS: String(intervalMs) });
    const id = sim.simulator.control.create();
    for (let i = 1; i <= 3; i += 1) {
      const result = await httpRequest(`${relay.baseUrl}/v1/sora/generations/${id}`);
      expect(result.status, result.text).toBe(200);
      expect(sim.simulator.stats.statusRequests(id)).toBe(i);
      // Time passing is the condition under test, so there is no event to await instead.
      await new Promise((resolve) => setTimeout(resolve, intervalMs * 3));
    }
  });

  it("serves a watched generation from the store", async () => {
    const { sim, relay } = await setup({ POLL_INTERVAL_MS: "10000" });
    const created = await httpRequest(`${relay.baseUrl}/v1/sora/generate`, { json: { prompt: "p" } });
    expect(created.status, created.text).toBe(201);
    const id = created.json.generation_id as string;
    await waitUntil(() => sim.simulator.stats.statusRequests(id) >= 1, "the first poll of the new generation");

    // The first read may overlap the first poll; from then on the poll keeps the stored status fresh for 10 s.
    const first = await httpRequest(`${relay.baseUrl}/v1/sora/generations/${id}`);
    expect(first.status, first.text).toBe(200);
    const polls = sim.simulator.stats.statusRequests(id);

    for (const suffix of ["", "/", "", "/"]) {
      const result = await httpRequest(`${relay.baseUrl}/v1/sora/generations/${id}${suffix}`);
      expect(result.status, result.text).toBe(200);
      expect(result.json).toEqual(first.json);
    }
    expect(sim.simulator.stats.statusRequests(id)).toBe(polls);
  });

  it("serves a final generation from the store", async () => {
    const { sim, relay } = await setup();
    const id = sim.simulator.control.create({ queueMs: 0, processingMs: 0 });

    const first = await httpRequest(`${relay.baseUrl}/v1/sora/generations/${id}`);
    expect(first.status, first.text).toBe(200);
    expect(first.json).toMatchObject({ generation_id: id, status: "completed", version: 1 });
    expect(sim.simulator.stats.statusRequests(id)).toBe(1);

    for (const suffix of ["", "/", ""]) {
      const result = await httpRequest(`${relay.baseUrl}/v1/sora/generations/${id}${suffix}`);
      expect(result.status, result.text).toBe(200);
      expect(result.json).toEqual(first.json);
    }
    expect(sim.simulator.stats.statusRequests(id)).toBe(1);
  });

  it("shares one upstream read", async () => {
    const { sim, relay } = await setup();
    const id = sim.simulator.control.create();
    // Latency keeps the first upstream request open while the other reads arrive.
    sim.simulator.control.setLatency(1500);

    const results = await Promise.all(
      Array.from({ length: 10 }, (_, i) => httpRequest(`${relay.baseUrl}/v1/sora/generations/${id}${i % 2 === 0 ? "" : "/"}`)),
    );
    for (const result of results) {
      expect(result.status, result.text).toBe(200);
      expect(result.json).toEqual(results[0]!.json);
    }
    expect(sim.simulator.stats.statusRequests(id)).toBe(1);
  });

  it("shares one upstream 404", async () => {
    const { sim, relay } = await setup();
    const id = randomUUID();
    sim.simulator.control.setLatency(1500);

    const results = await Promise.all(Array.from({ length: 5 }, () => httpRequest(`${relay.baseUrl}/v1/sora/generations/${id}`)));
    for (const result of results) {
      expect(result.status, result.text).toBe(404);
      expect(result.json).toEqual({ detail: "Generation not found" });
    }
    expect(sim.simulator.stats.statusRequests(id)).toBe(1);
  });
});

describe("GET /v1/sora/generations", () => {
  let sim: SimulatorHandle;
  let relay: RelayHandle;
  let listUrl: string;

  beforeAll(async () => {
    sim = await startSimulator({ queueMs: 600_000, processingMs: 600_000 });
    relay = await startRelay(sim);
    listUrl = `${relay.baseUrl}/v1/sora/generations`;
    for (let i = 0; i < 25; i += 1) sim.simulator.control.create({}, `prompt ${i}`);
  });

  afterAll(async () => {
    await relay?.close();
    await sim?.close();
  });

  const invalidQueries: Array<{ query: string; loc: string[] }> = [
    { query: "limit=0", loc: ["query", "limit"] },
    { query: "limit=101", loc: ["query", "limit"] },
    { query: "limit=-1", loc: ["query", "limit"] },
    { query: "limit=abc", loc: ["query", "limit"] },
    { query: "limit=1.5", loc: ["query", "limit"] },
    { query: "limit=", loc: ["query", "limit"] },
    { query: "limit=Infinity", loc: ["query", "limit"] },
    { query: "limit=5&limit=6", loc: ["query", "limit"] },
    { query: "offset=-1", loc: ["query", "offset"] },
    { query: "offset=abc", loc: ["query", "offset"] },
    { query: "offset=2.5", loc: ["query", "offset"] },
    { query: "page=2", loc: ["query", "page"] },
    { query: "limit=10&sort=asc", loc: ["query", "sort"] },
  ];

  it.each(invalidQueries)("rejects ?$query with 422", async ({ query, loc }) => {
    const result = await requestWithoutUpstream(sim, `${listUrl}?${query}`);
    expectValidationIssue(result, loc);
  });

  it("reports an unknown query key as extra_forbidden", async () => {
    const result = await requestWithoutUpstream(sim, `${listUrl}?page=2`);
    expect(expectValidationIssue(result, ["query", "page"]).type).toBe("extra_forbidden");
  });

  // Runblob (FastAPI) parses integer query parameters as decimal digits only, so these never reach it as numbers.
  const nonDecimalQueries: Array<{ query: string; loc: string[] }> = [
    { query: "limit=0x10", loc: ["query", "limit"] },
    { query: "limit=1e1", loc: ["query", "limit"] },
    { query: "offset=", loc: ["query", "offset"] },
    { query: "offset=0b11", loc: ["query", "offset"] },
  ];

  it.each(nonDecimalQueries)("rejects non-decimal ?$query with 422", async ({ query, loc }) => {
    const result = await requestWithoutUpstream(sim, `${listUrl}?${query}`);
    expectValidationIssue(result, loc);
  });

  it("defaults to limit 20 and offset 0", async () => {
    const before = sim.simulator.stats.requests("list");
    const result = await httpRequest(listUrl);
    expect(result.status, result.text).toBe(200);
    expect(result.json).toHaveLength(20);
    expect(result.json[0]).toMatchObject({ prompt: "prompt 24" });
    expect(sim.simulator.stats.requests("list")).toBe(before + 1);
  });

  it("forwards limit and offset at their bounds", async () => {
    const firstPage = await httpRequest(`${listUrl}?limit=1&offset=0`);
    expect(firstPage.status, firstPage.text).toBe(200);
    expect(firstPage.json).toHaveLength(1);

    const hundred = await httpRequest(`${listUrl}?limit=100`);
    expect(hundred.status, hundred.text).toBe(200);
    expect(hundred.json).toHaveLength(25);

    const skipped = await httpRequest(`${listUrl}?limit=5&offset=24`);
    expect(skipped.status, skipped.text).toBe(200);
    expect(skipped.json).toEqual([expect.objectContaining({ prompt: "prompt 0" })]);
  });
});
