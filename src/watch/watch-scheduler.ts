/**
 * The watch scheduler polls every watched generation once per interval,
 * however many subscribers it has, and publishes each change once.
 *
 * A generation is watched while it has at least one local subscriber, and
 * for `graceMs` after it was created through the relay or lost its last
 * subscriber. Polling stops at a final status, after `maxAttempts` polls of
 * a non-final status, on Runblob's 404, or once the grace period has run out.
 *
 * Cost: one heap entry per watched generation and one timer in all, so a
 * tick is O(log n) per due poll and nothing is done per subscriber.
 */
import TinyQueue from "tinyqueue";
import type { Logger } from "pino";
import type { ChangeBus } from "../bus/change-bus.js";
import type { StatusStore } from "../store/status-store.js";
import type { RunblobClient } from "../upstream/runblob-client.js";
import { UpstreamError } from "../upstream/errors.js";
import { isFinalStatus } from "../wire/upstream.js";

export interface WatchSchedulerOptions {
  store: StatusStore;
  client: Pick<RunblobClient, "getStatus">;
  bus: ChangeBus;
  logger: Logger;
  intervalMs: number;
  maxAttempts: number;
  graceMs: number;
  /** Maximum polls in flight at once; due polls past it wait for a free slot. */
  concurrency: number;
  now?: () => number;
  random?: () => number;
}

interface WatchEntry {
  generationId: string;
  subscribers: number;
  /** While there are no subscribers, the watch lasts until this time (ms since epoch). */
  graceUntil: number;
  /** Polls made while the status was not final. */
  attempts: number;
  /** Stored version as last seen by this scheduler; undefined until read from the store. */
  version: number | undefined;
  dueAt: number;
  lastPolledAt: number;
  polling: boolean;
  /** True after a failed poll, so subscribers hear of a failure streak once, not on every retry. */
  failing: boolean;
}

export class WatchScheduler {
  readonly #entries = new Map<string, WatchEntry>();
  readonly #due = new TinyQueue<WatchEntry>([], (a, b) => a.dueAt - b.dueAt);
  readonly #options: WatchSchedulerOptions;
  readonly #now: () => number;
  readonly #random: () => number;
  #timer: NodeJS.Timeout | undefined;
  #timerAt = Infinity;
  #inFlight = 0;
  #stopped = false;
  readonly #idle = new Set<() => void>();

  constructor(options: WatchSchedulerOptions) {
    this.#options = options;
    this.#now = options.now ?? Date.now;
    this.#random = options.random ?? Math.random;
  }

  /** Number of generations currently watched. */
  get size(): number {
    return this.#entries.size;
  }

  isWatched(generationId: string): boolean {
    return this.#entries.has(generationId);
  }

  /**
   * True when a poll of this generation is running or finished less than one
   * interval ago, so the stored status can be served without asking Runblob.
   */
  isFresh(generationId: string): boolean {
    const entry = this.#entries.get(generationId);
    if (entry === undefined) return false;
    return entry.polling || this.#now() - entry.lastPolledAt < this.#options.intervalMs;
  }

