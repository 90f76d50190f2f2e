/**
 * The right to poll a generation. Exactly one relay instance holds it at a
 * time, so each watched generation is polled once per interval for the whole
 * cluster however many instances watch it.
 */

export interface PollClaim {
  /** True when this instance holds the lease now and should poll. */
  granted: boolean;
  /** Polls of this generation so far, counted across instances, this one included when granted. */
  attempts: number;
}

export interface PollLease {
  /** Claims or renews the lease; never throws (an implementation that cannot reach its backend grants locally). */
  claim(generationId: string): Promise<PollClaim>;
  /** Takes back the attempt counted by this instance's last granted claim, for a poll that was never sent. */
  refund(generationId: string): Promise<void>;
  /** Gives the lease up, and forgets the attempt count once `forget` is set (the watch is over for good). */
  release(generationId: string, forget?: boolean): Promise<void>;
  /** Releases every lease this instance holds, so others take over at once (graceful leave). */
  releaseAll(): Promise<void>;
}

/**
 * The lease of a single instance: always granted. Attempt counts live for
 * `attemptsTtlMs` after the last claim, as in the Redis lease, so a watch that
 * timed out does not start over on the next subscriber within that time.
 */
export class LocalPollLease implements PollLease {
  readonly #attempts = new Map<string, { count: number; expiresAt: number }>();

  constructor(
    private readonly attemptsTtlMs: number,
    private readonly now: () => number = Date.now,
  ) {}

  async claim(generationId: string): Promise<PollClaim> {
    return { granted: true, attempts: this.countAttempt(generationId) };
  }

  /** Counts one poll; also used by the Redis lease while Redis is unreachable. */
  countAttempt(generationId: string): number {
    const now = this.now();
    const current = this.#attempts.get(generationId);
    const count = current !== undefined && current.expiresAt > now ? current.count + 1 : 1;
    this.#attempts.set(generationId, { count, expiresAt: now + this.attemptsTtlMs });
    if (this.#attempts.size > 1024 && count === 1) this.#sweep(now);
    return count;
  }

  async refund(generationId: string): Promise<void> {
    this.uncountAttempt(generationId);
  }

  /** Takes one counted poll back; also used by the Redis lease while Redis is unreachable. */
  uncountAttempt(generationId: string): void {
    const current = this.#attempts.get(generationId);
    if (current !== undefined && current.count > 0) current.count -= 1;
  }

  async release(generationId: string, forget = false): Promise<void> {
    if (forget) this.#attempts.delete(generationId);
  }

  async releaseAll(): Promise<void> {}

  #sweep(now: number): void {
    for (const [generationId, entry] of this.#attempts) {
      if (entry.expiresAt <= now) this.#attempts.delete(generationId);
    }
  }
}
