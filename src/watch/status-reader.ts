/**
 * Reads the current status of one generation for REST calls and new
 * subscribers: from the store when a poll by any instance confirmed it less
 * than one interval ago or it is final, otherwise with one request to
 * Runblob shared by all concurrent callers on this instance.
 */
import type { Logger } from "pino";
import type { ChangeBus } from "../bus/change-bus.js";
import type { StatusStore, StoredStatus } from "../store/status-store.js";
import type { RequestContext } from "../upstream/runblob-client.js";
import { UpstreamDeferredError, UpstreamUnavailableError } from "../upstream/upstream-gateway.js";
import type { RequestPriority } from "../upstream/request-budget.js";
import type { UpstreamStatus } from "../wire/upstream.js";

/**
 * REST reads pass priority "client"; reads for new subscribers default to
 * "poll", so a wave of subscriptions cannot use the budget that REST calls need.
 */
export interface ReaderContext extends RequestContext {
  priority?: RequestPriority;
  /**
   * Set by subscribers, which get every change from the hub. When the budget
   * defers the read of a watched generation, the generation joins the
   * scheduler's queue (oldest due first) instead of waiting. current() then
   * returns the stored status, however old, or rejects with StatusPendingError.
   */
  handOffToScheduler?: boolean;
}

/** Error for a status not known yet, which the scheduler's next poll publishes; not a failure. */
export class StatusPendingError extends Error {
  override readonly name = "StatusPendingError";
}

/** How long a subscriber's first read waits for the request budget before it fails. */
const SUBSCRIBER_BUDGET_WAIT_MS = 10_000;
import { isFinalStatus } from "../wire/upstream.js";
import { UpstreamError } from "../upstream/errors.js";
import type { WatchScheduler } from "./watch-scheduler.js";

export interface StatusReaderOptions {
  store: StatusStore;
  client: { getStatus(generationId: string, context?: ReaderContext): Promise<UpstreamStatus> };
  bus: ChangeBus;
  scheduler: WatchScheduler;
  logger: Logger;
  intervalMs: number;
  /** How long Runblob's 404 for an id is remembered, so repeated lookups of it do not reach Runblob. */
  notFoundCacheMs?: number;
  now?: () => number;
}

/** Entries of the not-found cache; past this, expired ones are swept on the next insert. */
const NOT_FOUND_CACHE_SWEEP_SIZE = 10_000;

/** The store failed and this instance knows no status to serve instead. */
export class StoreUnavailableError extends Error {
  override readonly name = "StoreUnavailableError";
}

export class StatusReader {
  readonly #options: StatusReaderOptions;
  readonly #now: () => number;
  readonly #inFlight = new Map<string, Promise<StoredStatus>>();
  readonly #notFoundUntil = new Map<string, { until: number; error: UpstreamError }>();

  constructor(options: StatusReaderOptions) {
    this.#options = options;
    this.#now = options.now ?? Date.now;
  }

  /**
   * Returns the current status. Throws UpstreamError when Runblob has to be
   * asked and fails (404 included), and StoreUnavailableError when the store
   * fails and the scheduler has no status of its own for this generation.
   */
  async current(generationId: string, context: ReaderContext = {}): Promise<StoredStatus> {
    const { store, scheduler, intervalMs } = this.#options;
    let stored: StoredStatus | null;
    try {
      stored = await store.get(generationId);
    } catch (error) {
      return this.#fromScheduler(generationId, error);
    }

    if (stored !== null) {
      const final = isFinalStatus(stored.status.status);
      const checkedRecently = stored.checkedAtMs !== undefined && this.#now() - stored.checkedAtMs < intervalMs;
      if (final) scheduler.notePolled(generationId, stored);
      if (final || checkedRecently || scheduler.isFresh(generationId)) {
        // The scheduler learns the version new subscribers get, even where another instance polls.
        scheduler.learn(generationId, stored);
        return stored;
      }
    }

    const notFound = this.#notFoundUntil.get(generationId);
    if (notFound !== undefined) {
      if (notFound.until > this.#now()) throw notFound.error;
      this.#notFoundUntil.delete(generationId);
    }

    let pending = this.#inFlight.get(generationId);
    if (pending === undefined) {
      pending = this.#fetch(generationId, stored, context).finally(() =>
        this.#inFlight.delete(generationId),
      );
      this.#inFlight.set(generationId, pending);
    }
    if (context.handOffToScheduler === true) return pending;
    // A caller that needs a status now does not take the hand-off of a subscriber read it shared.
    return pending.catch((error: unknown) => {
      if (error instanceof StatusPendingError) return this.#fetch(generationId, stored, context);
      throw error;
    });
  }

