/**
 * The Runblob token is the account's money: it must never leave the relay
 * except in the Authorization header to Runblob. These tests run a busy
 * scenario at LOG_LEVEL=trace (successes, invalid input, every upstream
 * failure kind, WebSocket and SSE) and search every captured log line,
 * response body, response header and pushed frame for the token.
 */
import { randomUUID } from "node:crypto";
import { Writable } from "node:stream";
import { afterEach, describe, expect, inject, it } from "vitest";
import { ConfigError, loadConfig, redactedConfig } from "../src/config/env.js";
import { createLogger } from "../src/logging/logger.js";
import { startRelay, startSimulator } from "./support/relay-harness.js";
import type { RelayHandle, SimulatorHandle } from "./support/relay-harness.js";
import { CleanupStack, httpRequest, openProbeSse, openProbeWebSocket } from "./support/probe-clients.js";
import type { HttpOptions, SseItem, WsMessage } from "./support/probe-clients.js";
import type { Fault } from "../src/simulator/faults.js";

const cleanup = new CleanupStack();
afterEach(() => cleanup.run());

/** Returns every form in which a leaked token could show up: as is, without the simulator's prefix, and base64-encoded. */
function secretForms(secret: string): string[] {
  const forms = [secret, Buffer.from(secret).toString("base64"), Buffer.from(`Bearer ${secret}`).toString("base64")];
  const withoutPrefix = secret.replace(/^sim-/, "");
  if (withoutPrefix !== secret) forms.push(withoutPrefix);
  return forms;
}

/** Asserts that none of the captured texts contains the secret in any form; names the first text that does. */
function expectNoSecret(texts: Iterable<string>, secret: string, where: string): void {
  const forms = secretForms(secret);
  for (const text of texts) {
    const leaked = forms.find((form) => text.includes(form));
    expect(leaked, `${where} contains the secret: ${text.slice(0, 300)}`).toBeUndefined();
  }
}

/** Records every response body and header of the scenario, for the leak search. */
class ResponseRecorder {
  readonly texts: string[] = [];

  async request(url: string, options?: HttpOptions) {
    const result = await httpRequest(url, options);
    this.texts.push(result.text);
    for (const [name, value] of Object.entries(result.headers)) this.texts.push(`${name}: ${String(value)}`);
    return result;
  }
}

const html = (status: number): Fault => ({ status, body: `<html><body>${status}</body></html>`, contentType: "text/html" });
const json = (status: number, detail: string): Fault => ({ status, body: JSON.stringify({ detail }), contentType: "application/json" });

