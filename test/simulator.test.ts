/**
 * The Runblob simulator, driven over real HTTP with undici. Most tests inject
 * the clock (`now`) so that status progress is exact. One test runs on the
 * real clock with timings of tens of milliseconds.
 */
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { Agent, request } from "undici";
import type { IncomingHttpHeaders } from "node:http";
import { createSimulator, type Simulator, type SimulatorOptions } from "../src/simulator/app.js";
import {
  computePhase,
  forceStatus,
  formatRunblobTimestamp,
  statusFromPhase,
  type GenerationRecord,
} from "../src/simulator/lifecycle.js";
import { FAIL_MARKER_ERROR_MESSAGE } from "../src/simulator/generations.js";
import { upstreamListSchema, upstreamStatusSchema } from "../src/wire/upstream.js";

const TOKEN = "simulator-test-token";
const START = Date.parse("2025-11-24T10:00:00.000Z");
const RUNBLOB_TIMESTAMP = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{6}$/;

// Example payloads from Runblob's API reference (Sora: status, list, generate, errors).
const EXAMPLE_PENDING = {
  generation_id: "550e8400-e29b-41d4-a716-446655440000",
  status: "pending",
  prompt: "A beautiful sunset over the ocean",
  video_url: null,
  created_at: "2025-11-24T10:00:00.000000",
  completed_at: null,
  progress_pct: null,
  progress_pos_in_queue: 3,
  error_message: null,
};
const EXAMPLE_PROCESSING = { ...EXAMPLE_PENDING, status: "processing", progress_pct: 45, progress_pos_in_queue: null };
const EXAMPLE_COMPLETED = {
  ...EXAMPLE_PENDING,
  status: "completed",
  video_url: "https://cdn.runblob.io/videos/2025/11/550e8400.mp4",
  completed_at: "2025-11-24T10:05:30.000000",
  progress_pct: 100,
  progress_pos_in_queue: null,
};
const EXAMPLE_FAILED = {
  ...EXAMPLE_PENDING,
  status: "failed",
  completed_at: "2025-11-24T10:02:00.000000",
  progress_pos_in_queue: null,
  error_message: "Image contains photorealistic people. Please try with a different image.",
};
const EXAMPLE_LIST_ITEM = {
  generation_id: "550e8400-e29b-41d4-a716-446655440000",
  status: "completed",
  prompt: "A beautiful sunset over the ocean",
  video_url: "https://cdn.runblob.io/videos/2025/11/550e8400.mp4",
  created_at: "2025-11-24T10:00:00.000000",
  completed_at: "2025-11-24T10:05:30.000000",
};
const EXAMPLE_GENERATE_RESPONSE = { generation_id: "550e8400-e29b-41d4-a716-446655440000", status: "pending", price: "0.1200" };
const EXAMPLE_422_EMPTY_PROMPT = { type: "string_too_short", loc: ["body", "prompt"], msg: "String should have at least 1 character" };

/** Maps each key of an object to whether its value is null, to compare shapes with Runblob's examples. */
function shapeOf(value: Record<string, unknown>): Record<string, "null" | "set"> {
  const entries = Object.keys(value)
    .sort()
    .map((key) => [key, value[key] === null ? "null" : "set"] as const);
  return Object.fromEntries(entries);
}

interface HttpResult {
  status: number;
  headers: IncomingHttpHeaders;
  text: string;
  // Tests read arbitrary JSON shapes, so the parsed body is untyped on purpose.
  json: any;
}

let dispatcher: Agent;
const running: Simulator[] = [];

beforeEach(() => {
  dispatcher = new Agent({ keepAliveTimeout: 1_000 });
});

afterEach(async () => {
  await Promise.all(running.splice(0).map((simulator) => simulator.close()));
  await dispatcher.close();
});

async function start(options: Partial<SimulatorOptions> = {}): Promise<{ simulator: Simulator; url: string }> {
  const simulator = createSimulator({ token: TOKEN, queueStart: 3, queueMs: 3_000, processingMs: 10_000, ...options });
  running.push(simulator);
  const url = await simulator.listen(0, "127.0.0.1");
  return { simulator, url };
}

interface CallOptions {
  token?: string | null;
  body?: unknown;
  rawBody?: string;
  headers?: Record<string, string>;
}

async function call(url: string, method: "GET" | "POST" | "DELETE", path: string, options: CallOptions = {}): Promise<HttpResult> {
  const headers: Record<string, string> = { ...options.headers };
  const token = options.token === undefined ? TOKEN : options.token;
  if (token !== null) headers.authorization = `Bearer ${token}`;

  let body: string | undefined = options.rawBody;
  if (options.body !== undefined) {
    body = JSON.stringify(options.body);
    headers["content-type"] = "application/json";
  }

  const response = await request(`${url}${path}`, { method, headers, body, dispatcher });
  const text = await response.body.text();
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch {
    json = undefined;
  }
  return { status: response.statusCode, headers: response.headers, text, json };
}

