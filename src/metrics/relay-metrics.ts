/**
 * The relay's Prometheus metrics, all in one registry per relay instance, so
 * several relays in one process (tests) never share or collide on a metric.
 *
 * Label values come from small fixed sets (routes, status classes,
 * transports, reasons): never an id or anything a client sent.
 */
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from "prom-client";

export const UPSTREAM_ROUTES = ["status", "list", "generate"] as const;
export type UpstreamRoute = (typeof UPSTREAM_ROUTES)[number];

/** Outcome of one upstream request: the HTTP status class, or why no usable response came. */
export const UPSTREAM_STATUS_CLASSES = ["2xx", "3xx", "4xx", "5xx", "timeout", "network", "invalid"] as const;
export type UpstreamStatusClass = (typeof UPSTREAM_STATUS_CLASSES)[number];

export const TRANSPORTS = ["websocket", "sse"] as const;
export type Transport = (typeof TRANSPORTS)[number];

export const PUSH_MESSAGE_TYPES = ["status", "timeout", "error", "upstream"] as const;
export type PushMessageType = (typeof PUSH_MESSAGE_TYPES)[number];

export const REJECTION_REASONS = [
  "validation",
  "body_too_large",
  "rate_limited",
  "too_many_subscriptions",
  "not_found",
  "upstream",
  "unauthenticated",
  "forbidden_origin",
] as const;
export type RejectionReason = (typeof REJECTION_REASONS)[number];

/** Upstream latency buckets in seconds: Runblob responds in tens of ms, and UPSTREAM_TIMEOUT_MS defaults to 10 s. */
const UPSTREAM_BUCKETS = [0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30];
/** Push latency buckets in seconds, from the poll response to the write on the subscriber's socket. */
const PUSH_BUCKETS = [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5];
const HTTP_BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];

/** The push counters of one transport, with their labels bound once so the write path does no label lookup. */
export interface TransportMetrics {
  messages: Record<PushMessageType, Counter.Internal>;
  bytes: Counter.Internal;
  conflated: Counter.Internal;
  dropped: Counter.Internal;
  slowConsumerDisconnects: Counter.Internal;
  rejected(reason: RejectionReason): void;
}

export class RelayMetrics {
  readonly registry = new Registry();

  readonly upstreamRequests = new Counter({
    name: "relay_upstream_requests_total",
    help: "Requests to Runblob by route and outcome (HTTP status class, timeout, network error, or a response the relay could not read).",
    labelNames: ["route", "status_class"] as const,
    registers: [this.registry],
  });

  readonly upstreamDuration = new Histogram({
    name: "relay_upstream_request_duration_seconds",
    help: "Time from sending a request to Runblob to reading its whole response, or to the failure.",
    labelNames: ["route"] as const,
    buckets: UPSTREAM_BUCKETS,
    registers: [this.registry],
  });

  readonly upstreamInFlight = new Gauge({
    name: "relay_upstream_requests_in_flight",
    help: "Requests to Runblob waiting for a response, by route (status requests are mostly the scheduler's polls).",
    labelNames: ["route"] as const,
    registers: [this.registry],
  });

  readonly pushMessages = new Counter({
    name: "relay_push_messages_total",
    help: "Messages written to subscribers, by transport and message type.",
    labelNames: ["transport", "type"] as const,
    registers: [this.registry],
  });

  readonly pushBytes = new Counter({
    name: "relay_push_bytes_total",
    help: "Bytes of messages and keep-alive comments written to subscribers (WebSocket payload bytes, without frame headers).",
    labelNames: ["transport"] as const,
    registers: [this.registry],
  });

  readonly pushLatency = new Histogram({
    name: "relay_push_latency_seconds",
    help: "Time from the poll response that showed a change to the hub's write to local subscribers, once per change.",
    buckets: PUSH_BUCKETS,
    registers: [this.registry],
  });

  readonly pushConflated = new Counter({
    name: "relay_push_conflated_messages_total",
    help: "Messages never written because a newer one for the same generation replaced them while the subscriber's socket was congested.",
    labelNames: ["transport"] as const,
    registers: [this.registry],
  });

  readonly pushDropped = new Counter({
    name: "relay_push_dropped_messages_total",
    help: "Messages discarded because their connection was dropped for not reading.",
    labelNames: ["transport"] as const,
    registers: [this.registry],
  });