describe("the Runblob token", () => {
  it("never leaks at LOG_LEVEL=trace", async () => {
    const sim = await startSimulator({ queueStart: 1, queueMs: 600_000, processingMs: 600_000 });
    cleanup.add(() => sim.close());
    const relay = await startRelay(sim, { LOG_LEVEL: "trace", UPSTREAM_TIMEOUT_MS: "500", SSE_KEEPALIVE_MS: "1000" });
    let relayClosed = false;
    cleanup.add(() => (relayClosed ? undefined : relay.close()));
    const responses = new ResponseRecorder();
    const base = relay.baseUrl;
    const control = sim.simulator.control;

    // Upstream failures on REST routes: error pages, a reset, a timeout and rejected credentials.
    // They run before any generation is watched, because a poll would otherwise use up a queued status fault.
    const restFailures: Array<{ route: "status" | "list" | "generate"; fault: Fault; expected: number }> = [
      { route: "status", fault: html(500), expected: 502 },
      { route: "status", fault: { reset: true }, expected: 502 },
      { route: "status", fault: { delayMs: 2_000 }, expected: 504 },
      { route: "status", fault: json(401, "Invalid token"), expected: 503 },
      { route: "list", fault: json(401, "Missing credentials"), expected: 503 },
      { route: "list", fault: json(403, "Forbidden"), expected: 503 },
      { route: "generate", fault: json(401, "Invalid token"), expected: 503 },
      { route: "generate", fault: { reset: true }, expected: 502 },
      { route: "generate", fault: { delayMs: 2_000 }, expected: 502 },
    ];
    for (const { route, fault, expected } of restFailures) {
      control.injectFaults(route, [fault]);
      let url = `${base}/v1/sora/generate`;
      if (route === "status") url = `${base}/v1/sora/generations/${control.create()}`;
      if (route === "list") url = `${base}/v1/sora/generations`;
      const result = await responses.request(url, route === "generate" ? { json: { prompt: "p" } } : {});
      expect(result.status, `${route} with ${JSON.stringify(fault)}: ${result.text}`).toBe(expected);
    }

    // Successful calls on every route.
    const created = await responses.request(`${base}/v1/sora/generate`, { json: { prompt: "secret scenario" } });
    expect(created.status, created.text).toBe(201);
    const id = created.json.generation_id as string;
    expect((await responses.request(`${base}/v1/sora/generations/${id}`)).status).toBe(200);
    expect((await responses.request(`${base}/v1/sora/generations/${id}/`)).status).toBe(200);
    expect((await responses.request(`${base}/v1/sora/generations?limit=5`)).status).toBe(200);

    // Invalid input and unknown ids.
    expect((await responses.request(`${base}/v1/sora/generations/not-a-uuid`)).status).toBe(422);
    expect((await responses.request(`${base}/v1/sora/generations/${randomUUID()}`)).status).toBe(404);
    expect((await responses.request(`${base}/v1/sora/generate`, { json: { prompt: "" } })).status).toBe(422);
    expect((await responses.request(`${base}/v1/sora/generate`, { rawBody: "{", headers: { "content-type": "application/json" } })).status).toBe(400);

    // Push clients: a WebSocket and an SSE stream on the same generation.
    const socket = await openProbeWebSocket(relay.wsUrl);
    cleanup.add(() => socket.close());
    socket.sendJson({ type: "subscribe", generation_id: id });
    await socket.messages.next((message) => message.type === "status", "the first WebSocket status");
    socket.sendText("not json");
    await socket.messages.next((message) => message.code === "invalid_message", "invalid_message");
    socket.sendJson({ type: "subscribe", generation_id: randomUUID() });
    await socket.messages.next((message) => message.code === "not_found", "not_found");

    const stream = await openProbeSse(`${base}/v1/sora/generations/${id}/events`);
    cleanup.add(() => stream.close());
    await stream.items.next((item) => item.kind === "event" && item.event === "status", "the first SSE status");
    await stream.items.next((item) => item.kind === "comment", "a keep-alive comment");

    // Upstream failures while polling reach both push clients; a 401 among them.
    control.injectFaults("status", [json(401, "Invalid token"), html(503), { reset: true }]);
    await socket.messages.next((message) => message.code === "upstream_error", "upstream_error over WebSocket");
    await stream.items.next((item) => item.kind === "event" && item.event === "error", "event error over SSE");
    control.finish(id, "completed");
    await socket.messages.next((message) => message.type === "status" && (message.generation as { status: string }).status === "completed", "the final WebSocket status");
    await stream.ended;

    // Shutdown logs count too.
    relayClosed = true;
    await relay.close();

    expect(relay.logs.length).toBeGreaterThan(20);
    // The relay writes nothing at trace level itself; debug lines prove the verbose levels were on.
    expect(relay.logs.some((line) => line.includes('"level":20') && line.includes("upstream request"))).toBe(true);
    expect(relay.logs.some((line) => line.includes("upstream request failed"))).toBe(true);
    expectNoSecret(relay.logs, sim.token, "a log line");
    expectNoSecret(responses.texts, sim.token, "a response");
    expectNoSecret(socket.messages.items.map((message: WsMessage) => JSON.stringify(message)), sim.token, "a WebSocket frame");
    expectNoSecret(stream.items.items.map((item: SseItem) => JSON.stringify(item)), sim.token, "an SSE item");
  });
});

describe("client credentials", () => {
  it("never reach the logs", async () => {
    const sim = await startSimulator({ queueStart: 1, queueMs: 600_000, processingMs: 600_000 });
    cleanup.add(() => sim.close());
    const relay = await startRelay(sim, { LOG_LEVEL: "trace" });
    cleanup.add(() => relay.close());
    const id = sim.simulator.control.create();
    const headers = {
      authorization: "Bearer client-bearer-secret",
      cookie: "session=client-cookie-secret",
      "x-api-key": "client-api-key-secret",
    };

    await httpRequest(`${relay.baseUrl}/v1/sora/generations/${id}?token=client-query-secret`, { headers });
    await httpRequest(`${relay.baseUrl}/v1/sora/generate?token=client-query-secret`, { headers, json: { prompt: "p" } });
    await httpRequest(`${relay.baseUrl}/no/such/route?token=client-query-secret`, { headers });
    const socket = await openProbeWebSocket(`${relay.wsUrl}?token=client-query-secret`);
    cleanup.add(() => socket.close());
    socket.sendJson({ type: "subscribe", generation_id: id });
    await socket.messages.next((message) => message.type === "status", "the first WebSocket status");

    expect(relay.logs.some((line) => line.includes("/v1/sora/generations/"))).toBe(true);
    for (const secret of ["client-bearer-secret", "client-cookie-secret", "client-api-key-secret", "client-query-secret"]) {
      expectNoSecret(relay.logs, secret, "a log line");
    }
  });
});