async function generate(url: string, body: Record<string, unknown> = { prompt: "A beautiful sunset over the ocean" }): Promise<string> {
  const result = await call(url, "POST", "/v1/sora/generate", { body });
  expect(result.status).toBe(201);
  return result.json.generation_id as string;
}

const getStatus = (url: string, id: string) => call(url, "GET", `/v1/sora/generations/${id}/`);

describe("simulator lifecycle functions", () => {
  const record: GenerationRecord = {
    generation_id: "550e8400-e29b-41d4-a716-446655440000",
    prompt: "A beautiful sunset over the ocean",
    created_at: new Date(START),
    plan: { queueStart: 3, queueMs: 3_000, processingMs: 10_000, outcome: "completed" },
  };
  const videoUrl = (id: string) => `http://127.0.0.1:1/videos/${id}.mp4`;

  it("formats timestamps like Runblob", () => {
    expect(formatRunblobTimestamp(new Date(START))).toBe("2025-11-24T10:00:00.000000");
    expect(formatRunblobTimestamp(new Date(START + 330_123))).toBe("2025-11-24T10:05:30.123000");
  });

  it("counts the queue position down to 1", () => {
    const positions = [0, 999, 1_000, 2_000, 2_999].map((offset) => computePhase(record, START + offset));
    expect(positions).toEqual([
      { status: "pending", position: 3 },
      { status: "pending", position: 3 },
      { status: "pending", position: 2 },
      { status: "pending", position: 1 },
      { status: "pending", position: 1 },
    ]);
  });

  it("raises progress_pct from 0 to 99 while processing", () => {
    expect(computePhase(record, START + 3_000)).toEqual({ status: "processing", percent: 0 });
    expect(computePhase(record, START + 7_500)).toEqual({ status: "processing", percent: 45 });
    expect(computePhase(record, START + 12_999)).toEqual({ status: "processing", percent: 99 });
  });

  it("completes at queueMs plus processingMs", () => {
    expect(computePhase(record, START + 13_000)).toEqual({ status: "completed", at: new Date(START + 13_000) });
  });

  it("keeps a generation pending when the clock runs backwards", () => {
    expect(computePhase(record, START - 5_000)).toEqual({ status: "pending", position: 3 });
  });

  it("skips phases of zero duration", () => {
    const instant = { ...record, plan: { ...record.plan, queueMs: 0, processingMs: 0 } };
    expect(computePhase(instant, START).status).toBe("completed");
  });

  it("builds the failed shape of Runblob's example", () => {
    const failing = { ...record, plan: { ...record.plan, outcome: "failed" as const, errorMessage: "no" } };
    const status = statusFromPhase(failing, computePhase(failing, START + 13_000), videoUrl);
    expect(shapeOf(status)).toEqual(shapeOf(EXAMPLE_FAILED));
    expect(status.error_message).toBe("no");
  });

  it("forces fields onto the current status", () => {
    const current = statusFromPhase(record, { status: "processing", percent: 45 }, videoUrl);
    const forced = forceStatus(record, current, { progress_pct: 50, eta_seconds: 12 }, new Date(START), videoUrl);
    expect(forced.status).toBe("processing");
    expect(forced.progress_pct).toBe(50);
    expect(forced.eta_seconds).toBe(12);
  });

  it("forces another known status from its first state", () => {
    const current = statusFromPhase(record, { status: "pending", position: 2 }, videoUrl);
    const forced = forceStatus(record, current, { status: "completed" }, new Date(START + 60_000), videoUrl);
    expect(shapeOf(forced)).toEqual(shapeOf(EXAMPLE_COMPLETED));
    expect(forced.completed_at).toBe("2025-11-24T10:01:00.000000");
    expect(forced.video_url).toBe(videoUrl(record.generation_id));
  });

  it("nulls optional fields for an unknown status", () => {
    const current = statusFromPhase(record, { status: "processing", percent: 45 }, videoUrl);
    const forced = forceStatus(record, current, { status: "upscaling" }, new Date(START), videoUrl);
    expect(forced.status).toBe("upscaling");
    expect(forced.progress_pct).toBeNull();
    expect(forced.created_at).toBe("2025-11-24T10:00:00.000000");
  });
});

