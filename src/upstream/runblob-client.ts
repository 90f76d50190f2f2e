/**
 * HTTP client for Runblob's Sora API over one undici keep-alive pool.
 *
 * Invariant: the token is only ever written into the Authorization header of
 * requests to the configured origin; it is never part of an error, a log
 * field or a URL. Every response body is read to the end or destroyed, error
 * responses included, so no pooled connection is left waiting on an unread body.
 */
import { Pool, errors as undiciErrors } from "undici";
import type { Dispatcher } from "undici";
import type { Logger } from "pino";
import { UpstreamError } from "./errors.js";
import { parseRetryAfter } from "./retry-policy.js";
import { UpstreamHealth } from "./upstream-health.js";
import { statusClassOf } from "../metrics/relay-metrics.js";
import type { RelayMetrics, UpstreamRoute, UpstreamStatusClass } from "../metrics/relay-metrics.js";
import { generateResponseSchema, upstreamStatusSchema } from "../wire/upstream.js";
import type { GenerateResponse, UpstreamStatus } from "../wire/upstream.js";
import type { GenerateRequest } from "../wire/generate.js";

export interface RunblobClientOptions {
  baseUrl: string;
  token: string;
  timeoutMs: number;
  connections: number;
  logger: Logger;
  /** Counts and times every request by route and outcome; omitted, nothing is measured. */
  metrics?: Pick<RelayMetrics, "observeUpstream" | "upstreamInFlight">;
}

export interface RequestContext {
  /** Carried upstream as `X-Request-Id` so one client request can be followed across services. */
  requestId?: string;
}

/** An upstream response passed through to the client as it came (status code and JSON body). */
export interface PassthroughResponse<T = unknown> {
  statusCode: number;
  body: T;
  /** Runblob's Retry-After, in ms, when the response carried one. */
  retryAfterMs?: number;
}

/** Redirects followed on GET requests, to the same origin only. */
const MAX_REDIRECTS = 3;

const MAX_STATUS_BODY_BYTES = 1024 * 1024;
const MAX_LIST_BODY_BYTES = 16 * 1024 * 1024;

export class RunblobClient {
  /** Whether Runblob accepts the token, judged from the status codes of this client's responses. */
  readonly health: UpstreamHealth;
  readonly #pool: Pool;
  readonly #origin: string;
  readonly #authorization: string;
  readonly #timeoutMs: number;
  readonly #logger: Logger;
  readonly #metrics: RunblobClientOptions["metrics"];

