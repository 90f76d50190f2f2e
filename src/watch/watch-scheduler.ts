/**
 * The watch scheduler polls every watched generation once per interval,
 * however many subscribers it has, and publishes each change once.
 *
 * A generation is watched while it has at least one local subscriber, and
 * for `graceMs` after it was created through the relay or lost its last
 * subscriber. Polling stops at a final status, after `maxAttempts` polls of
 * a non-final status, on Runblob's 404, or once the grace period has run out.
 *
 * With several instances, each watches what its own subscribers need, and a
 * poll lease (see PollLease) lets exactly one of them poll each generation.
 * The others keep their entry, learn every change from the bus, and try the
 * lease twice per interval so one of them takes over when the owner dies.
 *
 * Cost: one heap entry per watched generation and one timer in all, so a
 * tick is O(log n) per due poll and nothing is done per subscriber.
 */
import TinyQueue from "tinyqueue";
import type { Logger } from "pino";
import { generationIdOf } from "../bus/change-bus.js";
import type { ChangeBus, WatchEvent } from "../bus/change-bus.js";
import type { StatusStore, StoredStatus } from "../store/status-store.js";
import { fingerprint, serializeRelayStatus } from "../store/fingerprint.js";
import type { RunblobClient } from "../upstream/runblob-client.js";
import { UpstreamError } from "../upstream/errors.js";
import { UpstreamDeferredError } from "../upstream/upstream-gateway.js";
import { KNOWN_STATUSES, isFinalStatus } from "../wire/upstream.js";
import type { UpstreamStatus } from "../wire/upstream.js";
import type { RelayStatus } from "../wire/relay.js";
import type { PollLease } from "./poll-lease.js";

export interface WatchSchedulerOptions {
  store: StatusStore;
  /** Polls are sent with priority "poll", so the request budget serves client calls first. */
  client: { getStatus(generationId: string, context?: { priority?: "client" | "poll"; requestId?: string }): Promise<UpstreamStatus> };
  bus: ChangeBus;
  lease: PollLease;
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
  /** Stored version as last written or read by this instance; undefined until read from the store. */
  version: number | undefined;
  /** Latest status this instance has, from its own polls, the bus or a read. */
  latest: StoredStatus | undefined;
  /** Highest version delivered to this instance's subscribers. */
  maxSeen: number;
  dueAt: number;
  lastPolledAt: number;
  /** When a poll hint (webhook) last moved this entry's poll forward. */
  lastHintAt: number;
  polling: boolean;
  /** True after a failed poll, so subscribers hear of a failure streak once, not on every retry. */
  failing: boolean;
}

/** One heap node: an entry and the due time it was pushed for. */
interface DueNode {
  readonly entry: WatchEntry;
  readonly dueAt: number;
}

export class WatchScheduler {
  readonly #entries = new Map<string, WatchEntry>();
  /**
   * Due times, earliest first. Invariant: a node's `dueAt` never changes after
   * the push, so the heap stays ordered. Moving an entry pushes a new node,
   * and the old one is skipped when popped because its `dueAt` no longer
   * matches the entry's.
   */
  readonly #due = new TinyQueue<DueNode>([], (a, b) => a.dueAt - b.dueAt);
  readonly #options: WatchSchedulerOptions;
  readonly #now: () => number;
  readonly #random: () => number;
  #timer: NodeJS.Timeout | undefined;
  #timerAt = Infinity;
  #inFlight = 0;
  #stopped = false;
  #storeFailing = false;
  readonly #unknownStatuses = new Set<string>();
  /** No poll starts before this time (ms since epoch): set while the breaker is open or the budget is spent. */
  #pausedUntil = 0;
  readonly #idle = new Set<() => void>();

  constructor(options: WatchSchedulerOptions) {
    this.#options = options;
    this.#now = options.now ?? Date.now;
    this.#random = options.random ?? Math.random;
  }

  /** Number of generations currently watched by this instance. */
  get size(): number {
    return this.#entries.size;
  }

  /** Polls running now. */
  get pollsInFlight(): number {
    return this.#inFlight;
  }

