/**
 * A ceiling on Runblob requests: at most `ratePerSecond` started per second
 * (a token bucket holding one second's worth) and at most `maxConcurrent` in
 * flight, shared by every instance when the budget lives in Redis.
 *
 * Client-facing REST calls go first: polls may only take a token while a
 * reserve of `reservedForClients` tokens and concurrent slots stays free for
 * them. A refused poll is deferred by the scheduler, not dropped.
 */

export type RequestPriority = "client" | "poll";

export interface BudgetSettings {
  ratePerSecond: number;
  maxConcurrent: number;
  /** Tokens and concurrent slots that polls leave for client-facing calls. */
  reservedForClients: number;
}

export interface BudgetDecision {
  granted: boolean;
  /** When refused, how long until a token is likely free. */
  retryInMs: number;
  /** Frees the concurrency slot of a granted request; call once when the request ends. */
  release(): void;
}

export interface RequestBudget {
  tryAcquire(priority: RequestPriority): Promise<BudgetDecision>;
}

const NOTHING_TO_RELEASE = () => {};

/** Tokens a request of this priority needs in the bucket before it may take one. */
export function tokensNeeded(priority: RequestPriority, settings: BudgetSettings): number {
  return 1 + (priority === "poll" ? settings.reservedForClients : 0);
}

/** The budget of one instance, in memory; the Redis budget falls back to it while Redis is unreachable. */
export class LocalRequestBudget implements RequestBudget {
  #tokens: number;
  #refilledAt: number;
  #inFlight = 0;

  constructor(
    private readonly settings: BudgetSettings,
    private readonly now: () => number = Date.now,
  ) {
    this.#tokens = settings.ratePerSecond;
    this.#refilledAt = now();
  }

  async tryAcquire(priority: RequestPriority): Promise<BudgetDecision> {
    return this.acquireNow(priority);
  }

  acquireNow(priority: RequestPriority): BudgetDecision {
    const { ratePerSecond, maxConcurrent, reservedForClients } = this.settings;
    const now = this.now();
    this.#tokens = Math.min(ratePerSecond, this.#tokens + ((now - this.#refilledAt) * ratePerSecond) / 1000);
    this.#refilledAt = now;

    const needed = tokensNeeded(priority, this.settings);
    const slots = maxConcurrent - (priority === "poll" ? reservedForClients : 0);
    if (this.#tokens < needed) {
      return { granted: false, retryInMs: Math.ceil(((needed - this.#tokens) * 1000) / ratePerSecond), release: NOTHING_TO_RELEASE };
    }
    if (this.#inFlight >= slots) return { granted: false, retryInMs: 10, release: NOTHING_TO_RELEASE };

    this.#tokens -= 1;
    this.#inFlight += 1;
    let released = false;
    return {
      granted: true,
      retryInMs: 0,
      release: () => {
        if (released) return;
        released = true;
        this.#inFlight -= 1;
      },
    };
  }
}
