/** Who is calling: the identity every authorization, ownership and limit check is made for. */

export type CredentialKind = "none" | "jwt" | "api-key" | "ticket" | "grant";

export interface Principal {
  /** The user id: a JWT's `sub`, an API key's user, or the user a ticket or grant names. */
  userId: string;
  /** Admins read every generation and get Runblob's full list. */
  admin: boolean;
  /** How the caller authenticated. */
  credential: CredentialKind;
  /** Generations a grant lets this caller read, beyond the user's own. */
  grantedIds: ReadonlySet<string>;
}

const NO_IDS: ReadonlySet<string> = new Set();

/** The caller of every request when AUTH_MODE=none: no identity, no ownership, every generation readable. */
export const ANONYMOUS: Principal = Object.freeze({ userId: "anonymous", admin: true, credential: "none", grantedIds: NO_IDS });

export function userPrincipal(userId: string, admin: boolean, credential: CredentialKind): Principal {
  return { userId, admin, credential, grantedIds: NO_IDS };
}

/**
 * Raised when a request's credentials are missing or invalid (401), or when
 * they cannot be checked right now (503). `detail` goes to the client: it
 * names what failed and never contains the credential.
 */
export class CredentialError extends Error {
  override readonly name = "CredentialError";

  constructor(
    readonly statusCode: 401 | 503,
    readonly detail: string,
    /** The RFC 6750 error code for the WWW-Authenticate header, for 401 responses. */
    readonly bearerError: "invalid_request" | "invalid_token" | undefined,
    /** A short fixed reason for logs and repeat-limiter keys. */
    readonly reason: string,
    options?: ErrorOptions,
  ) {
    super(detail, options);
  }
}