  constructor(options: RunblobClientOptions) {
    const origin = new URL(options.baseUrl).origin;
    this.#origin = origin;
    this.#pool = new Pool(origin, {
      connections: options.connections,
      keepAliveTimeout: 30_000,
      headersTimeout: options.timeoutMs,
      bodyTimeout: options.timeoutMs,
      connectTimeout: Math.min(options.timeoutMs, 10_000),
    });
    this.#authorization = `Bearer ${options.token}`;
    this.#timeoutMs = options.timeoutMs;
    this.#logger = options.logger;
    this.#metrics = options.metrics;
    this.health = new UpstreamHealth(options.logger);
  }

  /** GET /v1/sora/generations/{id}/ (Runblob documents the trailing slash). */
  async getStatus(generationId: string, context: RequestContext = {}): Promise<UpstreamStatus> {
    return this.#measured("status", () => this.#getStatus(generationId, context), () => 200);
  }

  async #getStatus(generationId: string, context: RequestContext): Promise<UpstreamStatus> {
    const path = `/v1/sora/generations/${encodeURIComponent(generationId)}/`;
    const { statusCode, body, retryAfterMs } = await this.#send("GET", path, undefined, MAX_STATUS_BODY_BYTES, context);
    if (statusCode !== 200) throw httpError(statusCode, body, `status request for generation ${generationId}`, retryAfterMs);

    const parsed = upstreamStatusSchema.safeParse(body);
    if (!parsed.success) {
      throw new UpstreamError(
        "invalid_response",
        `Runblob returned a malformed status for generation ${generationId}: ${parsed.error.issues[0]?.message ?? "unexpected shape"}`,
        statusCode,
      );
    }
    return parsed.data;
  }

  /** GET /v1/sora/generations, passed through: Runblob's status code and JSON body as they came. */
  async list(query: { limit: number; offset: number }, context: RequestContext = {}): Promise<PassthroughResponse> {
    const path = `/v1/sora/generations?limit=${query.limit}&offset=${query.offset}`;
    return this.#measured("list", () => this.#send("GET", path, undefined, MAX_LIST_BODY_BYTES, context), statusCodeOf);
  }

  /**
   * POST /v1/sora/generate. Never retried: a lost response may still have
   * created (and charged for) a generation.
   */
  async generate(
    request: GenerateRequest,
    context: RequestContext = {},
  ): Promise<PassthroughResponse & { created?: GenerateResponse }> {
    return this.#measured("generate", () => this.#generate(request, context), statusCodeOf);
  }

  async #generate(request: GenerateRequest, context: RequestContext): Promise<PassthroughResponse & { created?: GenerateResponse }> {
    const upstreamResponse = await this.#send("POST", "/v1/sora/generate", JSON.stringify(request), MAX_STATUS_BODY_BYTES, context);
    if (upstreamResponse.statusCode < 200 || upstreamResponse.statusCode >= 300) return upstreamResponse;

    const created = generateResponseSchema.safeParse(upstreamResponse.body);
    if (!created.success) {
      throw new UpstreamError(
        "invalid_response",
        "Runblob accepted the generate request but its response has no generation_id",
        upstreamResponse.statusCode,
      );
    }
    return { ...upstreamResponse, created: created.data };
  }

  async close(): Promise<void> {
    await this.#pool.close();
  }

  /** Runs one request with its in-flight gauge, outcome counter and latency histogram. */
  async #measured<T>(route: UpstreamRoute, request: () => Promise<T>, statusCode: (result: T) => number): Promise<T> {
    const metrics = this.#metrics;
    if (metrics === undefined) return request();

    const started = performance.now();
    const inFlight = metrics.upstreamInFlight.labels(route);
    inFlight.inc();
    let statusClass: UpstreamStatusClass = "invalid";
    try {
      const result = await request();
      statusClass = upstreamClass(statusCode(result));
      return result;
    } catch (error) {
      statusClass = error instanceof UpstreamError ? errorClass(error) : "invalid";
      throw error;
    } finally {
      inFlight.dec();
      metrics.observeUpstream(route, statusClass, (performance.now() - started) / 1000);
    }
  }

  /**
   * Sends one request. A GET that gets 307 or 308 is sent again to the
   * new location, up to MAX_REDIRECTS times and only within Runblob's origin,
   * so the token never travels to another host.
   */
  async #send(
    method: "GET" | "POST",
    path: string,
    body: string | undefined,
    maxBodyBytes: number,
    context: RequestContext,
  ): Promise<PassthroughResponse> {
    let currentPath = path;
    for (let redirects = 0; ; redirects += 1) {
      const upstreamResponse = await this.#sendOnce(method, currentPath, body, maxBodyBytes, context);
      if (method !== "GET" || (upstreamResponse.statusCode !== 307 && upstreamResponse.statusCode !== 308) || upstreamResponse.location === undefined) return upstreamResponse;

      const target = new URL(upstreamResponse.location, this.#origin);
      if (target.origin !== this.#origin) {
        throw new UpstreamError("invalid_response", `Runblob redirected ${method} ${path} to another origin; not followed`, upstreamResponse.statusCode);
      }
      if (redirects >= MAX_REDIRECTS) {
        throw new UpstreamError("invalid_response", `Runblob redirected ${method} ${path} more than ${MAX_REDIRECTS} times`, upstreamResponse.statusCode);
      }
      currentPath = `${target.pathname}${target.search}`;
    }
  }

  async #sendOnce(
    method: "GET" | "POST",
    path: string,
    body: string | undefined,
    maxBodyBytes: number,
    context: RequestContext,
  ): Promise<PassthroughResponse & { location?: string }> {
    const headers: Record<string, string> = { authorization: this.#authorization, accept: "application/json" };
    if (body !== undefined) headers["content-type"] = "application/json";
    if (context.requestId !== undefined) headers["x-request-id"] = context.requestId;

    const started = performance.now();
    let response: Dispatcher.ResponseData;
    try {
      response = await this.#pool.request({
        method,
        path,
        headers,
        body,
        signal: AbortSignal.timeout(this.#timeoutMs),
      });
    } catch (error) {
      throw transportError(error, method, path, this.#timeoutMs);
    }
    this.health.recordResponse(response.statusCode);

    let text: string;
    try {
      text = await readLimited(response.body, maxBodyBytes);
    } catch (error) {
      throw transportError(error, method, path, this.#timeoutMs);
    }
    this.#logger.debug(
      { method, path, status_code: response.statusCode, duration_ms: Math.round(performance.now() - started) },
      "upstream request",
    );
    const retryAfterMs = parseRetryAfter(response.headers["retry-after"]);
    const location = response.headers.location;
    const redirect = (response.statusCode === 307 || response.statusCode === 308) && typeof location === "string";
    return {
      statusCode: response.statusCode,
      body: redirect ? null : parseJsonBody(text, response.statusCode, method, path, retryAfterMs),
      ...(retryAfterMs === undefined ? {} : { retryAfterMs }),
      ...(redirect ? { location } : {}),
    };
  }
}

