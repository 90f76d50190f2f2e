/**
 * Ownership records in Redis, for every instance:
 *   <prefix>{<generation id>}:owner              the creator's user id (TTL: the store's)
 *   <prefix>owner:{<user key>}:generations       sorted set of the user's generation ids by creation time
 * The owner key shares the `{<generation id>}` hash tag of the generation's
 * other keys; the list lives on the user's slot, so the two are written by
 * separate commands.
 *
 * Records written by this instance are also kept in memory (at most
 * LOCAL_ENTRIES), so a creator can still watch a new generation while Redis
 * is unreachable.
 */
import type { Logger } from "pino";
import type { RedisConnection } from "../cluster/redis-connection.js";
import type { OwnershipStore } from "./ownership-store.js";
import { userKeyOf } from "./user-key.js";

const LOCAL_ENTRIES = 10_000;

export class RedisOwnershipStore implements OwnershipStore {
  /** Records written by this instance, oldest first (a Map keeps insertion order). */
  readonly #local = new Map<string, { userId: string; createdAtMs: number }>();

  constructor(
    private readonly options: { redis: RedisConnection; keyPrefix: string; ttlSeconds: number; logger: Logger; now?: () => number },
  ) {}

  async record(generationId: string, userId: string, createdAtMs: number): Promise<void> {
    this.#remember(generationId, userId, createdAtMs);
    const { redis, ttlSeconds } = this.options;
    const listKey = this.#listKey(userId);
    try {
      await redis.set(this.#ownerKey(generationId), userId, "EX", ttlSeconds, "NX");
      await redis
        .multi()
        .zadd(listKey, createdAtMs, generationId)
        .zremrangebyscore(listKey, "-inf", `(${this.#now() - ttlSeconds * 1000}`)
        .expire(listKey, ttlSeconds)
        .exec();
    } catch (error) {
      // The local copy still lets the creator on this instance read it; other instances respond 404 until Redis has it.
      this.options.logger.error({ err: error, generation_id: generationId }, "could not record the creator of a generation in Redis");
    }
  }

  /**
   * Asks Redis first even when the local copy knows the creator, so a
   * generation created on this instance takes as long to check as an unknown
   * id and response times tell nothing about which ids exist.
   */
  async ownerOf(generationId: string): Promise<string | null> {
    let owner: string | null;
    try {
      owner = await this.options.redis.get(this.#ownerKey(generationId));
    } catch (error) {
      const local = this.#localOwner(generationId);
      if (local === null) throw error;
      return local;
    }
    // Null with a local copy: the write to Redis failed, and the creator on this instance still reads it.
    return owner ?? this.#localOwner(generationId);
  }

  #localOwner(generationId: string): string | null {
    const local = this.#local.get(generationId);
    if (local === undefined || this.#now() - local.createdAtMs >= this.options.ttlSeconds * 1000) return null;
    return local.userId;
  }

  async list(userId: string, offset: number, limit: number): Promise<string[]> {
    const listKey = this.#listKey(userId);
    const oldest = this.#now() - this.options.ttlSeconds * 1000;
    return this.options.redis.zrevrangebyscore(listKey, "+inf", oldest, "LIMIT", offset, limit);
  }

  async close(): Promise<void> {
    this.#local.clear();
  }

  #remember(generationId: string, userId: string, createdAtMs: number): void {
    this.#local.set(generationId, { userId, createdAtMs });
    if (this.#local.size > LOCAL_ENTRIES) this.#local.delete(this.#local.keys().next().value!);
  }

  #now(): number {
    return (this.options.now ?? Date.now)();
  }

  #ownerKey(generationId: string): string {
    return `${this.options.keyPrefix}{${generationId}}:owner`;
  }

  #listKey(userId: string): string {
    return `${this.options.keyPrefix}owner:{${userKeyOf(userId)}}:generations`;
  }
}
