/**
 * Circuit breaker for Runblob. After `failureThreshold` consecutive outage
 * failures (network errors, timeouts, 429 and 5xx responses), requests stop
 * for `cooldownMs`; then one probe request goes through, and its outcome
 * closes the circuit again or starts a new cool-down.
 *
 * Responses that reject the request itself (404, 422, ...) count as successes:
 * Runblob is up. The breaker is per instance, and its state changes are
 * published to every instance's subscribers as `upstream` events.
 */
import { UpstreamError } from "./errors.js";

export type BreakerState = "closed" | "open" | "half_open";

export interface CircuitBreakerOptions {
  failureThreshold: number;
  cooldownMs: number;
  now?: () => number;
  onStateChange?: (state: BreakerState, previous: BreakerState) => void;
}

/** True for failures that say Runblob is unwell, as opposed to a bad request. */
export function isOutage(error: unknown): boolean {
  if (!(error instanceof UpstreamError)) return false;
  if (error.kind !== "http") return true;
  const status = error.statusCode ?? 0;
  return status === 429 || status >= 500;
}

export class CircuitBreaker {
  #state: BreakerState = "closed";
  #failures = 0;
  #openedAt = 0;
  #probeInFlight = false;
  readonly #options: CircuitBreakerOptions;
  readonly #now: () => number;

  constructor(options: CircuitBreakerOptions) {
    this.#options = options;
    this.#now = options.now ?? Date.now;
  }

  get state(): BreakerState {
    return this.#state;
  }

  /** Milliseconds until the next probe may go, 0 when requests may go now. */
  get retryInMs(): number {
    if (this.#state !== "open") return 0;
    return Math.max(0, this.#openedAt + this.#options.cooldownMs - this.#now());
  }

  /** Returns true when a request may go now; in half-open state only one probe at a time. */
  tryAcquire(): boolean {
    if (this.#state === "closed") return true;
    if (this.#state === "open") {
      if (this.retryInMs > 0) return false;
      this.#transition("half_open");
    }
    if (this.#probeInFlight) return false;
    this.#probeInFlight = true;
    return true;
  }

  /** Gives back a permission from tryAcquire for a request that was never sent. */
  abandon(): void {
    this.#probeInFlight = false;
  }

  /** Records a request's outcome: undefined for success, else the error it failed with. */
  record(error?: unknown): void {
    this.#probeInFlight = false;
    if (error === undefined || !isOutage(error)) {
      this.#failures = 0;
      if (this.#state !== "closed") this.#transition("closed");
      return;
    }
    this.#failures += 1;
    if (this.#state === "half_open" || this.#failures >= this.#options.failureThreshold) {
      this.#openedAt = this.#now();
      if (this.#state !== "open") this.#transition("open");
    }
  }

  #transition(state: BreakerState): void {
    const previous = this.#state;
    this.#state = state;
    this.#options.onStateChange?.(state, previous);
  }
}
