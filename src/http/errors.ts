/**
 * Error responses in Runblob's shape, so a client written for Runblob reads the
 * relay's errors the same way: `{"detail": "..."}`, or for request
 * validation (422) `{"detail": [{"type", "loc", "msg"}]}`.
 */
import type { FastifyError, FastifyReply, FastifyRequest } from "fastify";
import { hasZodFastifySchemaValidationErrors } from "fastify-type-provider-zod";
import { UpstreamError } from "../upstream/errors.js";
import { UpstreamUnavailableError } from "../upstream/upstream-gateway.js";
import { StoreUnavailableError } from "../watch/status-reader.js";
import type { RepeatLimiter } from "../logging/repeat-limiter.js";
import type { RejectionReason } from "../metrics/relay-metrics.js";
import type { ValidationIssue } from "../wire/upstream.js";

const LOCATION_BY_CONTEXT: Record<string, string> = {
  body: "body",
  querystring: "query",
  params: "path",
  headers: "header",
};

/** FastAPI's error type names for the zod issue codes, so `type` reads as Runblob's own. */
function issueType(code: string, params: Record<string, unknown>): string {
  switch (code) {
    case "invalid_type":
      return params.input === undefined ? "missing" : `${String(params.expected)}_type`;
    case "too_small":
      return params.origin === "string" ? "string_too_short" : "greater_than_equal";
    case "too_big":
      return params.origin === "string" ? "string_too_long" : "less_than_equal";
    case "invalid_value":
    case "invalid_union":
      return "enum";
    case "unrecognized_keys":
      return "extra_forbidden";
    case "invalid_format":
      return params.format === "uuid" ? "uuid_parsing" : "string_pattern_mismatch";
    default:
      return "value_error";
  }
}

/** The request part a validation context names, to tell a missing field from a mistyped one. */
function validatedPart(request: FastifyRequest | undefined, context: string | undefined): unknown {
  if (request === undefined) return undefined;
  if (context === "querystring") return request.query;
  if (context === "params") return request.params;
  if (context === "headers") return request.headers;
  return request.body;
}

function valueAt(root: unknown, path: string[]): unknown {
  let value = root;
  for (const key of path) {
    if (typeof value !== "object" || value === null) return undefined;
    value = (value as Record<string, unknown>)[key];
  }
  return value;
}

export function validationDetail(error: FastifyError, request?: FastifyRequest): ValidationIssue[] {
  const location = LOCATION_BY_CONTEXT[error.validationContext ?? "body"] ?? "body";
  const part = validatedPart(request, error.validationContext);
  if (!hasZodFastifySchemaValidationErrors(error)) {
    return [{ type: "value_error", loc: [location], msg: error.message }];
  }
  return error.validation.flatMap((issue) => {
    const params = issue.params as Record<string, unknown>;
    const path = issue.instancePath.split("/").filter((part) => part !== "");
    // Unknown keys are reported once per key, each at its own location.
    if (issue.keyword === "unrecognized_keys" && Array.isArray(params.keys)) {
      return (params.keys as string[]).map((key) => ({
        type: "extra_forbidden",
        loc: [location, ...path, key],
        msg: `unknown field ${JSON.stringify(key)}: remove it`,
      }));
    }
    // zod leaves the input out of its issues, so presence is read from the request itself.
    const present = valueAt(part, path) !== undefined;
    return [{ type: issueType(issue.keyword, { ...params, input: present ? true : undefined }), loc: [location, ...path], msg: issue.message ?? "invalid value" }];
  });
}

/** Why each request was rejected, keyed by its response and read by the metrics hook once the response is sent. */
const rejections = new WeakMap<object, RejectionReason>();

/** Marks a request as rejected, for relay_rejected_requests_total. */
export function markRejected(reply: FastifyReply, reason: RejectionReason): void {
  rejections.set(reply.raw, reason);
}

export function rejectionOf(reply: FastifyReply): RejectionReason | undefined {
  return rejections.get(reply.raw);
}

/** Maps the status code of an error response to its rejection reason, or undefined for the relay's own failures (500). */
export function rejectionForStatus(statusCode: number): RejectionReason | undefined {
  switch (statusCode) {
    case 400:
    case 415:
    case 422:
    case 426:
      return "validation";
    case 404:
      return "not_found";
    case 413:
      return "body_too_large";
    case 401:
      return "unauthenticated";
    case 403:
      return "forbidden_origin";
    case 429:
      return "rate_limited";
    case 500:
      return undefined;
    default:
      return statusCode >= 400 ? "upstream" : undefined;
  }
}

export function sendDetail(reply: FastifyReply, statusCode: number, detail: string | ValidationIssue[]): FastifyReply {
  const reason = rejectionForStatus(statusCode);
  if (reason !== undefined) markRejected(reply, reason);
  return reply.code(statusCode).type("application/json; charset=utf-8").send({ detail });
}

