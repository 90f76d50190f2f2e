/**
 * Turns the credentials a request presents into a Principal, by the rules of
 * AUTH_MODE and the route's policy:
 *   1. A bearer token or the AUTH_COOKIE cookie is a JWT or an API key, by mode.
 *      An invalid one is rejected, even when a ticket or grant comes with it.
 *   2. Otherwise a ticket, on routes that accept tickets.
 *   3. A grant, on routes that accept grants, adds its generation ids to the
 *      caller from step 1 or 2; alone, it makes the caller its user, limited
 *      to its ids.
 */
import type { AuthMode } from "./auth-env.js";
import type { ApiKeyVerifier } from "./api-keys.js";
import type { JwtVerifier } from "./jwt-verifier.js";
import type { PresentedCredentials } from "./credentials.js";
import { CredentialError } from "./principal.js";
import type { Principal } from "./principal.js";
import type { RoutePolicy } from "./route-policy.js";
import type { GrantVerifier, TicketSigner } from "./signed-tokens.js";

export interface AuthenticatorOptions {
  mode: Exclude<AuthMode, "none">;
  jwt?: JwtVerifier;
  apiKeys?: ApiKeyVerifier;
  tickets: TicketSigner;
  grants?: GrantVerifier;
}

export class Authenticator {
  constructor(private readonly options: AuthenticatorOptions) {}

  async authenticate(presented: PresentedCredentials, policy: RoutePolicy): Promise<Principal> {
    let principal: Principal | undefined;
    const userCredential = presented.bearer ?? presented.cookie;
    if (userCredential !== undefined) {
      principal = await this.#verifyUserCredential(userCredential);
    } else if (presented.ticket !== undefined) {
      if (!policy.tickets) {
        throw new CredentialError(401, "tickets are accepted only on the SSE and WebSocket URLs: send Authorization: Bearer <token>", "invalid_request", "ticket_not_accepted");
      }
      principal = await this.options.tickets.verify(presented.ticket);
    }

    if (presented.grant !== undefined && policy.grants) {
      const grants = this.options.grants;
      if (grants === undefined) throw new CredentialError(401, "this relay does not accept grants (AUTH_GRANT_SECRET is not set)", "invalid_token", "grants_disabled");
      const grant = await grants.verify(presented.grant);
      principal =
        principal === undefined
          ? { userId: grant.userId, admin: false, credential: "grant", grantedIds: grant.generationIds }
          : { ...principal, grantedIds: grant.generationIds };
    }

    if (principal === undefined) throw new CredentialError(401, missingDetail(policy), undefined, "missing");
    return principal;
  }

  async #verifyUserCredential(credential: string): Promise<Principal> {
    if (this.options.mode === "jwt") return this.options.jwt!.verify(credential);
    return this.options.apiKeys!.verify(credential);
  }
}

function missingDetail(policy: RoutePolicy): string {
  const alternatives = ["Authorization: Bearer <token>"];
  if (policy.tickets) alternatives.push("a ticket from POST /v1/sora/tickets as ?ticket=");
  if (policy.grants) alternatives.push("a grant as ?grant= or the X-Relay-Grant header");
  return `authentication required: send ${alternatives.join(", or ")}`;
}
