/** Reconnect delays: exponential backoff with full jitter. */
export interface BackoffOptions {
  /** Upper bound of the first delay, in milliseconds (default 500). */
  initialDelayMs?: number;
  /** Upper bound of any delay, in milliseconds (default 30000). */
  maxDelayMs?: number;
}

/**
 * Returns a function that gives the next delay: a random value from 0 to
 * min(max, initial * 2^attempt), so clients that lost the same relay at the
 * same moment do not come back together. `reset` starts over after a success.
 */
export function createBackoff({ initialDelayMs = 500, maxDelayMs = 30_000 }: BackoffOptions = {}) {
  let attempt = 0;
  return {
    next: () => Math.random() * Math.min(maxDelayMs, initialDelayMs * 2 ** attempt++),
    reset: () => {
      attempt = 0;
    },
  };
}