describe("simulator generate endpoint", () => {
  it("returns 201 with the example's shape", async () => {
    const { url } = await start();
    const result = await call(url, "POST", "/v1/sora/generate", { body: { prompt: "A cat" } });

    expect(result.status).toBe(201);
    expect(shapeOf(result.json)).toEqual(shapeOf(EXAMPLE_GENERATE_RESPONSE));
    expect(result.json.status).toBe("pending");
    expect(result.json.price).toBe("0.1200");
    expect(result.json.generation_id).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
  });

  it("prices 15 seconds at 0.1800", async () => {
    const { url } = await start();
    const result = await call(url, "POST", "/v1/sora/generate", { body: { prompt: "A cat", duration: 15, orientation: "16:9" } });
    expect(result.status).toBe(201);
    expect(result.json.price).toBe("0.1800");
  });

  it("charges the balance per generation", async () => {
    const { url } = await start({ balance: 1 });
    await generate(url, { prompt: "A cat" });
    await generate(url, { prompt: "A dog", duration: 15 });

    const result = await call(url, "GET", "/v1/data/balance");
    expect(result.status).toBe(200);
    expect(result.json).toEqual({ balance: "0.7000" });
  });

  it("rejects with 402 when the balance is short", async () => {
    const { url } = await start({ balance: 0.15 });
    const result = await call(url, "POST", "/v1/sora/generate", { body: { prompt: "A cat", duration: 15 } });

    expect(result.status).toBe(402);
    expect(result.json).toEqual({ detail: "INSUFFICIENT_CREDITS" });
    expect((await call(url, "GET", "/v1/data/balance")).json).toEqual({ balance: "0.1500" });
  });

  it("rejects a missing token with 401", async () => {
    const { url } = await start();
    const result = await call(url, "POST", "/v1/sora/generate", { token: null, body: { prompt: "A cat" } });
    expect(result.status).toBe(401);
    expect(result.json).toEqual({ detail: "Missing credentials" });
  });

  it("rejects another scheme as missing credentials", async () => {
    const { url } = await start();
    const result = await call(url, "POST", "/v1/sora/generate", {
      token: null,
      headers: { authorization: `Basic ${TOKEN}` },
      body: { prompt: "A cat" },
    });
    expect(result.status).toBe(401);
    expect(result.json).toEqual({ detail: "Missing credentials" });
  });

  it("rejects a wrong token with 401", async () => {
    const { url } = await start();
    const result = await call(url, "POST", "/v1/sora/generate", { token: "wrong", body: { prompt: "A cat" } });
    expect(result.status).toBe(401);
    expect(result.json).toEqual({ detail: "Invalid token" });
  });

  it("checks the token before the body", async () => {
    const { url } = await start();
    const result = await call(url, "POST", "/v1/sora/generate", { token: "wrong", body: { prompt: "" } });
    expect(result.status).toBe(401);
  });

  it("rejects an empty prompt like the 422 example", async () => {
    const { url } = await start();
    const result = await call(url, "POST", "/v1/sora/generate", { body: { prompt: "" } });

    expect(result.status).toBe(422);
    expect(result.json.detail).toHaveLength(1);
    expect(result.json.detail[0]).toMatchObject(EXAMPLE_422_EMPTY_PROMPT);
  });

  it.each([
    ["missing prompt", {}, { type: "missing", loc: ["body", "prompt"], msg: "Field required" }],
    ["prompt of 4001 characters", { prompt: "x".repeat(4001) }, { type: "string_too_long", loc: ["body", "prompt"], msg: "String should have at most 4000 characters" }],
    ["numeric prompt", { prompt: 5 }, { type: "string_type", loc: ["body", "prompt"], msg: "Input should be a valid string", input: 5 }],
    ["square orientation", { prompt: "A cat", orientation: "1:1" }, { type: "literal_error", loc: ["body", "orientation"], input: "1:1" }],
    ["duration 12", { prompt: "A cat", duration: 12 }, { type: "literal_error", loc: ["body", "duration"], input: 12 }],
    ["http callback_url off this machine", { prompt: "A cat", callback_url: "http://hooks.example/hook" }, { type: "value_error", loc: ["body", "callback_url"] }],
    ["relative image_url", { prompt: "A cat", image_url: "cat.png" }, { type: "value_error", loc: ["body", "image_url"] }],
    ["text image_base64", { prompt: "A cat", image_base64: "aGVsbG8gd29ybGQh" }, { type: "value_error", loc: ["body", "image_base64"] }],
  ])("rejects %s with 422", async (_name, body, expected) => {
    const { url } = await start();
    const result = await call(url, "POST", "/v1/sora/generate", { body });
    expect(result.status).toBe(422);
    expect(result.json.detail[0]).toMatchObject(expected);
  });

  it("ignores unknown body fields like FastAPI", async () => {
    const { url } = await start();
    const result = await call(url, "POST", "/v1/sora/generate", { body: { prompt: "A cat", seed: 7 } });
    expect(result.status).toBe(201);
  });

  it("rejects invalid JSON with 422 json_invalid", async () => {
    const { url } = await start();
    const result = await call(url, "POST", "/v1/sora/generate", {
      rawBody: '{"prompt": ',
      headers: { "content-type": "application/json" },
    });
    expect(result.status).toBe(422);
    expect(result.json.detail[0]).toMatchObject({ type: "json_invalid", msg: "JSON decode error" });
  });

  it("rejects a missing body with 422", async () => {
    const { url } = await start();
    const result = await call(url, "POST", "/v1/sora/generate", { rawBody: "", headers: { "content-type": "application/json" } });
    expect(result.status).toBe(422);
    expect(result.json.detail[0]).toMatchObject({ type: "missing", loc: ["body"] });
  });

  it("rejects a binary body with 422", async () => {
    const { url } = await start();
    const result = await call(url, "POST", "/v1/sora/generate", {
      rawBody: "prompt=A cat",
      headers: { "content-type": "application/octet-stream" },
    });
    expect(result.status).toBe(422);
    expect(result.json.detail[0]).toMatchObject({ type: "model_attributes_type", loc: ["body"] });
  });

  it("rejects a __proto__ key with 400", async () => {
    const { url } = await start();
    const result = await call(url, "POST", "/v1/sora/generate", {
      rawBody: '{"prompt": "A cat", "__proto__": {"admin": true}}',
      headers: { "content-type": "application/json" },
    });
    expect(result.status).toBe(400);
  });

  it("rejects a JSON array body with 422", async () => {
    const { url } = await start();
    const result = await call(url, "POST", "/v1/sora/generate", { body: ["A cat"] });
    expect(result.status).toBe(422);
    expect(result.json.detail[0]).toMatchObject({ type: "model_attributes_type", loc: ["body"] });
  });

  it("rejects both image inputs with 400", async () => {
    const { url } = await start();
    const png = Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a, 0, 0, 0, 13]).toString("base64");
    const result = await call(url, "POST", "/v1/sora/generate", {
      body: { prompt: "A cat", image_url: "https://images.example/cat.png", image_base64: png },
    });

    expect(result.status).toBe(400);
    expect(result.json).toEqual({ detail: "Cannot provide both image_base64 and image_url" });
  });

  it("rejects image_base64 over 10 MB with 422", async () => {
    const { url } = await start();
    // 13 981 016 base64 characters decode to 10 485 762 bytes, 2 more than 10 MiB.
    const image = "A".repeat(13_981_016);
    const result = await call(url, "POST", "/v1/sora/generate", { body: { prompt: "A cat", image_base64: image } });

    expect(result.status).toBe(422);
    expect(result.json.detail[0]).toMatchObject({ type: "value_error", loc: ["body", "image_base64"] });
    expect(result.json.detail[0].input).toBeUndefined();
  });

  it("does not charge rejected requests", async () => {
    const { url } = await start({ balance: 1 });
    await call(url, "POST", "/v1/sora/generate", { body: { prompt: "" } });
    await call(url, "POST", "/v1/sora/generate", { token: "wrong", body: { prompt: "A cat" } });
    expect((await call(url, "GET", "/v1/data/balance")).json).toEqual({ balance: "1.0000" });
  });
});