/**
 * Maps an UpstreamError to the response a client gets. Runblob's own 4xx
 * responses (a 404 for an unknown id, say) pass through unchanged; its outages
 * become 502 or 504, and a rejected relay token 503, with the token never named.
 */
export function sendUpstreamError(reply: FastifyReply, error: UpstreamError): FastifyReply {
  if (error.kind === "timeout") return sendDetail(reply, 504, "Runblob did not respond in time; try again shortly");
  if (error.kind === "network") return sendDetail(reply, 502, "could not reach Runblob; try again shortly");
  if (error.kind === "invalid_response") return sendDetail(reply, 502, `Runblob sent a response the relay cannot read: ${error.message}`);

  const status = error.statusCode ?? 502;
  if (status === 401 || status === 403) {
    return sendDetail(reply, 503, "the relay's upstream credentials were rejected by Runblob; the operator must set a valid RUNBLOB_TOKEN");
  }
  if (status >= 400 && status < 500) {
    const detail = typeof error.detail === "string" || Array.isArray(error.detail) ? (error.detail as string | ValidationIssue[]) : error.message;
    return sendDetail(reply, status, detail);
  }
  return sendDetail(reply, 502, `Runblob failed with HTTP ${status}; try again shortly`);
}

/**
 * Logs an upstream failure that reached a client, once per request (the
 * request logger adds its request_id). Outages repeat the same line for every
 * request, so lines are rate-limited per route and kind of failure. Runblob's
 * ordinary 4xx responses (an unknown generation, say) are the client's
 * business and logged at debug only.
 */
export function logUpstreamFailure(limiter: RepeatLimiter, request: FastifyRequest, error: UpstreamError, message: string): void {
  const rejectedToken = error.statusCode === 401 || error.statusCode === 403;
  if (error.isClientError && !rejectedToken) {
    request.log.debug({ err: error }, message);
    return;
  }
  const route = request.routeOptions.url ?? "unmatched";
  limiter.log(request.log, "warn", `upstream:${route}:${error.kind}:${error.statusCode ?? ""}`, { err: error }, message);
}

export function createErrorHandler(limiter: RepeatLimiter) {
  return function errorHandler(error: FastifyError, request: FastifyRequest, reply: FastifyReply): FastifyReply {
    if (error instanceof UpstreamError) {
      logUpstreamFailure(limiter, request, error, "upstream request failed");
      return sendUpstreamError(reply, error);
    }
    if (error instanceof UpstreamUnavailableError) {
      // Breaker open or budget spent: nothing was sent to Runblob.
      const seconds = Math.max(1, Math.ceil(error.retryInMs / 1000));
      markRejected(reply, "upstream");
      return sendDetail(reply.header("retry-after", String(seconds)), 503, `${error.message} (retry after ${seconds} s)`);
    }
    if (error instanceof StoreUnavailableError) {
      limiter.log(request.log, "error", "store-unavailable", { err: error }, "status store unreachable");
      return sendDetail(reply.header("retry-after", "1"), 503, "the relay's status store is unreachable; try again shortly");
    }
    return handleRequestError(error, request, reply);
  };
}

function handleRequestError(error: FastifyError, request: FastifyRequest, reply: FastifyReply): FastifyReply {
  if (error.validation !== undefined) return sendDetail(reply, 422, validationDetail(error, request));

  switch (error.code) {
    case "FST_ERR_CTP_INVALID_JSON_BODY":
    case "FST_ERR_CTP_EMPTY_JSON_BODY":
      return sendDetail(reply, 400, `request body is not valid JSON: ${error.message}`);
    case "FST_ERR_CTP_BODY_TOO_LARGE":
      return sendDetail(reply, 413, `request body is larger than this route accepts (${error.message})`);
    case "FST_ERR_CTP_INVALID_MEDIA_TYPE":
      return sendDetail(reply, 415, "unsupported Content-Type: send application/json");
    case "FST_ERR_CTP_INVALID_CONTENT_LENGTH":
      return sendDetail(reply, 400, "Content-Length does not match the body");
  }

  const statusCode = error.statusCode ?? 500;
  if (statusCode < 500) return sendDetail(reply, statusCode, error.message);
  request.log.error({ err: error }, "request failed");
  return sendDetail(reply, 500, "internal error in the relay; the request id in the x-request-id header identifies it in the logs");
}

export function notFoundHandler(request: FastifyRequest, reply: FastifyReply): FastifyReply {
  return sendDetail(reply, 404, `no route for ${request.method} ${(request.url.split("?")[0] ?? "").slice(0, 200)}`);
}
