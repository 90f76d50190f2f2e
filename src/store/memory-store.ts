/**
 * A StatusStore in process memory, for a single relay instance and for tests.
 * JavaScript runs each record() call to completion without interleaving, which
 * makes its compare-and-set atomic.
 */
import type { Observation, RecordResult, StatusStore, StoredStatus } from "./status-store.js";
import {
  assertVersion,
  fingerprint,
  serializeRelayStatus,
  ttlMilliseconds,
} from "./fingerprint.js";

export interface MemoryStatusStoreOptions {
  /** Seconds an entry lives after its last record() call, whether that call changed it or not. */
  ttlSeconds: number;
  /** Clock in milliseconds since the epoch. Defaults to Date.now. */
  now?: () => number;
}

interface Entry {
  fingerprint: string;
  version: number;
  json: string;
  checkedAtMs: number;
  expiresAtMs: number;
}

/**
 * Interval of the sweep that deletes expired entries that are never read again.
 * get() and record() delete the expired entries they read.
 */
const SWEEP_INTERVAL_MS = 60_000;

export class MemoryStatusStore implements StatusStore {
  private readonly entries = new Map<string, Entry>();
  private readonly ttlMs: number;
  private readonly now: () => number;
  private readonly sweepTimer: NodeJS.Timeout;

  constructor(options: MemoryStatusStoreOptions) {
    this.ttlMs = ttlMilliseconds(options.ttlSeconds);
    this.now = options.now ?? Date.now;
    this.sweepTimer = setInterval(() => this.sweep(), SWEEP_INTERVAL_MS);
    this.sweepTimer.unref();
  }

  async get(generationId: string): Promise<StoredStatus | null> {
    const entry = this.liveEntry(generationId, this.now());
    return entry ? toStoredStatus(entry) : null;
  }

  async record(
    generationId: string,
    observation: Observation,
    expectedVersion: number,
    minVersion = 0,
  ): Promise<RecordResult> {
    assertVersion(expectedVersion);
    assertVersion(minVersion);
    const nowMs = this.now();
    const checkedAtMs = observation.observedAt.getTime();
    const entry = this.liveEntry(generationId, nowMs);
    const newFingerprint = fingerprint(observation.upstream);

    if (entry && entry.fingerprint === newFingerprint && entry.version >= minVersion) {
      entry.expiresAtMs = nowMs + this.ttlMs;
      entry.checkedAtMs = checkedAtMs;
      return { outcome: "unchanged", ...toStoredStatus(entry) };
    }

    // An expired or missing entry protects nothing, so the write goes on from the caller's version:
    // versions keep rising for clients that resume with a version they saw before the expiry.
    if (entry && entry.version !== expectedVersion) {
      return { outcome: "stale", ...toStoredStatus(entry) };
    }

    const version = Math.max(expectedVersion, minVersion) + 1;
    const json = serializeRelayStatus(observation.upstream, version, observation.observedAt);
    const written = { fingerprint: newFingerprint, version, json, checkedAtMs, expiresAtMs: nowMs + this.ttlMs };
    this.entries.set(generationId, written);
    return { outcome: "changed", ...toStoredStatus(written) };
  }

  /** Stops the sweep timer and drops every entry. */
  async close(): Promise<void> {
    clearInterval(this.sweepTimer);
    this.entries.clear();
  }

  private liveEntry(generationId: string, nowMs: number): Entry | undefined {
    const entry = this.entries.get(generationId);
    if (entry && entry.expiresAtMs <= nowMs) {
      this.entries.delete(generationId);
      return undefined;
    }
    return entry;
  }

  private sweep(): void {
    const nowMs = this.now();
    for (const [generationId, entry] of this.entries) {
      if (entry.expiresAtMs <= nowMs) {
        this.entries.delete(generationId);
      }
    }
  }
}

/** Parses on every read, so a caller that mutates a returned status cannot change the stored one. */
function toStoredStatus(entry: Entry): StoredStatus {
  return { status: JSON.parse(entry.json), json: entry.json, checkedAtMs: entry.checkedAtMs };
}