describe("simulator status endpoint", () => {
  it("walks pending, processing and completed", async () => {
    let clock = START;
    const { url } = await start({ now: () => clock });
    const id = await generate(url);

    const positions: number[] = [];
    for (const offset of [0, 1_000, 2_000]) {
      clock = START + offset;
      const result = await getStatus(url, id);
      expect(result.json.status).toBe("pending");
      positions.push(result.json.progress_pos_in_queue);
    }
    expect(positions).toEqual([3, 2, 1]);

    const percents: number[] = [];
    for (const offset of [3_000, 7_500, 12_999]) {
      clock = START + offset;
      const result = await getStatus(url, id);
      expect(result.json.status).toBe("processing");
      percents.push(result.json.progress_pct);
    }
    expect(percents).toEqual([0, 45, 99]);

    clock = START + 13_000;
    const done = await getStatus(url, id);
    expect(done.json).toEqual({
      generation_id: id,
      status: "completed",
      prompt: "A beautiful sunset over the ocean",
      video_url: `${url}/videos/${id}.mp4`,
      created_at: "2025-11-24T10:00:00.000000",
      completed_at: "2025-11-24T10:00:13.000000",
      progress_pct: 100,
      progress_pos_in_queue: null,
      error_message: null,
    });
  });

  it("matches the examples' shape in every phase", async () => {
    let clock = START;
    const { url } = await start({ now: () => clock });
    const id = await generate(url);
    const failedId = await generate(url, { prompt: "A cat [fail]" });

    const pending = (await getStatus(url, id)).json;
    clock = START + 7_500;
    const processing = (await getStatus(url, id)).json;
    clock = START + 13_000;
    const completed = (await getStatus(url, id)).json;
    const failed = (await getStatus(url, failedId)).json;

    expect(shapeOf(pending)).toEqual(shapeOf(EXAMPLE_PENDING));
    expect(shapeOf(processing)).toEqual(shapeOf(EXAMPLE_PROCESSING));
    expect(shapeOf(completed)).toEqual(shapeOf(EXAMPLE_COMPLETED));
    expect(shapeOf(failed)).toEqual(shapeOf(EXAMPLE_FAILED));
    for (const status of [pending, processing, completed, failed]) {
      expect(upstreamStatusSchema.safeParse(status).success).toBe(true);
      expect(status.created_at).toMatch(RUNBLOB_TIMESTAMP);
    }
    expect(completed.completed_at).toMatch(RUNBLOB_TIMESTAMP);
  });

  it("fails a [fail] prompt with error_message", async () => {
    let clock = START;
    const { url } = await start({ now: () => clock });
    const id = await generate(url, { prompt: "A cat [fail]" });

    clock = START + 13_000;
    const result = await getStatus(url, id);
    expect(result.json.status).toBe("failed");
    expect(result.json.error_message).toBe(FAIL_MARKER_ERROR_MESSAGE);
    expect(result.json.completed_at).toBe("2025-11-24T10:00:13.000000");
    expect(result.json.video_url).toBeNull();
  });

  it("fails every generation at failureRate 1", async () => {
    let clock = START;
    const { url } = await start({ now: () => clock, failureRate: 1 });
    const id = await generate(url, { prompt: "A cat" });

    clock = START + 13_000;
    expect((await getStatus(url, id)).json.status).toBe("failed");
  });

  it("uses the injected random source for failureRate", async () => {
    let clock = START;
    const draws = [0.9, 0.1];
    const { url } = await start({ now: () => clock, failureRate: 0.5, random: () => draws.shift() ?? 0 });
    const kept = await generate(url, { prompt: "A cat" });
    const failed = await generate(url, { prompt: "A dog" });

    clock = START + 13_000;
    expect((await getStatus(url, kept)).json.status).toBe("completed");
    expect((await getStatus(url, failed)).json.status).toBe("failed");
  });

  it("completes on the real clock", async () => {
    const { url } = await start({ queueStart: 2, queueMs: 30, processingMs: 30 });
    const id = await generate(url);

    const seen = new Set<string>();
    const deadline = Date.now() + 5_000;
    let status = "pending";
    while (status !== "completed" && Date.now() < deadline) {
      status = (await getStatus(url, id)).json.status;
      seen.add(status);
      await new Promise((resolve) => setTimeout(resolve, 5));
    }
    expect(status).toBe("completed");
    expect([...seen].every((value) => ["pending", "processing", "completed"].includes(value))).toBe(true);
  });

  it("returns 404 for an unknown id", async () => {
    const { url } = await start();
    const result = await getStatus(url, "00000000-0000-4000-8000-000000000000");
    expect(result.status).toBe(404);
    expect(result.json).toEqual({ detail: "Generation not found" });
  });

  it("redirects a path without slash with 307", async () => {
    const { url } = await start();
    const id = await generate(url);
    const result = await call(url, "GET", `/v1/sora/generations/${id}?x=1`);

    expect(result.status).toBe(307);
    expect(result.headers.location).toBe(`${url}/v1/sora/generations/${id}/?x=1`);
  });

  it("requires the token", async () => {
    const { url } = await start();
    const id = await generate(url);
    expect((await call(url, "GET", `/v1/sora/generations/${id}/`, { token: null })).status).toBe(401);
    expect((await call(url, "GET", `/v1/sora/generations/${id}/`, { token: "wrong" })).status).toBe(401);
  });
});

