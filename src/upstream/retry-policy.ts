/**
 * When to retry a Runblob request, and how long to wait first.
 *
 * Retried: network errors, timeouts, and HTTP 408, 429, 502, 503, 504. Not
 * retried: other 4xx (the request itself is wrong, or the token is) and 500
 * (a server bug that a retry rarely fixes). Generate requests are never
 * retried, whatever the error, because a lost response may have created and
 * charged a generation; callers only use this policy for reads.
 */
import { UpstreamError } from "./errors.js";

const RETRYABLE_STATUS = new Set([408, 429, 502, 503, 504]);

export interface RetryPolicyOptions {
  /** Total attempts, the first one included. */
  maxAttempts: number;
  /** Cap of the exponential part before jitter, in ms; attempt n waits up to baseMs * 2^(n-1). */
  baseMs: number;
  maxDelayMs: number;
}

export function isRetryable(error: unknown): boolean {
  if (!(error instanceof UpstreamError)) return false;
  if (error.kind === "timeout" || error.kind === "network") return true;
  return error.kind === "http" && error.statusCode !== null && RETRYABLE_STATUS.has(error.statusCode);
}

/**
 * Delay before retry number `retry` (1 for the first retry): exponential
 * backoff with full jitter (a uniform draw between 0 and the exponential
 * cap), or Runblob's Retry-After when it asks for longer.
 */
export function retryDelayMs(retry: number, error: unknown, options: RetryPolicyOptions, random: () => number = Math.random): number {
  const cap = Math.min(options.maxDelayMs, options.baseMs * 2 ** (retry - 1));
  const jittered = Math.floor(random() * cap);
  const retryAfter = error instanceof UpstreamError ? error.retryAfterMs : undefined;
  return retryAfter === undefined ? jittered : Math.max(jittered, Math.min(retryAfter, options.maxDelayMs));
}

/**
 * Parses a Retry-After header (RFC 9110, section 10.2.3): delay seconds or
 * an HTTP date. Returns milliseconds from `now`, or undefined when absent or invalid.
 */
export function parseRetryAfter(value: string | string[] | undefined, now: number = Date.now()): number | undefined {
  const text = Array.isArray(value) ? value[0] : value;
  if (text === undefined || text.trim() === "") return undefined;
  if (/^\d+$/.test(text.trim())) return Number(text.trim()) * 1000;
  const date = Date.parse(text);
  if (Number.isNaN(date)) return undefined;
  return Math.max(0, date - now);
}

/** Runs `request`, retrying retryable failures per the policy; the last error is rethrown. */
export async function withRetries<T>(
  request: () => Promise<T>,
  options: RetryPolicyOptions,
  onRetry?: (retry: number, delayMs: number, error: unknown) => void,
): Promise<T> {
  for (let attempt = 1; ; attempt += 1) {
    try {
      return await request();
    } catch (error) {
      if (attempt >= options.maxAttempts || !isRetryable(error)) throw error;
      const delay = retryDelayMs(attempt, error, options);
      onRetry?.(attempt, delay, error);
      await new Promise((resolve) => setTimeout(resolve, delay));
    }
  }
}
