/**
 * Stream tickets and grants: short HS256 JWTs that a browser can put in a URL.
 *
 * A ticket is issued by the relay (POST /v1/sora/tickets) to an authenticated
 * caller and stands for that caller on the stream URLs until it expires
 * (AUTH_TICKET_TTL_SECONDS). It may be used more than once until then, because
 * EventSource reconnects repeat the same URL.
 *
 * A grant is minted by the application's backend with AUTH_GRANT_SECRET and
 * lets its holder read the listed generations until it expires. Claims:
 * `sub` (the user), `gen` (generation ids), `exp` (required), `aud`
 * "runblob-relay:grant". The README shows how to mint one.
 *
 * Each kind has its own audience and secret (the configuration rejects a
 * shared secret), so neither can pass for the other or for a user token.
 */
import { randomUUID } from "node:crypto";
import { SignJWT, errors, jwtVerify } from "jose";
import { z } from "zod";
import type { JWTPayload } from "jose";
import { generationIdSchema } from "../wire/relay.js";
import { CredentialError, userPrincipal } from "./principal.js";
import type { Principal } from "./principal.js";

const ISSUER = "runblob-relay";
export const TICKET_AUDIENCE = "runblob-relay:ticket";
export const GRANT_AUDIENCE = "runblob-relay:grant";
const TICKET_TYPE = "relay-ticket+jwt";
/** At most this many generation ids per grant: a grant travels in a URL. */
export const MAX_GRANT_IDS = 100;
const CLOCK_TOLERANCE_SECONDS = 5;

export interface IssuedTicket {
  ticket: string;
  expiresAt: Date;
}

export class TicketSigner {
  readonly #key: Uint8Array;

  constructor(
    secret: string,
    readonly ttlSeconds: number,
  ) {
    this.#key = new TextEncoder().encode(secret);
  }

  async issue(principal: Principal, now = Date.now()): Promise<IssuedTicket> {
    const issuedAt = Math.floor(now / 1000);
    const expiresAt = issuedAt + this.ttlSeconds;
    const ticket = await new SignJWT({ adm: principal.admin })
      .setProtectedHeader({ alg: "HS256", typ: TICKET_TYPE })
      .setIssuer(ISSUER)
      .setAudience(TICKET_AUDIENCE)
      .setSubject(principal.userId)
      .setIssuedAt(issuedAt)
      .setExpirationTime(expiresAt)
      .setJti(randomUUID())
      .sign(this.#key);
    return { ticket, expiresAt: new Date(expiresAt * 1000) };
  }

  async verify(ticket: string): Promise<Principal> {
    let payload: JWTPayload;
    try {
      ({ payload } = await jwtVerify(ticket, this.#key, {
        algorithms: ["HS256"],
        issuer: ISSUER,
        audience: TICKET_AUDIENCE,
        typ: TICKET_TYPE,
        requiredClaims: ["sub", "exp"],
        clockTolerance: CLOCK_TOLERANCE_SECONDS,
      }));
    } catch (error) {
      throw signedTokenError("ticket", error, "request a new one from POST /v1/sora/tickets");
    }
    return userPrincipal(payload.sub!, payload.adm === true, "ticket");
  }
}

export interface Grant {
  userId: string;
  generationIds: ReadonlySet<string>;
}

export class GrantVerifier {
  readonly #key: Uint8Array;

  constructor(secret: string) {
    this.#key = new TextEncoder().encode(secret);
  }

  async verify(grant: string): Promise<Grant> {
    let payload: JWTPayload;
    try {
      ({ payload } = await jwtVerify(grant, this.#key, {
        algorithms: ["HS256"],
        audience: GRANT_AUDIENCE,
        requiredClaims: ["sub", "exp"],
        clockTolerance: CLOCK_TOLERANCE_SECONDS,
      }));
    } catch (error) {
      throw signedTokenError("grant", error, "ask the application for a new one");
    }
    // Parsed like the ids of requests (lowercased), so an id matches whatever its case in the grant.
    const ids = z.array(generationIdSchema).min(1).max(MAX_GRANT_IDS).safeParse(payload.gen);
    if (!ids.success) {
      throw new CredentialError(401, `invalid grant: gen must list 1-${MAX_GRANT_IDS} generation ids (UUIDs)`, "invalid_token", "grant_ids");
    }
    if (typeof payload.sub !== "string" || payload.sub.length === 0) {
      throw new CredentialError(401, "invalid grant: sub must name the user", "invalid_token", "grant_subject");
    }
    return { userId: payload.sub, generationIds: new Set(ids.data) };
  }
}

function signedTokenError(kind: "ticket" | "grant", error: unknown, remedy: string): CredentialError {
  const expired = error instanceof errors.JWTExpired;
  const detail = expired ? `${kind} has expired: ${remedy}` : `invalid ${kind}: ${remedy}`;
  return new CredentialError(401, detail, "invalid_token", `${kind}_${expired ? "expired" : "invalid"}`, { cause: error });
}