describe("simulator video download", () => {
  it("serves video/mp4 for a completed generation", async () => {
    let clock = START;
    const { url } = await start({ now: () => clock });
    const id = await generate(url);
    clock = START + 13_000;
    const videoUrl: string = (await getStatus(url, id)).json.video_url;

    const response = await request(videoUrl, { dispatcher });
    const body = Buffer.from(await response.body.arrayBuffer());
    expect(response.statusCode).toBe(200);
    expect(response.headers["content-type"]).toBe("video/mp4");
    expect(body.subarray(4, 8).toString("latin1")).toBe("ftyp");
  });

  it("returns 404 before completion", async () => {
    const { url } = await start();
    const id = await generate(url);
    const result = await call(url, "GET", `/videos/${id}.mp4`, { token: null });
    expect(result.status).toBe(404);
  });

  it("uses the configured baseUrl", async () => {
    let clock = START;
    const { url } = await start({ now: () => clock, baseUrl: "http://127.0.0.1:9/" });
    const id = await generate(url);
    clock = START + 13_000;
    expect((await getStatus(url, id)).json.video_url).toBe(`http://127.0.0.1:9/videos/${id}.mp4`);
  });
});

describe("simulator list endpoint", () => {
  it("lists newest first with list-item fields", async () => {
    let clock = START;
    const { url } = await start({ now: () => clock });
    const first = await generate(url, { prompt: "first" });
    clock += 1_000;
    const second = await generate(url, { prompt: "second" });
    clock += 1_000;
    const third = await generate(url, { prompt: "third" });

    const result = await call(url, "GET", "/v1/sora/generations");
    expect(result.status).toBe(200);
    expect(result.json.map((item: { generation_id: string }) => item.generation_id)).toEqual([third, second, first]);
    expect(shapeOf(result.json[0])).toEqual(shapeOf({ ...EXAMPLE_LIST_ITEM, video_url: null, completed_at: null }));
    expect(upstreamListSchema.safeParse(result.json).success).toBe(true);
  });

  it("orders equal timestamps by creation", async () => {
    const { url } = await start({ now: () => START });
    const first = await generate(url, { prompt: "first" });
    const second = await generate(url, { prompt: "second" });

    const result = await call(url, "GET", "/v1/sora/generations");
    expect(result.json.map((item: { generation_id: string }) => item.generation_id)).toEqual([second, first]);
  });

  it("applies limit and offset", async () => {
    let clock = START;
    const { url } = await start({ now: () => clock });
    const ids: string[] = [];
    for (let index = 0; index < 5; index += 1) {
      ids.push(await generate(url, { prompt: `prompt ${index}` }));
      clock += 1_000;
    }

    const result = await call(url, "GET", "/v1/sora/generations?limit=2&offset=1");
    expect(result.json.map((item: { generation_id: string }) => item.generation_id)).toEqual([ids[3], ids[2]]);
  });

  it("defaults to 20 items", async () => {
    const { simulator, url } = await start();
    for (let index = 0; index < 25; index += 1) simulator.control.create();

    const result = await call(url, "GET", "/v1/sora/generations");
    expect(result.json).toHaveLength(20);
  });

  it.each([
    ["limit=0", { type: "greater_than_equal", loc: ["query", "limit"], input: "0" }],
    ["limit=101", { type: "less_than_equal", loc: ["query", "limit"], input: "101" }],
    ["limit=abc", { type: "int_parsing", loc: ["query", "limit"], input: "abc" }],
    ["offset=-1", { type: "greater_than_equal", loc: ["query", "offset"], input: "-1" }],
  ])("rejects %s with 422", async (query, expected) => {
    const { url } = await start();
    const result = await call(url, "GET", `/v1/sora/generations?${query}`);
    expect(result.status).toBe(422);
    expect(result.json.detail[0]).toMatchObject(expected);
  });

  it("redirects a trailing slash with 307", async () => {
    const { url } = await start();
    const result = await call(url, "GET", "/v1/sora/generations/?limit=5");
    expect(result.status).toBe(307);
    expect(result.headers.location).toBe(`${url}/v1/sora/generations?limit=5`);
  });
});

