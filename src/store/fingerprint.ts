/**
 * What every StatusStore shares: the fingerprint that decides "same content",
 * the relay status JSON text, and the checks on record() arguments. Both
 * stores call these functions, so they store byte-identical JSON for the same
 * inputs and reject the same invalid arguments.
 */
import type { UpstreamStatus } from "../wire/upstream.js";
import type { RelayStatus } from "../wire/relay.js";

/** Keys that the relay adds to an upstream status, so they are not content. */
const RELAY_KEYS: ReadonlySet<string> = new Set(["version", "updated_at"]);

/**
 * Computes the content fingerprint of an upstream status: canonical JSON with object keys sorted
 * recursively and array items kept in order, without top-level `version` and `updated_at` keys.
 * Two statuses have the same content exactly when their fingerprints are equal.
 */
export function fingerprint(upstream: UpstreamStatus): string {
  const content = Object.fromEntries(Object.entries(upstream).filter(([key]) => !RELAY_KEYS.has(key)));
  return canonicalJson(content);
}

/**
 * Serializes an upstream status as the relay status of `version`, observed at `observedAt`.
 * Key order is the upstream keys as received, then `version`, then `updated_at`. An upstream key
 * named `version` or `updated_at` is dropped, because the relay owns those two names.
 */
export function serializeRelayStatus(upstream: UpstreamStatus, version: number, observedAt: Date): string {
  const { version: _upstreamVersion, updated_at: _upstreamUpdatedAt, ...content } = upstream;
  const status: RelayStatus = { ...content, version, updated_at: observedAt.toISOString() };
  return JSON.stringify(status);
}

/** Converts a TTL in seconds to whole milliseconds, as PEXPIRE takes it. */
export function ttlMilliseconds(ttlSeconds: number): number {
  const ttlMs = Math.round(ttlSeconds * 1000);
  if (!Number.isFinite(ttlMs) || ttlMs < 1) {
    throw new RangeError(`invalid ttlSeconds ${ttlSeconds}: expected a positive number of seconds`);
  }
  return ttlMs;
}

export function assertVersion(expectedVersion: number): void {
  if (!Number.isSafeInteger(expectedVersion) || expectedVersion < 0) {
    throw new RangeError(`invalid expectedVersion ${expectedVersion}: expected an integer of 0 or more`);
  }
}

/** Serializes a JSON value with object keys sorted at every depth and array items in order. */
function canonicalJson(value: unknown): string {
  if (Array.isArray(value)) return `[${value.map(canonicalJson).join(",")}]`;
  if (value !== null && typeof value === "object") {
    const entries = Object.entries(value as Record<string, unknown>)
      .filter(([, item]) => item !== undefined)
      .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
    return `{${entries.map(([key, item]) => `${JSON.stringify(key)}:${canonicalJson(item)}`).join(",")}}`;
  }
  return JSON.stringify(value) ?? "null";
}
