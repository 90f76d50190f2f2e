/**
 * Fault injection: responses that a real Runblob behind a CDN can send besides
 * its documented ones, such as 429 with Retry-After, a 502 HTML page, a 503, a
 * late response or a connection reset. Faults are queued per route, and each
 * request uses up one.
 */
import { STATUS_CODES } from "node:http";
import { setTimeout as sleep } from "node:timers/promises";
import type { FastifyReply, FastifyRequest } from "fastify";
import { z } from "zod";
import { ROUTE_KEYS, type RouteKey } from "./stats.js";

/** A delay in ms, of a `delayMs` fault or of the persistent latency: at most 10 minutes. */
export const delayMsSchema = z.number().int().min(0).max(600_000);

const HEADER_NAME = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/;
// Visible ASCII, space, tab and obs-text; CR and LF would split the header.
const HEADER_VALUE = /^[\t\x20-\x7e\x80-\xff]*$/;

const headerMapSchema = z.record(
  z.string().regex(HEADER_NAME, "header name must be an HTTP token, e.g. Retry-After"),
  z.string().regex(HEADER_VALUE, "header value must not contain control characters such as CR or LF"),
);

/** A fault that responds with this status, body and headers instead of the real response. */
export const statusFaultSchema = z.strictObject({
  status: z.number().int().min(200).max(599),
  /** Body sent as is. Without it, the body is the JSON `{"detail": "<reason phrase>"}`. */
  body: z.string().optional(),
  /** Defaults to `application/json` without `body` and to `text/plain; charset=utf-8` with it. */
  contentType: z.string().min(1).regex(HEADER_VALUE).optional(),
  headers: headerMapSchema.optional(),
});

/** A fault that waits `delayMs` and then lets the request go on normally. */
export const delayFaultSchema = z.strictObject({
  delayMs: delayMsSchema,
});

/** A fault that resets the TCP connection without a response. */
export const resetFaultSchema = z.strictObject({
  reset: z.literal(true),
});

export const faultSchema = z.union([statusFaultSchema, delayFaultSchema, resetFaultSchema]);
export type Fault = z.infer<typeof faultSchema>;
export type StatusFault = z.infer<typeof statusFaultSchema>;

/** Body of `POST /__simulator/faults`. */
export const injectFaultsBodySchema = z.strictObject({
  route: z.enum(ROUTE_KEYS),
  faults: z.array(faultSchema).min(1),
});

/** Faults waiting per route, used in order, one per matching request. */
export class FaultQueues {
  private readonly queues = new Map<RouteKey, Fault[]>();

  add(route: RouteKey, faults: readonly Fault[]): void {
    const queue = this.queues.get(route) ?? [];
    queue.push(...faults);
    this.queues.set(route, queue);
  }

  /** Removes and returns the next fault for `route`, or undefined when none is queued. */
  take(route: RouteKey): Fault | undefined {
    return this.queues.get(route)?.shift();
  }

  /** Drops the queued faults of one route, or of every route when `route` is undefined. */
  clear(route?: RouteKey): void {
    if (route === undefined) this.queues.clear();
    else this.queues.delete(route);
  }

  /** Returns the number of faults still queued per route. */
  pending(): Record<RouteKey, number> {
    const counts = { generate: 0, status: 0, list: 0, balance: 0, video: 0 };
    for (const [route, queue] of this.queues) counts[route] = queue.length;
    return counts;
  }
}

/** Waits `ms`, or less when `signal` aborts (the simulator is closing). */
export async function waitUnlessAborted(ms: number, signal: AbortSignal): Promise<void> {
  if (ms <= 0 || signal.aborted) return;
  try {
    await sleep(ms, undefined, { signal });
  } catch (error) {
    if (!signal.aborted) throw error;
  }
}

function sendStatusFault(fault: StatusFault, reply: FastifyReply): FastifyReply {
  reply.code(fault.status);
  if (fault.headers !== undefined) reply.headers(fault.headers);

  if (fault.body === undefined) {
    const detail = STATUS_CODES[fault.status] ?? "Simulated fault";
    return reply.type(fault.contentType ?? "application/json").send(JSON.stringify({ detail }));
  }
  return reply.type(fault.contentType ?? "text/plain; charset=utf-8").send(fault.body);
}

/**
 * Applies one fault to a request from an `onRequest` hook.
 * Returns true when the fault sent the response or dropped the connection, and
 * false when the request goes on to authentication and the handler.
 */
export async function applyFault(
  fault: Fault,
  request: FastifyRequest,
  reply: FastifyReply,
  signal: AbortSignal,
): Promise<boolean> {
  if ("delayMs" in fault) {
    await waitUnlessAborted(fault.delayMs, signal);
    return false;
  }

  if ("reset" in fault) {
    // hijack() stops Fastify from writing a response to the destroyed socket.
    reply.hijack();
    request.raw.socket.resetAndDestroy();
    return true;
  }

  sendStatusFault(fault, reply);
  return true;
}