describe("simulator stats", () => {
  it("counts requests per route and per generation", async () => {
    const { simulator, url } = await start();
    const id = await generate(url);
    await getStatus(url, id);
    await getStatus(url, id);
    await call(url, "GET", "/v1/sora/generations");
    await call(url, "GET", "/v1/data/balance");

    expect(simulator.stats.requests("generate")).toBe(1);
    expect(simulator.stats.requests("status")).toBe(2);
    expect(simulator.stats.requests("list")).toBe(1);
    expect(simulator.stats.requests("balance")).toBe(1);
    expect(simulator.stats.statusRequests(id)).toBe(2);
  });

  it("counts rejected requests", async () => {
    const { simulator, url } = await start();
    await call(url, "GET", "/v1/data/balance", { token: "wrong" });
    await getStatus(url, "00000000-0000-4000-8000-000000000000");
    expect(simulator.stats.requests("balance")).toBe(1);
    expect(simulator.stats.statusRequests("00000000-0000-4000-8000-000000000000")).toBe(1);
  });

  it("does not count slash redirects", async () => {
    const { simulator, url } = await start();
    await call(url, "GET", "/v1/sora/generations/00000000-0000-4000-8000-000000000000");
    expect(simulator.stats.requests("status")).toBe(0);
  });

  it("resets all counters", async () => {
    const { simulator, url } = await start();
    const id = await generate(url);
    await getStatus(url, id);
    simulator.stats.reset();

    expect(simulator.stats.snapshot()).toEqual({
      requests: { generate: 0, status: 0, list: 0, balance: 0, video: 0 },
      status_requests_by_generation: {},
    });
  });

  it("serves and resets stats over HTTP", async () => {
    const { url } = await start();
    const id = await generate(url);
    await getStatus(url, id);

    const stats = await call(url, "GET", "/__simulator/stats");
    expect(stats.status).toBe(200);
    expect(stats.json.requests.generate).toBe(1);
    expect(stats.json.status_requests_by_generation).toEqual({ [id]: 1 });

    const reset = await call(url, "POST", "/__simulator/stats/reset");
    expect(reset.status).toBe(204);
    expect((await call(url, "GET", "/__simulator/stats")).json.requests.generate).toBe(0);
  });

  it("requires the token on control routes", async () => {
    const { url } = await start();
    expect((await call(url, "GET", "/__simulator/stats", { token: null })).json).toEqual({ detail: "Missing credentials" });
    expect((await call(url, "GET", "/__simulator/stats", { token: "wrong" })).status).toBe(401);
  });
});

