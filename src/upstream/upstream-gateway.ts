/**
 * Every Runblob request goes through the gateway, which adds what the bare
 * client does not: the circuit breaker, the request budget, and retries with
 * backoff for reads. Routes and the scheduler see the client's interface.
 *
 * Polls are never made to wait: when the breaker is open or the budget is
 * spent, they fail with UpstreamDeferredError and the scheduler tries them
 * again later, oldest first. Client calls wait for budget up to
 * `clientBudgetWaitMs`, then fail with 503.
 */
import type { Logger } from "pino";
import { UpstreamError } from "./errors.js";
import { CircuitBreaker } from "./circuit-breaker.js";
import type { BreakerState } from "./circuit-breaker.js";
import type { RequestBudget, RequestPriority } from "./request-budget.js";
import { withRetries } from "./retry-policy.js";
import type { RetryPolicyOptions } from "./retry-policy.js";
import type { PassthroughResponse, RequestContext, RunblobClient } from "./runblob-client.js";
import type { GenerateRequest } from "../wire/generate.js";
import type { GenerateResponse, UpstreamStatus } from "../wire/upstream.js";

/** A poll that was not sent because the breaker is open or the budget is spent; not an upstream failure. */
export class UpstreamDeferredError extends Error {
  override readonly name = "UpstreamDeferredError";

  constructor(
    readonly reason: "circuit_open" | "budget",
    readonly retryInMs: number,
  ) {
    super(reason === "circuit_open" ? "Runblob is failing; polls pause for a cool-down" : "request budget spent; poll deferred");
  }
}

/** A client call that could not be sent: the breaker is open or the budget stayed spent. */
export class UpstreamUnavailableError extends Error {
  override readonly name = "UpstreamUnavailableError";

  constructor(
    message: string,
    readonly retryInMs: number,
  ) {
    super(message);
  }
}

export interface GatewayContext extends RequestContext {
  priority?: RequestPriority;
}

export interface UpstreamGatewayOptions {
  client: RunblobClient;
  budget: RequestBudget;
  retry: RetryPolicyOptions;
  failureThreshold: number;
  cooldownMs: number;
  clientBudgetWaitMs: number;
  logger: Logger;
  onBreakerChange?: (state: BreakerState) => void;
  metrics?: { retries?(route: string): void; budgetWaits?(priority: RequestPriority): void };
}

export class UpstreamGateway {
  readonly breaker: CircuitBreaker;
  readonly #options: UpstreamGatewayOptions;

  constructor(options: UpstreamGatewayOptions) {
    this.#options = options;
    this.breaker = new CircuitBreaker({
      failureThreshold: options.failureThreshold,
      cooldownMs: options.cooldownMs,
      onStateChange: (state, previous) => {
        const level = state === "open" ? "error" : "info";
        options.logger[level]({ state, previous }, `upstream circuit breaker ${state.replace("_", "-")}`);
        options.onBreakerChange?.(state);
      },
    });
  }

  get health(): RunblobClient["health"] {
    return this.#options.client.health;
  }

  getStatus(generationId: string, context: GatewayContext = {}): Promise<UpstreamStatus> {
    return this.#read("status", context, () => this.#options.client.getStatus(generationId, context));
  }

  list(query: { limit: number; offset: number }, context: GatewayContext = {}): Promise<PassthroughResponse> {
    return this.#read("list", context, async () => {
      const upstreamResponse = await this.#options.client.list(query, context);
      // Passthrough responses carry errors as status codes, so retryable ones become errors here.
      if ([408, 429, 502, 503, 504].includes(upstreamResponse.statusCode)) {
        throw new UpstreamError("http", `Runblob responded with HTTP ${upstreamResponse.statusCode} to the list request`, upstreamResponse.statusCode, undefined, {
          retryAfterMs: upstreamResponse.retryAfterMs,
        });
      }
      return upstreamResponse;
    });
  }

  /** Never retried: a lost response may have created and charged a generation. */
  async generate(request: GenerateRequest, context: RequestContext = {}): Promise<PassthroughResponse & { created?: GenerateResponse }> {
    return this.#guarded("client", () => this.#options.client.generate(request, context));
  }

  close(): Promise<void> {
    return this.#options.client.close();
  }

  async #read<T>(route: string, context: GatewayContext, request: () => Promise<T>): Promise<T> {
    const priority = context.priority ?? "client";
    return withRetries(
      () => this.#guarded(priority, request),
      this.#options.retry,
      (retry, delayMs, error) => {
        this.#options.metrics?.retries?.(route);
        this.#options.logger.info({ route, retry, delay_ms: delayMs, err: error, request_id: context.requestId }, "retrying Runblob request");
      },
    );
  }

  async #guarded<T>(priority: RequestPriority, request: () => Promise<T>): Promise<T> {
    const { breaker } = this;
    if (!breaker.tryAcquire()) {
      if (priority === "poll") throw new UpstreamDeferredError("circuit_open", Math.max(breaker.retryInMs, 50));
      throw new UpstreamUnavailableError("Runblob is failing and the relay paused requests to it; try again shortly", breaker.retryInMs);
    }

    let decision;
    try {
      decision = await this.#acquireBudget(priority);
    } catch (error) {
      breaker.abandon();
      throw error;
    }
    try {
      const result = await request();
      breaker.record();
      return result;
    } catch (error) {
      breaker.record(error);
      throw error;
    } finally {
      decision.release();
    }
  }

  async #acquireBudget(priority: RequestPriority) {
    const { budget, clientBudgetWaitMs, metrics } = this.#options;
    const deadline = Date.now() + clientBudgetWaitMs;
    for (;;) {
      const decision = await budget.tryAcquire(priority);
      if (decision.granted) return decision;
      metrics?.budgetWaits?.(priority);
      if (priority === "poll") throw new UpstreamDeferredError("budget", decision.retryInMs);
      if (Date.now() + decision.retryInMs > deadline) {
        throw new UpstreamUnavailableError("the relay's request budget for Runblob is spent; try again shortly", decision.retryInMs);
      }
      await new Promise((resolve) => setTimeout(resolve, Math.max(decision.retryInMs, 5)));
    }
  }
}