describe("configuration secrets", () => {
  const token = "rb-live-token-0123456789abcdef";
  const redisPassword = "redis-password-fedcba9876543210";
  const env = {
    NODE_ENV: "test",
    RUNBLOB_TOKEN: token,
    REDIS_URL: `redis://default:${redisPassword}@127.0.0.1:6379/0`,
    RUNBLOB_BASE_URL: "http://127.0.0.1:9",
  };

  it("redactedConfig hides RUNBLOB_TOKEN and REDIS_URL", () => {
    const redacted = redactedConfig(loadConfig(env));
    expect(redacted.RUNBLOB_TOKEN).toBe("[redacted]");
    expect(redacted.REDIS_URL).toBe("[redacted]");
    expect(redacted.RUNBLOB_BASE_URL).toBe("http://127.0.0.1:9");
    expectNoSecret([JSON.stringify(redacted)], token, "the redacted config");
    expectNoSecret([JSON.stringify(redacted)], redisPassword, "the redacted config");
  });

  it("redactedConfig leaves unset secrets unset", () => {
    const redacted = redactedConfig(loadConfig({ NODE_ENV: "test" }));
    expect(redacted.RUNBLOB_TOKEN).toBeUndefined();
    expect(redacted.REDIS_URL).toBeUndefined();
  });

  it("stay out of the start-up log", () => {
    const lines: string[] = [];
    const destination = new Writable({
      write(chunk, _encoding, callback) {
        lines.push(String(chunk));
        callback();
      },
    });
    const logger = createLogger({ level: "trace", nodeEnv: "test", destination });
    const config = loadConfig(env);

    // The same call as the entry point's start-up line.
    logger.info({ config: redactedConfig(config) }, "starting runblob-relay");
    // The logger also redacts the secrets' names at the top level, should the config ever be logged whole.
    logger.info(config, "configuration");

    expect(lines).toHaveLength(2);
    expect(lines[0]).toContain('"RUNBLOB_TOKEN":"[redacted]"');
    expect(lines[0]).toContain('"REDIS_URL":"[redacted]"');
    expectNoSecret(lines, token, "a log line");
    expectNoSecret(lines, redisPassword, "a log line");
  });

  it("stay hidden in configuration errors", () => {
    const shortToken = "abc1234";
    const badRedisUrl = `http://default:${redisPassword}@127.0.0.1:6379`;
    let error: unknown;
    try {
      loadConfig({ NODE_ENV: "test", RUNBLOB_TOKEN: shortToken, REDIS_URL: badRedisUrl });
    } catch (caught) {
      error = caught;
    }
    expect(error).toBeInstanceOf(ConfigError);
    const problems = (error as ConfigError).problems;
    expect(problems).toEqual(
      expect.arrayContaining([expect.stringMatching(/^RUNBLOB_TOKEN=\(value hidden\): /), expect.stringMatching(/^REDIS_URL=\(value hidden\): /)]),
    );
    expectNoSecret([(error as ConfigError).message], shortToken, "the configuration error");
    expectNoSecret([(error as ConfigError).message], redisPassword, "the configuration error");
  });

  it("keep a Redis password out of logs", async () => {
    const sim = await startSimulator();
    cleanup.add(() => sim.close());
    const redisUrl = new URL(inject("redisUrl"));
    redisUrl.password = redisPassword;
    const relay = await startRelay(sim, {
      LOG_LEVEL: "trace",
      REDIS_URL: redisUrl.toString(),
      REDIS_KEY_PREFIX: `secrets-${randomUUID().slice(0, 8)}:`,
    });
    cleanup.add(() => relay.close());

    const id = sim.simulator.control.create();
    const status = await httpRequest(`${relay.baseUrl}/v1/sora/generations/${id}`);
    expect(status.status, status.text).toBe(200);
    const ready = await httpRequest(`${relay.baseUrl}/readyz`);
    expectNoSecret([ready.text], redisPassword, "the readiness answer");
    expectNoSecret(relay.logs, redisPassword, "a log line");
  });
});
