/**
 * The status store: the latest status of each generation and its version.
 *
 * Invariant, enforced by every implementation inside one atomic step: a
 * generation's version starts at 1 and rises by exactly 1 on each change of
 * content, and a write whose caller read an older version than the stored one
 * is rejected as stale, so a late poller can never overwrite a newer status.
 */
import type { UpstreamStatus } from "../wire/upstream.js";
import type { RelayStatus } from "../wire/relay.js";

/** A status as stored: the parsed object and its JSON text, serialized once when it was written. */
export interface StoredStatus {
  status: RelayStatus;
  json: string;
  /** When a poll last confirmed this status (ms since the epoch), whichever instance made it; unset when unknown. */
  checkedAtMs?: number;
}

export interface Observation {
  /** Runblob's status object as received (unknown fields kept). */
  upstream: UpstreamStatus;
  /** When the relay received it; becomes `updated_at` if the content changed. */
  observedAt: Date;
}

export type RecordOutcome =
  /** Content differed from the stored status: written with version `expectedVersion + 1`. */
  | "changed"
  /** Same content as stored (key order, `version` and `updated_at` ignored): nothing written, TTL refreshed. */
  | "unchanged"
  /** Content differed, but the stored version was no longer `expectedVersion`: nothing written. A missing entry is never stale. */
  | "stale";

export interface RecordResult extends StoredStatus {
  outcome: RecordOutcome;
}

export interface StatusStore {
  get(generationId: string): Promise<StoredStatus | null>;
  /**
   * Compare-and-set write of one observation.
   * @param expectedVersion the version the caller read before it asked Runblob, 0 when nothing was stored.
   * @param minVersion the highest version the caller has already delivered (0 by default). A write
   *   gets a version above it, and equal content stored below it is written again with a higher
   *   version. Only an instance that delivered statuses while the store was unreachable needs it,
   *   so its subscribers never see a version go backwards.
   * @returns the outcome and the status stored after the call (the new one, or the current one).
   */
  record(generationId: string, observation: Observation, expectedVersion: number, minVersion?: number): Promise<RecordResult>;
  close(): Promise<void>;
}