describe("simulator faults", () => {
  it("responds 429 with Retry-After", async () => {
    const { simulator, url } = await start();
    const id = await generate(url);
    simulator.control.injectFaults("status", [{ status: 429, headers: { "Retry-After": "7" } }]);

    const result = await getStatus(url, id);
    expect(result.status).toBe(429);
    expect(result.headers["retry-after"]).toBe("7");
    expect(result.json).toEqual({ detail: "Too Many Requests" });
  });

  it("responds 502 with an HTML page", async () => {
    const { simulator, url } = await start();
    simulator.control.injectFaults("balance", [{ status: 502, body: "<html><h1>502 Bad Gateway</h1></html>", contentType: "text/html" }]);

    const result = await call(url, "GET", "/v1/data/balance");
    expect(result.status).toBe(502);
    expect(result.headers["content-type"]).toMatch(/^text\/html/);
    expect(result.text).toBe("<html><h1>502 Bad Gateway</h1></html>");
  });

  it("uses faults in order, one per request", async () => {
    const { simulator, url } = await start();
    simulator.control.injectFaults("balance", [{ status: 503 }, { status: 500 }]);

    const statuses: number[] = [];
    for (let index = 0; index < 3; index += 1) statuses.push((await call(url, "GET", "/v1/data/balance")).status);
    expect(statuses).toEqual([503, 500, 200]);
  });

  it("applies faults only to their route", async () => {
    const { simulator, url } = await start();
    simulator.control.injectFaults("list", [{ status: 503 }]);

    expect((await call(url, "GET", "/v1/data/balance")).status).toBe(200);
    expect((await call(url, "GET", "/v1/sora/generations")).status).toBe(503);
  });

  it("responds before authentication", async () => {
    const { simulator, url } = await start();
    simulator.control.injectFaults("balance", [{ status: 503 }]);
    expect((await call(url, "GET", "/v1/data/balance", { token: null })).status).toBe(503);
  });

  it("counts faulted requests in stats", async () => {
    const { simulator, url } = await start();
    const id = await generate(url);
    simulator.control.injectFaults("status", [{ status: 503 }, { reset: true }]);

    expect((await getStatus(url, id)).status).toBe(503);
    await expect(getStatus(url, id)).rejects.toThrow();
    expect(simulator.stats.statusRequests(id)).toBe(2);
  });

  it("delays a response", async () => {
    const { simulator, url } = await start();
    simulator.control.injectFaults("balance", [{ delayMs: 200 }]);

    const startedAt = performance.now();
    const result = await call(url, "GET", "/v1/data/balance");
    expect(result.status).toBe(200);
    expect(performance.now() - startedAt).toBeGreaterThanOrEqual(150);
  });

  it("resets the connection", async () => {
    const { simulator, url } = await start();
    simulator.control.injectFaults("balance", [{ reset: true }]);

    // resetAndDestroy() sends a TCP RST, which the client reads as ECONNRESET rather than a clean close.
    await expect(call(url, "GET", "/v1/data/balance")).rejects.toMatchObject({ code: "ECONNRESET" });
    expect((await call(url, "GET", "/v1/data/balance")).status).toBe(200);
  });

  it("adds persistent latency", async () => {
    const { simulator, url } = await start();
    simulator.control.setLatency(150);

    for (let index = 0; index < 2; index += 1) {
      const startedAt = performance.now();
      await call(url, "GET", "/v1/data/balance");
      expect(performance.now() - startedAt).toBeGreaterThanOrEqual(100);
    }
    simulator.control.setLatency(0);
  });

  it("ends pending delays on close", async () => {
    const { simulator, url } = await start();
    simulator.control.injectFaults("balance", [{ delayMs: 60_000 }]);

    const pending = call(url, "GET", "/v1/data/balance");
    await new Promise((resolve) => setTimeout(resolve, 50));
    const startedAt = performance.now();
    await simulator.close();
    const result = await pending;

    expect(result.status).toBe(200);
    expect(performance.now() - startedAt).toBeLessThan(10_000);
  });

  it("rejects an invalid fault", () => {
    const simulator = createSimulator({ token: TOKEN });
    expect(() => simulator.control.injectFaults("status", [{ status: 99 }])).toThrow();
  });
});

describe("simulator control", () => {
  it("creates a generation without charging", async () => {
    let clock = START;
    const { simulator, url } = await start({ now: () => clock, balance: 1 });
    const id = simulator.control.create({ outcome: "failed", errorMessage: "Blocked" }, "made elsewhere");

    clock = START + 13_000;
    const result = await getStatus(url, id);
    expect(result.json.prompt).toBe("made elsewhere");
    expect(result.json.error_message).toBe("Blocked");
    expect((await call(url, "GET", "/v1/data/balance")).json).toEqual({ balance: "1.0000" });
  });

  it("pins a forced status with extra fields", async () => {
    let clock = START;
    const { simulator, url } = await start({ now: () => clock });
    const id = await generate(url);
    simulator.control.force(id, { status: "processing", progress_pct: 50, eta_seconds: 30 });

    clock = START + 60_000;
    const result = await getStatus(url, id);
    expect(result.json.status).toBe("processing");
    expect(result.json.progress_pct).toBe(50);
    expect(result.json.eta_seconds).toBe(30);
  });

  it("forces an unknown status value", async () => {
    const { simulator, url } = await start();
    const id = await generate(url);
    simulator.control.force(id, { status: "upscaling" });

    const result = await getStatus(url, id);
    expect(result.json.status).toBe("upscaling");
    expect(result.json.progress_pos_in_queue).toBeNull();
  });

  it("finishes a generation early", async () => {
    let clock = START;
    const { simulator, url } = await start({ now: () => clock });
    const completed = await generate(url);
    const failed = await generate(url);

    clock = START + 500;
    simulator.control.finish(completed, "completed");
    simulator.control.finish(failed, "failed", "Stopped by test");

    const done = (await getStatus(url, completed)).json;
    expect(done.status).toBe("completed");
    expect(done.completed_at).toBe("2025-11-24T10:00:00.500000");
    expect(done.video_url).toBe(`${url}/videos/${completed}.mp4`);
    expect((await getStatus(url, failed)).json.error_message).toBe("Stopped by test");
  });

  it("releases a forced status", async () => {
    const { simulator, url } = await start({ now: () => START });
    const id = await generate(url);
    simulator.control.finish(id, "completed");
    simulator.control.release(id);
    expect((await getStatus(url, id)).json.status).toBe("pending");
  });

  it("throws for an unknown id", () => {
    const simulator = createSimulator({ token: TOKEN });
    expect(() => simulator.control.force("nope", { status: "failed" })).toThrow(/not found/);
  });

  it("sets the balance", async () => {
    const { simulator, url } = await start();
    simulator.control.setBalance(0.1);
    expect((await call(url, "POST", "/v1/sora/generate", { body: { prompt: "A cat" } })).status).toBe(402);
  });

  it("validates options", () => {
    expect(() => createSimulator({ token: "" })).toThrow(/token/);
    expect(() => createSimulator({ token: TOKEN, failureRate: 2 })).toThrow(/failureRate/);
    expect(() => createSimulator({ token: TOKEN, queueStart: 0 })).toThrow(/queueStart/);
  });
});

