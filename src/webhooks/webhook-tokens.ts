/**
 * Webhook URLs of generations created through the relay. Runblob signs no
 * webhook, so the URL itself is the secret: each generation gets a random
 * 256-bit token in its callback path. Only a SHA-256 hash of the token is
 * stored, so a leaked store does not reveal working URLs.
 */
import { createHash, randomBytes } from "node:crypto";
import type { RedisConnection } from "../cluster/redis-connection.js";

export const WEBHOOK_TOKEN_PATTERN = /^[A-Za-z0-9_-]{43}$/;

export function newWebhookToken(): string {
  return randomBytes(32).toString("base64url");
}

function tokenHash(token: string): string {
  return createHash("sha256").update(token).digest("base64url");
}

export interface WebhookTokens {
  /** Remembers which generation a token belongs to, for `ttlSeconds`. */
  save(token: string, generationId: string): Promise<void>;
  /** Returns the generation of a token, or null for an unknown or expired one. */
  lookup(token: string): Promise<string | null>;
}

export class MemoryWebhookTokens implements WebhookTokens {
  readonly #entries = new Map<string, { generationId: string; expiresAt: number }>();

  constructor(private readonly ttlSeconds: number) {}

  async save(token: string, generationId: string): Promise<void> {
    const now = Date.now();
    if (this.#entries.size >= 10_000) {
      for (const [key, entry] of this.#entries) if (entry.expiresAt <= now) this.#entries.delete(key);
    }
    this.#entries.set(tokenHash(token), { generationId, expiresAt: now + this.ttlSeconds * 1000 });
  }

  async lookup(token: string): Promise<string | null> {
    const entry = this.#entries.get(tokenHash(token));
    if (entry === undefined || entry.expiresAt <= Date.now()) return null;
    return entry.generationId;
  }
}

export class RedisWebhookTokens implements WebhookTokens {
  constructor(
    private readonly redis: RedisConnection,
    private readonly keyPrefix: string,
    private readonly ttlSeconds: number,
  ) {}

  async save(token: string, generationId: string): Promise<void> {
    await this.redis.set(this.#key(token), generationId, "EX", this.ttlSeconds);
  }

  async lookup(token: string): Promise<string | null> {
    return this.redis.get(this.#key(token));
  }

  #key(token: string): string {
    return `${this.keyPrefix}webhook:${tokenHash(token)}`;
  }
}