  async #fetch(generationId: string, stale: StoredStatus | null, context: ReaderContext): Promise<StoredStatus> {
    const { store, client, bus, scheduler, logger } = this.#options;
    const expectedVersion = stale?.status.version ?? 0;
    let upstream;
    try {
      upstream = await this.#ask(client, generationId, context);
    } catch (error) {
      if (error instanceof StatusPendingError && stale !== null) return stale;
      // An unknown id ends the watch its first subscriber started, so it is not polled again.
      if (error instanceof UpstreamError && error.statusCode === 404) {
        scheduler.forget(generationId);
        this.#rememberNotFound(generationId, error);
      }
      throw error;
    }
    const observedAt = new Date(this.#now());
    let result;
    try {
      result = await store.record(generationId, { upstream, observedAt }, expectedVersion);
    } catch (error) {
      return this.#fromScheduler(generationId, error);
    }

    if (result.outcome === "changed") {
      try {
        await bus.publish({
          kind: "status",
          change: { generationId, status: result.status, json: result.json, observedAtMs: observedAt.getTime() },
        });
      } catch (error) {
        logger.error({ generation_id: generationId, err: error }, "could not publish a status change");
      }
    }
    const stored = { status: result.status, json: result.json, checkedAtMs: observedAt.getTime() };
    scheduler.notePolled(generationId, stored);
    return stored;
  }

  /**
   * Asks Runblob, waiting out budget deferrals of low-priority reads up to
   * SUBSCRIBER_BUDGET_WAIT_MS, or handing the read to the scheduler (see ReaderContext).
   */
  async #ask(client: StatusReaderOptions["client"], generationId: string, context: ReaderContext): Promise<UpstreamStatus> {
    const priority = context.priority ?? "poll";
    const deadline = Date.now() + SUBSCRIBER_BUDGET_WAIT_MS;
    for (;;) {
      try {
        return await client.getStatus(generationId, { ...context, priority });
      } catch (error) {
        if (!(error instanceof UpstreamDeferredError)) throw error;
        if (context.handOffToScheduler === true && this.#options.scheduler.expedite(generationId)) {
          throw new StatusPendingError("status not known yet: the next poll publishes it");
        }
        if (Date.now() + error.retryInMs > deadline) {
          throw new UpstreamUnavailableError("Runblob is failing or the relay's request budget is spent; try again shortly", error.retryInMs);
        }
        await new Promise((resolve) => setTimeout(resolve, Math.max(error.retryInMs, 5)));
      }
    }
  }

  #rememberNotFound(generationId: string, error: UpstreamError): void {
    const ttl = this.#options.notFoundCacheMs ?? 0;
    if (ttl <= 0) return;
    const now = this.#now();
    if (this.#notFoundUntil.size >= NOT_FOUND_CACHE_SWEEP_SIZE) {
      for (const [id, entry] of this.#notFoundUntil) if (entry.until <= now) this.#notFoundUntil.delete(id);
      // Still full of live entries: drop the oldest, so a flood of random ids cannot grow memory.
      if (this.#notFoundUntil.size >= NOT_FOUND_CACHE_SWEEP_SIZE) {
        const oldest = this.#notFoundUntil.keys().next().value;
        if (oldest !== undefined) this.#notFoundUntil.delete(oldest);
      }
    }
    this.#notFoundUntil.set(generationId, { until: now + ttl, error });
  }

  #fromScheduler(generationId: string, error: unknown): StoredStatus {
    const latest = this.#options.scheduler.latest(generationId);
    if (latest !== undefined) return latest;
    this.#options.logger.warn({ generation_id: generationId, err: error }, "status store unreachable and no local status to serve");
    throw new StoreUnavailableError("the status store is unreachable; try again shortly", { cause: error });
  }
}
