/**
 * Verifies the bearer JWTs of AUTH_MODE=jwt with jose.
 *
 * The algorithms are pinned by the kind of key: HS256 alone with
 * AUTH_JWT_SECRET, and only the asymmetric AUTH_JWT_ALGORITHMS with
 * AUTH_JWKS_URL. So a token with `alg: none` never verifies (jose rejects
 * unsecured tokens in jwtVerify), and a token signed with HS256 using the
 * public key as the HMAC secret is rejected before any key is used.
 */
import { createRemoteJWKSet, errors, jwtVerify } from "jose";
import type { JWTPayload, JWTVerifyGetKey, JWTVerifyOptions } from "jose";
import type { AdminClaim } from "./auth-env.js";
import { parseAdminClaim } from "./auth-env.js";
import { CredentialError, userPrincipal } from "./principal.js";
import type { Principal } from "./principal.js";

export interface JwtVerifierOptions {
  secret?: string | undefined;
  jwksUrl?: string | undefined;
  /** Algorithms accepted from the key set; ignored with a secret. */
  algorithms: readonly string[];
  issuer?: string | undefined;
  audience?: string | undefined;
  adminClaim?: string | undefined;
}

/** Allowed difference between the relay's clock and the issuer's, for `exp`, `nbf` and `iat`. */
const CLOCK_TOLERANCE_SECONDS = 5;
/** Key set fetches: a slow issuer fails the request instead of holding it. */
const JWKS_TIMEOUT_MS = 5000;
/** Keys are fetched again at most this often when a token names an unknown `kid`. */
const JWKS_COOLDOWN_MS = 30_000;
/** Keys are fetched again after this age even when every `kid` is known, so removed keys stop working. */
const JWKS_MAX_AGE_MS = 10 * 60_000;
const MAX_SUBJECT_LENGTH = 256;

export class JwtVerifier {
  readonly #key: Uint8Array | JWTVerifyGetKey;
  readonly #options: JWTVerifyOptions;
  readonly #adminClaim: AdminClaim | undefined;

  constructor(options: JwtVerifierOptions) {
    if (options.secret !== undefined) {
      this.#key = new TextEncoder().encode(options.secret);
      this.#options = { algorithms: ["HS256"] };
    } else if (options.jwksUrl !== undefined) {
      this.#key = createRemoteJWKSet(new URL(options.jwksUrl), {
        timeoutDuration: JWKS_TIMEOUT_MS,
        cooldownDuration: JWKS_COOLDOWN_MS,
        cacheMaxAge: JWKS_MAX_AGE_MS,
      });
      this.#options = { algorithms: [...options.algorithms] };
    } else {
      throw new Error("JwtVerifier needs AUTH_JWT_SECRET or AUTH_JWKS_URL");
    }
    this.#options = {
      ...this.#options,
      clockTolerance: CLOCK_TOLERANCE_SECONDS,
      requiredClaims: ["sub", "exp"],
      ...(options.issuer === undefined ? {} : { issuer: options.issuer }),
      ...(options.audience === undefined ? {} : { audience: options.audience }),
    };
    this.#adminClaim = options.adminClaim === undefined ? undefined : parseAdminClaim(options.adminClaim);
  }

  /** Verifies a token and returns its user; throws CredentialError when it is not acceptable. */
  async verify(token: string): Promise<Principal> {
    let payload: JWTPayload;
    try {
      // The two overloads of jwtVerify differ only in the key's type.
      payload =
        this.#key instanceof Uint8Array
          ? (await jwtVerify(token, this.#key, this.#options)).payload
          : (await jwtVerify(token, this.#key, this.#options)).payload;
    } catch (error) {
      throw toCredentialError(error);
    }
    const subject = payload.sub;
    if (typeof subject !== "string" || subject.length === 0 || subject.length > MAX_SUBJECT_LENGTH) {
      throw new CredentialError(401, `invalid token: the sub claim must be a user id of 1-${MAX_SUBJECT_LENGTH} characters`, "invalid_token", "bad_subject");
    }
    return userPrincipal(subject, this.#isAdmin(payload), "jwt");
  }

  #isAdmin(payload: JWTPayload): boolean {
    const claim = this.#adminClaim;
    if (claim === undefined) return false;
    let value: unknown = payload;
    for (const part of claim.path) {
      if (typeof value !== "object" || value === null) return false;
      value = (value as Record<string, unknown>)[part];
    }
    if (claim.value === undefined) return value === true;
    return Array.isArray(value) ? value.includes(claim.value) : value === claim.value;
  }
}

/** Maps jose's errors to responses that name what failed, without the token. */
function toCredentialError(error: unknown): CredentialError {
  const invalid = (detail: string, reason: string) => new CredentialError(401, `invalid token: ${detail}`, "invalid_token", reason, { cause: error });
  if (error instanceof errors.JWTExpired) return invalid("it has expired; get a new one", "expired");
  if (error instanceof errors.JWTClaimValidationFailed) return invalid(`the ${error.claim} claim check failed (${error.reason.replace("_", " ")})`, `claim_${error.claim}`);
  if (error instanceof errors.JOSEAlgNotAllowed) return invalid("its signing algorithm is not accepted", "algorithm");
  if (error instanceof errors.JWSSignatureVerificationFailed) return invalid("the signature does not verify", "signature");
  if (error instanceof errors.JWKSNoMatchingKey || error instanceof errors.JWKSMultipleMatchingKeys) {
    return invalid("no key of AUTH_JWKS_URL matches its kid and algorithm", "no_matching_key");
  }
  if (error instanceof errors.JWSInvalid || error instanceof errors.JWTInvalid || error instanceof errors.JOSENotSupported) {
    return invalid("it is not a well-formed signed JWT", "malformed");
  }
  // Fetch failures and timeouts of the key set: the token may be fine.
  return new CredentialError(503, "the relay could not load the token signing keys; try again shortly", undefined, "jwks_unavailable", { cause: error });
}