  /** Watched generations whose last poll failed. */
  get failingCount(): number {
    let count = 0;
    for (const entry of this.#entries.values()) if (entry.failing) count += 1;
    return count;
  }

  /** Watched generations past their due time and not polling; O(n), for metrics scrapes. */
  overdueCount(): number {
    const now = this.#now();
    let count = 0;
    for (const entry of this.#entries.values()) if (!entry.polling && entry.dueAt < now - 100) count += 1;
    return count;
  }

  isWatched(generationId: string): boolean {
    return this.#entries.has(generationId);
  }

  /**
   * True when a poll by this instance is running or finished less than one
   * interval ago, so the stored status can be served without asking Runblob.
   */
  isFresh(generationId: string): boolean {
    const entry = this.#entries.get(generationId);
    if (entry === undefined) return false;
    return entry.polling || this.#now() - entry.lastPolledAt < this.#options.intervalMs;
  }

  /** Returns the latest status this instance has of a watched generation, for reads while the store is unreachable. */
  latest(generationId: string): StoredStatus | undefined {
    return this.#entries.get(generationId)?.latest;
  }

  /** Starts watching a generation just created through the relay, polling it at once. */
  watchCreated(generationId: string): void {
    const entry = this.#ensure(generationId);
    entry.graceUntil = Math.max(entry.graceUntil, this.#now() + this.#options.graceMs);
    this.#schedule(entry, this.#now());
  }

  /**
   * Moves a watched generation's next poll to now, keeping its place among
   * polls already overdue. Returns false when the generation is not watched.
   */
  expedite(generationId: string): boolean {
    const entry = this.#entries.get(generationId);
    if (entry === undefined) return false;
    if (!entry.polling && entry.dueAt > this.#now()) this.#schedule(entry, this.#now());
    return true;
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
   * Tells the scheduler that a status was just read outside its own polls,
   * so its next poll waits a full interval (or stops, for a final status).
   */
  notePolled(generationId: string, stored: StoredStatus): void {
    const entry = this.#entries.get(generationId);
    if (entry === undefined) return;
    this.#learn(entry, stored);
    if (isFinalStatus(stored.status.status)) {
      this.#finish(entry);
      return;
    }
    entry.lastPolledAt = this.#now();
    if (!entry.polling) this.#schedule(entry, entry.lastPolledAt + this.#options.intervalMs);
  }

  /**
   * Takes in an event from the bus, published by any instance: a watch that
   * another instance ended ends here too, and versions stay current for the
   * moment this instance takes the lease over.
   */
  observe(event: WatchEvent): void {
    if (event.kind === "upstream_error" || event.kind === "upstream") return;
    const generationId = event.kind === "status" ? event.change.generationId : event.generationId;
    const entry = this.#entries.get(generationId);
    if (entry === undefined) return;

    if (event.kind === "poll_hint") {
      // Only the lease holder's poll reaches Runblob; on the others the claim fails and nothing is sent.
      // One hint per generation per interval is followed, so replayed webhooks cannot multiply polls.
      const now = this.#now();
      if (!entry.polling && now - entry.lastHintAt >= this.#options.intervalMs) {
        entry.lastHintAt = now;
        this.#schedule(entry, Math.min(entry.dueAt, now));
      }
      return;
    }

    if (event.kind === "status") {
      this.#learn(entry, event.change);
      if (isFinalStatus(event.change.status.status)) {
        this.#drop(entry);
        // Frees the lease when this instance holds it (a final read by this instance arrives here first).
        void this.#options.lease.release(generationId);
      }
      return;
    }
    this.#drop(entry);
  }

  /**
   * Records a status this instance handed to subscribers without polling it,
   * so that versions it numbers itself during a store outage continue above it.
   */
  learn(generationId: string, stored: StoredStatus): void {
    const entry = this.#entries.get(generationId);
    if (entry !== undefined) this.#learn(entry, stored);
  }

  /** Ends a watch at once, for a generation Runblob does not know. */
  forget(generationId: string): void {
    const entry = this.#entries.get(generationId);
    if (entry !== undefined) this.#finish(entry);
  }

  /** Returns every generation this instance watches, for a re-read after the bus missed messages. */
  watchedIds(): string[] {
    return [...this.#entries.keys()];
  }

  /** Stops polling and gives up this instance's leases; resolves once the polls in flight have finished. */
  async stop(): Promise<void> {
    this.#stopped = true;
    clearTimeout(this.#timer);
    this.#timer = undefined;
    if (this.#inFlight > 0) await new Promise<void>((resolve) => this.#idle.add(resolve));
    await this.#options.lease.releaseAll();
  }

  #ensure(generationId: string): WatchEntry {
    let entry = this.#entries.get(generationId);
    if (entry !== undefined) return entry;

    const now = this.#now();
    entry = {
      generationId,
      subscribers: 0,
      graceUntil: now + this.#options.graceMs,
      version: undefined,
      latest: undefined,
      maxSeen: 0,
      // The first poll lands at a random point of the interval, so many
      // watches that start together do not poll together.
      dueAt: now + this.#random() * this.#options.intervalMs,
      lastPolledAt: 0,
      lastHintAt: Number.NEGATIVE_INFINITY,
      polling: false,
      failing: false,
    };
    this.#entries.set(generationId, entry);
    this.#due.push({ entry, dueAt: entry.dueAt });
    this.#arm();
    return entry;
  }

  /** Moves an entry's due time; its old heap node stays behind and is skipped (see #due). */
  #schedule(entry: WatchEntry, dueAt: number): void {
    if (this.#entries.get(entry.generationId) !== entry) return;
    entry.dueAt = dueAt;
    this.#due.push({ entry, dueAt });
    this.#arm();
  }

  #arm(): void {
    if (this.#stopped) return;
    const next = this.#due.peek();
    if (next === undefined) return;
    const at = Math.max(next.dueAt, this.#pausedUntil);
    if (this.#timer !== undefined && this.#timerAt <= at) return;

    clearTimeout(this.#timer);
    this.#timerAt = at;
    this.#timer = setTimeout(() => this.#tick(), Math.max(0, at - this.#now()));
  }

  /** Holds every poll back until `until`, when Runblob may be asked again. */
  #pauseUntil(until: number): void {
    if (until <= this.#pausedUntil) return;
    this.#pausedUntil = until;
    clearTimeout(this.#timer);
    this.#timer = undefined;
    this.#timerAt = Infinity;
  }

  #tick(): void {
    this.#timer = undefined;
    this.#timerAt = Infinity;
    const now = this.#now();
    if (now < this.#pausedUntil) {
      this.#arm();
      return;
    }

    while (this.#inFlight < this.#options.concurrency) {
      const head = this.#due.peek();
      if (head === undefined || head.dueAt > now) break;
      const { entry, dueAt } = this.#due.pop()!;
      // Skip nodes left behind by #schedule and entries already dropped or polling.
      if (this.#entries.get(entry.generationId) !== entry || entry.polling || entry.dueAt !== dueAt) continue;

      if (entry.subscribers === 0 && now >= entry.graceUntil) {
        this.#options.logger.debug({ generation_id: entry.generationId }, "watch ended: no subscribers");
        this.#drop(entry);
        void this.#options.lease.release(entry.generationId);
        continue;
      }
      void this.#poll(entry);
    }
    this.#arm();
  }

  async #poll(entry: WatchEntry): Promise<void> {
    const { client, lease, logger, intervalMs, maxAttempts } = this.#options;
    const generationId = entry.generationId;
    entry.polling = true;
    this.#inFlight += 1;
    const startedAt = this.#now();
    // The next poll is one interval after this one's due time, not after its start, so polls
    // started late (a busy event loop) do not stretch every later interval. It still waits
    // half an interval at least, so a poll long overdue is not followed by another at once.
    let nextDueAt = Math.max(entry.dueAt + intervalMs, startedAt + intervalMs / 2);

    try {
      const claim = await lease.claim(generationId);
      if (!claim.granted) {
        // Another instance polls it. Check again within half an interval, so
        // this one takes over well inside two intervals if that one dies.
        nextDueAt = startedAt + intervalMs / 2;
        if (entry.version === undefined) await this.#readStored(entry);
        return;
      }
      if (claim.attempts > maxAttempts) {
        logger.info({ generation_id: generationId, attempts: claim.attempts - 1 }, "watch timed out: status still not final");
        this.#drop(entry);
        await lease.release(generationId);
        await this.#publish({ kind: "timeout", generationId });
        return;
      }

      if (entry.version === undefined) await this.#readStored(entry);
      const upstream = await client.getStatus(generationId, { priority: "poll" });
      this.#noteUnknownStatus(upstream.status);
      const observedAt = new Date(this.#now());
      const result = await this.#record(entry, upstream, observedAt);
      entry.lastPolledAt = this.#now();

      if (entry.failing) {
        entry.failing = false;
        logger.info({ generation_id: generationId }, "status polls succeed again");
      }
      if (result.changed) {
        await this.#publish({
          kind: "status",
          change: { generationId, ...result.stored, observedAtMs: observedAt.getTime() },
        });
      }
      if (isFinalStatus(result.stored.status.status)) this.#finish(entry);
    } catch (error) {
      if (error instanceof UpstreamDeferredError) {
        // Not sent, because the breaker is open or the budget is spent. The attempt is taken back so
        // deferrals never time a watch out, the entry keeps its place (oldest due first), and every
        // poll waits until a request may go again.
        nextDueAt = entry.dueAt;
        this.#pauseUntil(startedAt + error.retryInMs);
        await lease.refund(generationId);
      } else {
        await this.#handlePollError(entry, error);
      }
    } finally {
      entry.polling = false;
      this.#inFlight -= 1;
      this.#schedule(entry, nextDueAt);
      this.#arm();
      if (this.#inFlight === 0) for (const resolve of this.#idle) resolve();
    }
  }

  /** Reads the stored version before the first poll; leaves it unknown while the store is unreachable. */
  async #readStored(entry: WatchEntry): Promise<void> {
    try {
      const stored = await this.#options.store.get(entry.generationId);
      this.#storeRecovered();
      entry.version = stored?.status.version ?? 0;
      if (stored !== null) this.#learn(entry, stored);
    } catch (error) {
      this.#storeFailed(error);
    }
  }

  /**
   * Writes a poll result to the store. While the store is unreachable, the
   * change is versioned from this instance's own view instead, so its
   * subscribers keep getting updates; `maxSeen` then makes the first write
   * after recovery continue above every version they were sent.
   */
  async #record(
    entry: WatchEntry,
    upstream: UpstreamStatus,
    observedAt: Date,
  ): Promise<{ changed: boolean; stored: StoredStatus }> {
    if (entry.version !== undefined) {
      try {
        const result = await this.#options.store.record(entry.generationId, { upstream, observedAt }, entry.version, entry.maxSeen);
        this.#storeRecovered();
        entry.version = result.status.version;
        this.#learn(entry, result);
        return { changed: result.outcome === "changed", stored: result };
      } catch (error) {
        this.#storeFailed(error);
        entry.version = undefined;
      }
    }

    const latest = entry.latest;
    if (latest !== undefined && fingerprint(latest.status) === fingerprint(upstream)) return { changed: false, stored: latest };
    const json = serializeRelayStatus(upstream, entry.maxSeen + 1, observedAt);
    const stored = { status: JSON.parse(json) as RelayStatus, json };
    this.#learn(entry, stored);
    return { changed: true, stored };
  }

  /** Logs each status value Runblob did not document, once; it is treated as not final. */
  #noteUnknownStatus(status: string): void {
    if ((KNOWN_STATUSES as readonly string[]).includes(status) || this.#unknownStatuses.has(status)) return;
    if (this.#unknownStatuses.size < 100) this.#unknownStatuses.add(status);
    this.#options.logger.warn({ status: status.slice(0, 64) }, "Runblob sent an undocumented status value; treating it as not final");
  }

  #learn(entry: WatchEntry, stored: StoredStatus): void {
    const version = stored.status.version;
    if (version >= entry.maxSeen) {
      entry.maxSeen = version;
      entry.latest = stored;
    }
    if (entry.version !== undefined && version > entry.version) entry.version = version;
  }

  async #handlePollError(entry: WatchEntry, error: unknown): Promise<void> {
    const { logger } = this.#options;
    const generationId = entry.generationId;
    entry.lastPolledAt = this.#now();

    if (error instanceof UpstreamError && error.kind === "http" && error.statusCode === 404) {
      logger.info({ generation_id: generationId }, "watch ended: Runblob does not know this generation");
      this.#finish(entry);
      await this.#publish({ kind: "not_found", generationId });
      return;
    }
    if (entry.failing) return;

    entry.failing = true;
    logger.warn({ generation_id: generationId, err: error }, "status poll failed; retrying at the next interval");
    const reason = error instanceof UpstreamError ? error.message : "internal error";
    await this.#publish({
      kind: "upstream_error",
      generationId,
      message: `could not refresh the status (${reason}); the relay keeps trying`,
    });
  }

  async #publish(event: WatchEvent): Promise<void> {
    try {
      await this.#options.bus.publish(event);
    } catch (error) {
      this.#options.logger.error({ generation_id: generationIdOf(event), err: error, event: event.kind }, "could not publish a watch event");
    }
  }

  /** Ends a watch for good: the lease and the attempt count are released. */
  #finish(entry: WatchEntry): void {
    this.#drop(entry);
    void this.#options.lease.release(entry.generationId, true);
  }

  #drop(entry: WatchEntry): void {
    if (this.#entries.get(entry.generationId) === entry) this.#entries.delete(entry.generationId);
  }

  #storeFailed(error: unknown): void {
    if (this.#storeFailing) return;
    this.#storeFailing = true;
    this.#options.logger.error({ err: error }, "status store unreachable; versioning changes from this instance's own view");
  }

  #storeRecovered(): void {
    if (!this.#storeFailing) return;
    this.#storeFailing = false;
    this.#options.logger.info("status store reachable again");
  }
}