  /** Starts watching a generation just created through the relay, polling it at once. */
  watchCreated(generationId: string): void {
    const entry = this.#ensure(generationId);
    entry.graceUntil = Math.max(entry.graceUntil, this.#now() + this.#options.graceMs);
    this.#schedule(entry, this.#now());
  }

  /** Counts a local subscriber in; the first one starts the watch. */
  addSubscriber(generationId: string): void {
    const entry = this.#ensure(generationId);
    entry.subscribers += 1;
  }

  /** Counts a local subscriber out; the last one starts the grace period. */
  removeSubscriber(generationId: string): void {
    const entry = this.#entries.get(generationId);
    if (entry === undefined || entry.subscribers === 0) return;
    entry.subscribers -= 1;
    if (entry.subscribers === 0) entry.graceUntil = this.#now() + this.#options.graceMs;
  }

  /**
   * Tells the scheduler that a status was just read from Runblob outside its
   * own polls, so its next poll waits a full interval.
   */
  notePolled(generationId: string, version: number, final: boolean): void {
    const entry = this.#entries.get(generationId);
    if (entry === undefined) return;
    if (final) {
      this.#drop(entry);
      return;
    }
    entry.version = version;
    entry.lastPolledAt = this.#now();
    if (!entry.polling) this.#schedule(entry, entry.lastPolledAt + this.#options.intervalMs);
  }

  /** Stops polling; resolves once the polls in flight have finished. */
  async stop(): Promise<void> {
    this.#stopped = true;
    clearTimeout(this.#timer);
    this.#timer = undefined;
    if (this.#inFlight === 0) return;
    await new Promise<void>((resolve) => this.#idle.add(resolve));
  }

  #ensure(generationId: string): WatchEntry {
    let entry = this.#entries.get(generationId);
    if (entry !== undefined) return entry;

    const now = this.#now();
    entry = {
      generationId,
      subscribers: 0,
      graceUntil: now + this.#options.graceMs,
      attempts: 0,
      version: undefined,
      // The first poll lands at a random point of the interval, so many
      // watches that start together do not poll together.
      dueAt: now + this.#random() * this.#options.intervalMs,
      lastPolledAt: 0,
      polling: false,
      failing: false,
    };
    this.#entries.set(generationId, entry);
    this.#due.push(entry);
    this.#arm();
    return entry;
  }

  /**
   * Moves an entry's due time. The heap cannot reorder in place, so the old
   * position stays behind as a stale copy that #tick skips (its dueAt no
   * longer matches the time it was pushed for).
   */
  #schedule(entry: WatchEntry, dueAt: number): void {
    if (!this.#entries.has(entry.generationId)) return;
    entry.dueAt = dueAt;
    this.#due.push(entry);
    this.#arm();
  }

  #arm(): void {
    if (this.#stopped) return;
    const next = this.#due.peek();
    if (next === undefined) return;
    if (this.#timer !== undefined && this.#timerAt <= next.dueAt) return;

    clearTimeout(this.#timer);
    this.#timerAt = next.dueAt;
    this.#timer = setTimeout(() => this.#tick(), Math.max(0, next.dueAt - this.#now()));
  }

  #tick(): void {
    this.#timer = undefined;
    this.#timerAt = Infinity;
    const now = this.#now();

    while (this.#inFlight < this.#options.concurrency) {
      const head = this.#due.peek();
      if (head === undefined || head.dueAt > now) break;
      const entry = this.#due.pop()!;
      // Skip copies left behind by #schedule and entries already dropped or polling.
      if (this.#entries.get(entry.generationId) !== entry || entry.polling || entry.dueAt > now) continue;

      if (entry.subscribers === 0 && now >= entry.graceUntil) {
        this.#options.logger.debug({ generation_id: entry.generationId }, "watch ended: no subscribers");
        this.#drop(entry);
        continue;
      }
      void this.#poll(entry);
    }
    this.#arm();
  }

  async #poll(entry: WatchEntry): Promise<void> {
    const { store, client, bus, logger, intervalMs, maxAttempts } = this.#options;
    const generationId = entry.generationId;
    entry.polling = true;
    this.#inFlight += 1;
    const startedAt = this.#now();

    try {
      if (entry.version === undefined) entry.version = (await store.get(generationId))?.status.version ?? 0;

      const upstream = await client.getStatus(generationId);
      const observedAt = new Date(this.#now());
      const result = await store.record(generationId, { upstream, observedAt }, entry.version);
      entry.version = result.status.version;
      entry.lastPolledAt = this.#now();

      if (entry.failing) {
        entry.failing = false;
        logger.info({ generation_id: generationId }, "status polls succeed again");
      }
      if (result.outcome === "changed") {
        await bus.publish({
          kind: "status",
          change: { generationId, status: result.status, json: result.json, observedAtMs: observedAt.getTime() },
        });
      }

      if (isFinalStatus(result.status.status)) {
        this.#drop(entry);
        return;
      }
      entry.attempts += 1;
      if (entry.attempts >= maxAttempts) {
        logger.info({ generation_id: generationId, attempts: entry.attempts }, "watch timed out: status still not final");
        this.#drop(entry);
        await bus.publish({ kind: "timeout", generationId });
      }
    } catch (error) {
      await this.#handlePollError(entry, error);
    } finally {
      entry.polling = false;
      this.#inFlight -= 1;
      if (this.#entries.get(generationId) === entry) this.#schedule(entry, startedAt + intervalMs);
      this.#arm();
      if (this.#inFlight === 0) for (const resolve of this.#idle) resolve();
    }
  }

  async #handlePollError(entry: WatchEntry, error: unknown): Promise<void> {
    const { bus, logger, maxAttempts } = this.#options;
    const generationId = entry.generationId;
    entry.lastPolledAt = this.#now();

    try {
      if (error instanceof UpstreamError && error.kind === "http" && error.statusCode === 404) {
        logger.info({ generation_id: generationId }, "watch ended: Runblob does not know this generation");
        this.#drop(entry);
        await bus.publish({ kind: "not_found", generationId });
        return;
      }

      entry.attempts += 1;
      if (!entry.failing) {
        entry.failing = true;
        logger.warn({ generation_id: generationId, err: error }, "status poll failed; retrying at the next interval");
        const reason = error instanceof UpstreamError ? error.message : "internal error";
        await bus.publish({
          kind: "upstream_error",
          generationId,
          message: `could not refresh the status (${reason}); the relay keeps trying`,
        });
      }
      if (entry.attempts >= maxAttempts) {
        this.#drop(entry);
        await bus.publish({ kind: "timeout", generationId });
      }
    } catch (publishError) {
      logger.error({ generation_id: generationId, err: publishError }, "could not publish a watch event");
    }
  }

  #drop(entry: WatchEntry): void {
    if (this.#entries.get(entry.generationId) === entry) this.#entries.delete(entry.generationId);
  }
}
