/**
 * The API keys of AUTH_MODE=api-key. Only SHA-256 digests of the keys are
 * kept, and a presented key is hashed and compared with every digest by
 * timingSafeEqual, so neither the comparison's time nor an early exit tells
 * how much of a key was right.
 */
import { createHash, timingSafeEqual } from "node:crypto";
import type { ApiKeyEntry } from "./auth-env.js";
import { CredentialError, userPrincipal } from "./principal.js";
import type { Principal } from "./principal.js";

interface KeyDigest {
  digest: Buffer;
  userId: string;
  admin: boolean;
}

const digestOf = (key: string) => createHash("sha256").update(key, "utf8").digest();

export class ApiKeyVerifier {
  readonly #keys: KeyDigest[];

  constructor(entries: readonly ApiKeyEntry[]) {
    this.#keys = entries.map(({ key, userId, admin }) => ({ digest: digestOf(key), userId, admin }));
  }

  verify(presented: string): Principal {
    const digest = digestOf(presented);
    let match: KeyDigest | undefined;
    for (const key of this.#keys) {
      // No early exit: every digest is compared whatever matched before.
      if (timingSafeEqual(key.digest, digest)) match = key;
    }
    if (match === undefined) throw new CredentialError(401, "invalid API key", "invalid_token", "unknown_api_key");
    return userPrincipal(match.userId, match.admin, "api-key");
  }
}
