/**
 * The change bus carries each status change from the instance that observed it
 * to every instance that has subscribers, itself included.
 */
import type { StoredStatus } from "../store/status-store.js";

export interface StatusChange extends StoredStatus {
  generationId: string;
  /** Milliseconds since the epoch when the poll response arrived, for push latency metrics. */
  observedAtMs: number;
}

/** Non-status events about one generation, published like changes. */
export type WatchEvent =
  | { kind: "status"; change: StatusChange }
  | { kind: "timeout"; generationId: string }
  | { kind: "not_found"; generationId: string }
  | { kind: "upstream_error"; generationId: string; message: string }
  /** Runblob may have a newer status (a webhook reported it): the instance that holds the lease polls at once. */
  | { kind: "poll_hint"; generationId: string }
  /** An instance's circuit breaker opened ("degraded") or closed ("ok"), sent to every subscriber. */
  | { kind: "upstream"; state: "degraded" | "ok" };

/** The generation an event is about, or undefined for events about Runblob as a whole. */
export function generationIdOf(event: WatchEvent): string | undefined {
  if (event.kind === "status") return event.change.generationId;
  if (event.kind === "upstream") return undefined;
  return event.generationId;
}

export interface ChangeBus {
  publish(event: WatchEvent): Promise<void>;
  /** Registers the single consumer of events, called once per event in publish order per generation. */
  onEvent(handler: (event: WatchEvent) => void): void;
  close(): Promise<void>;
}