  readonly connectionsRefused = new Counter({
    name: "relay_connections_refused_total",
    help: "TCP connections closed on arrival because this instance had MAX_CONNECTIONS open.",
    registers: [this.registry],
  });

  readonly slowConsumerDisconnects = new Counter({
    name: "relay_push_slow_consumer_disconnects_total",
    help: "Connections dropped because the client stopped reading and its unsent data passed MAX_BUFFERED_BYTES.",
    labelNames: ["transport"] as const,
    registers: [this.registry],
  });

  readonly rejectedRequests = new Counter({
    name: "relay_rejected_requests_total",
    help: "HTTP requests and WebSocket messages the relay rejected with an error response, by reason.",
    labelNames: ["reason"] as const,
    registers: [this.registry],
  });

  readonly httpDuration = new Histogram({
    name: "relay_http_request_duration_seconds",
    help: "Time to respond to an HTTP request, by method, route pattern and status class (streams and WebSocket upgrades excluded).",
    labelNames: ["method", "route", "status_class"] as const,
    buckets: HTTP_BUCKETS,
    registers: [this.registry],
  });

  readonly upstreamRetries = new Counter({
    name: "relay_upstream_retries_total",
    help: "Runblob reads sent again after a retryable failure, by route.",
    labelNames: ["route"] as const,
    registers: [this.registry],
  });

  readonly budgetWaits = new Counter({
    name: "relay_upstream_budget_waits_total",
    help: "Times a request found the request budget spent, by priority (client calls wait, polls are deferred).",
    labelNames: ["priority"] as const,
    registers: [this.registry],
  });

  readonly breakerState = new Gauge({
    name: "relay_upstream_breaker_state",
    help: "This instance's circuit breaker for Runblob: 0 closed, 1 half-open (probing), 2 open.",
    registers: [this.registry],
  });

  readonly #transports: Record<Transport, TransportMetrics>;

  constructor() {
    collectDefaultMetrics({ register: this.registry });

    // Series that exist from the start, so rate() and alerts see 0 rather than no data.
    for (const route of UPSTREAM_ROUTES) {
      this.upstreamInFlight.labels(route).set(0);
      for (const statusClass of UPSTREAM_STATUS_CLASSES) this.upstreamRequests.labels(route, statusClass).inc(0);
    }
    for (const reason of REJECTION_REASONS) this.rejectedRequests.labels(reason).inc(0);

    this.#transports = {
      websocket: this.#bindTransport("websocket"),
      sse: this.#bindTransport("sse"),
    };
  }

  transport(transport: Transport): TransportMetrics {
    return this.#transports[transport];
  }

  rejected(reason: RejectionReason): void {
    this.rejectedRequests.labels(reason).inc();
  }

  /** Records one finished upstream request. */
  observeUpstream(route: UpstreamRoute, statusClass: UpstreamStatusClass, seconds: number): void {
    this.upstreamRequests.labels(route, statusClass).inc();
    this.upstreamDuration.labels(route).observe(seconds);
  }

  /** Renders the registry in the text exposition format, with its content type, for GET /metrics. */
  async exposition(): Promise<{ contentType: string; body: string }> {
    return { contentType: this.registry.contentType, body: await this.registry.metrics() };
  }

  #bindTransport(transport: Transport): TransportMetrics {
    const messages = {} as Record<PushMessageType, Counter.Internal>;
    for (const type of PUSH_MESSAGE_TYPES) messages[type] = this.pushMessages.labels(transport, type);
    const bound: TransportMetrics = {
      messages,
      bytes: this.pushBytes.labels(transport),
      conflated: this.pushConflated.labels(transport),
      dropped: this.pushDropped.labels(transport),
      slowConsumerDisconnects: this.slowConsumerDisconnects.labels(transport),
      rejected: (reason) => this.rejected(reason),
    };
    for (const counter of [bound.bytes, bound.conflated, bound.dropped, bound.slowConsumerDisconnects, ...Object.values(messages)]) {
      counter.inc(0);
    }
    return bound;
  }
}

/** Maps an HTTP status code to its class, as used in the `status_class` labels. */
export function statusClassOf(statusCode: number): "2xx" | "3xx" | "4xx" | "5xx" | "1xx" {
  if (statusCode >= 500) return "5xx";
  if (statusCode >= 400) return "4xx";
  if (statusCode >= 300) return "3xx";
  if (statusCode >= 200) return "2xx";
  return "1xx";
}
