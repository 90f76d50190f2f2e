/**
 * Who created each generation through the relay. Reads of a generation by
 * anyone but its creator, an admin or a grant holder get the response for an
 * unknown id, and each user's list comes from here.
 *
 * Entries expire `ttlSeconds` after creation (STATUS_TTL_SECONDS, like stored
 * statuses); after that only admins and grant holders can read the generation.
 */

export interface OwnershipStore {
  /** Records `userId` as the creator of a generation created at `createdAtMs`. */
  record(generationId: string, userId: string, createdAtMs: number): Promise<void>;
  /** Returns the creator, or null when the relay has no record of the generation. */
  ownerOf(generationId: string): Promise<string | null>;
  /** Returns one page of a user's generation ids, newest first. */
  list(userId: string, offset: number, limit: number): Promise<string[]>;
  close(): Promise<void>;
}

interface Entry {
  userId: string;
  createdAtMs: number;
}

/** Entries are swept at most this often, on writes. */
const SWEEP_INTERVAL_MS = 60_000;

/** Ownership records of this process only, for a single instance without Redis. */
export class MemoryOwnershipStore implements OwnershipStore {
  readonly #owners = new Map<string, Entry>();
  /** Each user's generations, oldest first. */
  readonly #byUser = new Map<string, Array<{ generationId: string; createdAtMs: number }>>();
  readonly #ttlMs: number;
  readonly #now: () => number;
  #lastSweepMs = 0;

  constructor(options: { ttlSeconds: number; now?: () => number }) {
    this.#ttlMs = options.ttlSeconds * 1000;
    this.#now = options.now ?? Date.now;
  }

  async record(generationId: string, userId: string, createdAtMs: number): Promise<void> {
    this.#sweep();
    if (this.#owners.has(generationId)) return;
    this.#owners.set(generationId, { userId, createdAtMs });
    const list = this.#byUser.get(userId) ?? [];
    // Creation times arrive nearly in order, so the insertion point is found from the end.
    let index = list.length;
    while (index > 0 && list[index - 1]!.createdAtMs > createdAtMs) index -= 1;
    list.splice(index, 0, { generationId, createdAtMs });
    this.#byUser.set(userId, list);
  }

  async ownerOf(generationId: string): Promise<string | null> {
    const entry = this.#owners.get(generationId);
    if (entry === undefined || this.#expired(entry.createdAtMs)) return null;
    return entry.userId;
  }

  async list(userId: string, offset: number, limit: number): Promise<string[]> {
    const live = (this.#byUser.get(userId) ?? []).filter((entry) => !this.#expired(entry.createdAtMs));
    return live
      .reverse()
      .slice(offset, offset + limit)
      .map((entry) => entry.generationId);
  }

  async close(): Promise<void> {
    this.#owners.clear();
    this.#byUser.clear();
  }

  #expired(createdAtMs: number): boolean {
    return this.#now() - createdAtMs >= this.#ttlMs;
  }

  #sweep(): void {
    const now = this.#now();
    if (now - this.#lastSweepMs < SWEEP_INTERVAL_MS) return;
    this.#lastSweepMs = now;
    for (const [generationId, entry] of this.#owners) if (this.#expired(entry.createdAtMs)) this.#owners.delete(generationId);
    for (const [userId, list] of this.#byUser) {
      const live = list.filter((entry) => !this.#expired(entry.createdAtMs));
      if (live.length === 0) this.#byUser.delete(userId);
      else this.#byUser.set(userId, live);
    }
  }
}
