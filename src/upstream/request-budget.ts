/**
 * A ceiling on Runblob requests: at most `ratePerSecond` started in any
 * sliding one-second window (a log of start times, so no burst can pass the
 * ceiling at a window edge) and at most `maxConcurrent` in flight, shared by
 * every instance when the budget lives in Redis.
 *
 * Client-facing REST calls go first: polls may only start while a reserve of
 * `reservedForClients` starts and concurrent slots stays free for them. A
 * refused poll is deferred by the scheduler, not dropped.
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

/** Starts a request of this priority may find in the last second and still start. */
export function startsAllowed(priority: RequestPriority, settings: BudgetSettings): number {
  return settings.ratePerSecond - (priority === "poll" ? settings.reservedForClients : 0);
}

/**
 * The window the log counts starts in: one second plus a 100 ms margin, so
 * that delays between the grant and the arrival (event loop lag, network
 * jitter) do not bunch requests granted in two adjacent seconds into one
 * second as Runblob sees them. The cost is that at most about 91 % of the
 * ceiling is used.
 */
export const BUDGET_WINDOW_MS = 1100;

/** The budget of one instance, in memory; the Redis budget falls back to it while Redis is unreachable. */
export class LocalRequestBudget implements RequestBudget {
  /** Start times of the last second, oldest first. */
  #starts: number[] = [];
  #inFlight = 0;

  constructor(
    private readonly settings: BudgetSettings,
    private readonly now: () => number = Date.now,
  ) {}

  async tryAcquire(priority: RequestPriority): Promise<BudgetDecision> {
    return this.acquireNow(priority);
  }

  acquireNow(priority: RequestPriority): BudgetDecision {
    const { maxConcurrent, reservedForClients } = this.settings;
    const now = this.now();
    let expired = 0;
    while (expired < this.#starts.length && this.#starts[expired]! <= now - BUDGET_WINDOW_MS) expired += 1;
    if (expired > 0) this.#starts = this.#starts.slice(expired);

    const allowed = startsAllowed(priority, this.settings);
    if (this.#starts.length >= allowed) {
      // The start that must leave the window before this priority may go again.
      const blocking = this.#starts[this.#starts.length - allowed] ?? now;
      return { granted: false, retryInMs: Math.max(1, blocking + BUDGET_WINDOW_MS - now), release: NOTHING_TO_RELEASE };
    }
    const slots = maxConcurrent - (priority === "poll" ? reservedForClients : 0);
    if (this.#inFlight >= slots) return { granted: false, retryInMs: 10, release: NOTHING_TO_RELEASE };

    this.#starts.push(now);
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
