/** Storage keys for per-user data. */
import { createHash } from "node:crypto";

/**
 * Returns the hash that stands for a user in Redis keys and hash tags: user
 * ids come from tokens and may hold any character, so they never appear in a
 * key as they are. 32 hex digits (128 bits of SHA-256) make collisions negligible.
 */
export function userKeyOf(userId: string): string {
  return createHash("sha256").update(userId, "utf8").digest("hex").slice(0, 32);
}