describe("simulator control over HTTP", () => {
  it("creates, forces, finishes and releases", async () => {
    let clock = START;
    const { url } = await start({ now: () => clock });

    const created = await call(url, "POST", "/__simulator/generations", {
      body: { prompt: "made elsewhere", plan: { queueMs: 0, processingMs: 1_000 } },
    });
    expect(created.status).toBe(201);
    const id: string = created.json.generation_id;
    expect((await getStatus(url, id)).json.status).toBe("processing");

    const forced = await call(url, "POST", `/__simulator/generations/${id}/force`, { body: { progress_pct: "45", note: "x" } });
    expect(forced.status).toBe(200);
    expect((await getStatus(url, id)).json).toMatchObject({ progress_pct: "45", note: "x" });

    const finished = await call(url, "POST", `/__simulator/generations/${id}/finish`, {
      body: { outcome: "failed", error_message: "Stopped" },
    });
    expect(finished.json).toMatchObject({ status: "failed", error_message: "Stopped" });

    const released = await call(url, "DELETE", `/__simulator/generations/${id}/force`);
    expect(released.status).toBe(204);
    clock = START + 1_000;
    expect((await getStatus(url, id)).json.status).toBe("completed");
  });

  it("returns 404 for an unknown generation", async () => {
    const { url } = await start();
    const result = await call(url, "POST", "/__simulator/generations/nope/finish", { body: { outcome: "completed" } });
    expect(result.status).toBe(404);
    expect(result.json).toEqual({ detail: "Generation not found" });
  });

  it("reads a status without counting it", async () => {
    const { simulator, url } = await start();
    const id = await generate(url);
    const result = await call(url, "GET", `/__simulator/generations/${id}`);

    expect(result.json.status).toBe("pending");
    expect(simulator.stats.requests("status")).toBe(0);
  });

  it("queues, lists and clears faults", async () => {
    const { url } = await start();
    const queued = await call(url, "POST", "/__simulator/faults", {
      body: { route: "balance", faults: [{ status: 429, headers: { "Retry-After": "1" } }, { delayMs: 10 }] },
    });
    expect(queued.status).toBe(200);
    expect(queued.json.pending.balance).toBe(2);

    expect((await call(url, "GET", "/v1/data/balance")).status).toBe(429);
    expect((await call(url, "GET", "/__simulator/faults")).json.pending.balance).toBe(1);

    expect((await call(url, "DELETE", "/__simulator/faults")).status).toBe(204);
    expect((await call(url, "GET", "/__simulator/faults")).json.pending.balance).toBe(0);
  });

  it.each([
    ["unknown route", { route: "upload", faults: [{ status: 503 }] }],
    ["empty fault list", { route: "status", faults: [] }],
    ["status below 200", { route: "status", faults: [{ status: 101 }] }],
    ["header with a line break", { route: "status", faults: [{ status: 503, headers: { "Retry-After": "1\r\nX: y" } }] }],
    ["mixed fault kinds", { route: "status", faults: [{ status: 503, delayMs: 5 }] }],
  ])("rejects a fault body with %s", async (_name, body) => {
    const { url } = await start();
    const result = await call(url, "POST", "/__simulator/faults", { body });
    expect(result.status).toBe(422);
    expect(result.json.detail.length).toBeGreaterThan(0);
  });

  it("sets latency and balance", async () => {
    const { simulator, url } = await start();
    expect((await call(url, "POST", "/__simulator/latency", { body: { ms: 0 } })).status).toBe(204);
    expect((await call(url, "POST", "/__simulator/latency", { body: { ms: -1 } })).status).toBe(422);

    const balance = await call(url, "POST", "/__simulator/balance", { body: { balance: 2.5 } });
    expect(balance.json).toEqual({ balance: "2.5000" });
    expect(simulator.stats.requests("balance")).toBe(0);
  });
});
