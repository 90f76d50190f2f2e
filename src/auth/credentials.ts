/**
 * Reads the credentials a request presents: `Authorization: Bearer`, the
 * AUTH_COOKIE cookie, and the `ticket` and `grant` query parameters (or the
 * X-Relay-Grant header). The query parameters are removed from the parsed
 * query, so route validation never gets them and no error message can echo
 * them. The logger writes URLs without their query string.
 */
import type { FastifyRequest } from "fastify";
import { CredentialError } from "./principal.js";

export const GRANT_HEADER = "x-relay-grant";

export interface PresentedCredentials {
  bearer?: string;
  cookie?: string;
  ticket?: string;
  grant?: string;
}

/** RFC 6750 b64token. */
const BEARER = /^Bearer +([A-Za-z0-9\-._~+/]+=*) *$/i;
/** Credentials longer than this are rejected unread. */
const MAX_CREDENTIAL_LENGTH = 8192;

export function takeCredentials(request: FastifyRequest, cookieName: string | undefined): PresentedCredentials {
  const presented: PresentedCredentials = {};
  const ticket = takeQueryParameter(request, "ticket");
  const grantQuery = takeQueryParameter(request, "grant");

  const authorization = request.headers.authorization;
  if (authorization !== undefined) {
    const match = BEARER.exec(authorization);
    if (match === null) {
      throw new CredentialError(401, "the Authorization header must be Bearer <token>", "invalid_request", "malformed_authorization");
    }
    presented.bearer = checkedLength(match[1]!, "bearer token");
  }
  if (cookieName !== undefined) {
    const cookie = readCookie(request.headers.cookie, cookieName);
    if (cookie !== undefined) presented.cookie = checkedLength(cookie, `cookie ${cookieName}`);
  }
  if (ticket !== undefined) presented.ticket = checkedLength(ticket, "ticket");

  const grantHeader = request.headers[GRANT_HEADER];
  if (Array.isArray(grantHeader)) throw once("grant");
  const grant = grantQuery ?? grantHeader;
  if (grant !== undefined) presented.grant = checkedLength(grant, "grant");
  return presented;
}

function takeQueryParameter(request: FastifyRequest, name: string): string | undefined {
  const query = request.query as Record<string, unknown> | undefined;
  if (query === undefined || query === null || !Object.hasOwn(query, name)) return undefined;
  const value = query[name];
  delete query[name];
  if (typeof value !== "string") throw once(name);
  return value;
}

function once(name: string): CredentialError {
  return new CredentialError(401, `send one ${name}, not several`, "invalid_request", `repeated_${name}`);
}

function checkedLength(value: string, what: string): string {
  if (value.length === 0 || value.length > MAX_CREDENTIAL_LENGTH) {
    throw new CredentialError(401, `the ${what} must be 1-${MAX_CREDENTIAL_LENGTH} characters`, "invalid_request", "credential_length");
  }
  return value;
}

/** Returns the value of one cookie of a Cookie header (RFC 6265), URL-decoded when it is percent-encoded. */
function readCookie(header: string | undefined, name: string): string | undefined {
  if (header === undefined) return undefined;
  for (const pair of header.split(";")) {
    const separator = pair.indexOf("=");
    if (separator === -1 || pair.slice(0, separator).trim() !== name) continue;
    let value = pair.slice(separator + 1).trim();
    if (value.startsWith('"') && value.endsWith('"') && value.length >= 2) value = value.slice(1, -1);
    try {
      return decodeURIComponent(value);
    } catch {
      return value;
    }
  }
  return undefined;
}