const statusCodeOf = (upstreamResponse: PassthroughResponse) => upstreamResponse.statusCode;

function upstreamClass(statusCode: number): UpstreamStatusClass {
  const statusClass = statusClassOf(statusCode);
  return statusClass === "1xx" ? "invalid" : statusClass;
}

function errorClass(error: UpstreamError): UpstreamStatusClass {
  switch (error.kind) {
    case "timeout":
      return "timeout";
    case "network":
      return "network";
    case "invalid_response":
      return "invalid";
    case "http":
      return error.statusCode === null ? "invalid" : upstreamClass(error.statusCode);
  }
}

async function readLimited(body: Dispatcher.ResponseData["body"], maxBytes: number): Promise<string> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of body) {
    size += (chunk as Buffer).length;
    if (size > maxBytes) {
      body.destroy();
      throw new UpstreamError("invalid_response", `Runblob's response is larger than ${maxBytes} bytes`);
    }
    chunks.push(chunk as Buffer);
  }
  return Buffer.concat(chunks).toString("utf8");
}

/** JSON body, or an UpstreamError carrying the HTTP status when the body is not JSON (a CDN's HTML error page, say). */
function parseJsonBody(text: string, statusCode: number, method: string, path: string, retryAfterMs?: number): unknown {
  if (text.length === 0) return null;
  try {
    return JSON.parse(text) as unknown;
  } catch {
    const kind = statusCode >= 200 && statusCode < 300 ? "invalid_response" : "http";
    throw new UpstreamError(
      kind,
      `Runblob responded to ${method} ${path} with HTTP ${statusCode} and a body that is not JSON`,
      statusCode,
      undefined,
      { retryAfterMs },
    );
  }
}

function httpError(statusCode: number, body: unknown, what: string, retryAfterMs?: number): UpstreamError {
  const detail = typeof body === "object" && body !== null ? (body as { detail?: unknown }).detail : undefined;
  const reason = typeof detail === "string" ? `: ${detail}` : "";
  return new UpstreamError("http", `Runblob responded with HTTP ${statusCode} to the ${what}${reason}`, statusCode, detail, { retryAfterMs });
}

function transportError(error: unknown, method: string, path: string, timeoutMs: number): UpstreamError {
  if (error instanceof UpstreamError) return error;
  const timedOut =
    error instanceof undiciErrors.HeadersTimeoutError ||
    error instanceof undiciErrors.BodyTimeoutError ||
    error instanceof undiciErrors.ConnectTimeoutError ||
    (error instanceof Error && (error.name === "TimeoutError" || error.name === "AbortError"));
  if (timedOut) {
    return new UpstreamError("timeout", `Runblob did not respond to ${method} ${path} within ${timeoutMs} ms`, null, undefined, {
      cause: error,
    });
  }
  const code = (error as { code?: string }).code;
  return new UpstreamError(
    "network",
    `request to Runblob failed (${method} ${path}): ${code ?? (error as Error).message}`,
    null,
    undefined,
    { cause: error },
  );
}
