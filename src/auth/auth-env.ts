/**
 * Environment variables of client authentication, origins and proxies, and
 * the checks that span several of them. src/config/env.ts merges the shape
 * into the relay's schema and calls checkAuthEnv after parsing.
 */
import { z } from "zod";
import { emptyAsUndefined, integerValue, optionalText, secretValue } from "../config/env-values.js";

export const AUTH_MODES = ["jwt", "api-key", "none"] as const;
export type AuthMode = (typeof AUTH_MODES)[number];

/** Asymmetric algorithms a JWKS key may sign with; HS* is never accepted from a key set. */
export const JWKS_ALGORITHMS = ["RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA"] as const;

/** Minimum length of every HMAC secret: 32 characters, as HS256 needs a key of at least 256 bits. */
const MIN_SECRET_LENGTH = 32;

const USER_ID_PATTERN = /^[A-Za-z0-9._@|:+-]{1,128}$/;
const API_KEY_PATTERN = /^[A-Za-z0-9._~+/=-]{16,256}$/;

export interface ApiKeyEntry {
  key: string;
  userId: string;
  admin: boolean;
}

/**
 * Parses AUTH_API_KEYS: `key:user` or `key:user:admin` entries, comma-separated.
 * Problems name the entry's position, never its key.
 */
export function parseApiKeys(value: string): { entries: ApiKeyEntry[]; problems: string[] } {
  const entries: ApiKeyEntry[] = [];
  const problems: string[] = [];
  const seen = new Set<string>();
  value.split(",").forEach((raw, index) => {
    const position = `AUTH_API_KEYS entry ${index + 1}`;
    const parts = raw.trim().split(":");
    const [key = "", userId = "", flag] = parts;
    if (parts.length < 2 || parts.length > 3 || (flag !== undefined && flag !== "admin")) {
      problems.push(`${position}: expected <key>:<user id> or <key>:<user id>:admin`);
      return;
    }
    if (!API_KEY_PATTERN.test(key)) {
      problems.push(`${position}: the key must be 16-256 characters of A-Z a-z 0-9 . _ ~ + / = -`);
      return;
    }
    if (!USER_ID_PATTERN.test(userId)) {
      problems.push(`${position}: the user id must be 1-128 characters of A-Z a-z 0-9 . _ @ | : + -`);
      return;
    }
    if (seen.has(key)) {
      problems.push(`${position}: the same key appears more than once`);
      return;
    }
    seen.add(key);
    entries.push({ key, userId, admin: flag === "admin" });
  });
  return { entries, problems };
}

/** AUTH_ADMIN_CLAIM: `claim=value` (the claim equals or, for an array, contains the value) or `claim` (the claim is true). */
export interface AdminClaim {
  /** Claim name, split on dots for nested claims such as `realm_access.roles`. */
  path: string[];
  /** Expected value; undefined when the claim must be the boolean true. */
  value: string | undefined;
}

export function parseAdminClaim(value: string): AdminClaim {
  const separator = value.indexOf("=");
  const name = separator === -1 ? value : value.slice(0, separator);
  return { path: name.split("."), value: separator === -1 ? undefined : value.slice(separator + 1) };
}

/** Parses ALLOWED_ORIGINS into normalized origins (`scheme://host[:port]`), or "*" for any origin. */
export function parseAllowedOrigins(value: string): { origins: string[] | "*"; problems: string[] } {
  if (value.trim() === "*") return { origins: "*", problems: [] };
  const origins: string[] = [];
  const problems: string[] = [];
  for (const raw of value.split(",")) {
    const entry = raw.trim();
    let url: URL;
    try {
      url = new URL(entry);
    } catch {
      problems.push(`ALLOWED_ORIGINS entry ${JSON.stringify(entry)}: expected an origin such as https://app.example.com`);
      continue;
    }
    if ((url.protocol !== "https:" && url.protocol !== "http:") || url.origin !== entry.replace(/\/$/, "").toLowerCase()) {
      problems.push(`ALLOWED_ORIGINS entry ${JSON.stringify(entry)}: expected scheme://host[:port] with no path, such as https://app.example.com`);
      continue;
    }
    origins.push(url.origin);
  }
  return { origins, problems };
}

/**
 * TRUST_PROXY as Fastify's `trustProxy` option: false, true, a comma list of
 * proxy addresses and CIDR ranges, or a hop count, which Fastify takes as a
 * function of the hop.
 */
export function parseTrustProxy(value: string | undefined): boolean | string | ((address: string, hop: number) => boolean) {
  if (value === undefined || value === "false" || value === "0") return false;
  if (value === "true") return true;
  if (/^\d+$/.test(value)) {
    const hops = Number(value);
    return (_address, hop) => hop < hops;
  }
  return value;
}

export const authEnvShape = {
  AUTH_MODE: z.preprocess(
    emptyAsUndefined,
    z.enum(AUTH_MODES, { error: "AUTH_MODE must be jwt, api-key or none" }).optional(),
  ),
  AUTH_JWT_SECRET: secretValue("AUTH_JWT_SECRET", MIN_SECRET_LENGTH),
  AUTH_JWKS_URL: z.preprocess(emptyAsUndefined, z.url({ error: "AUTH_JWKS_URL must be an absolute URL" }).optional()),
  AUTH_JWT_ALGORITHMS: z
    .string()
    .transform((value) => value.split(",").map((entry) => entry.trim()))
    .pipe(z.array(z.enum(JWKS_ALGORITHMS, { error: `AUTH_JWT_ALGORITHMS may list ${JWKS_ALGORITHMS.join(", ")}` })).min(1))
    .default(["RS256", "ES256"]),
  AUTH_JWT_ISSUER: z.preprocess(emptyAsUndefined, z.string().max(512).optional()),
  AUTH_JWT_AUDIENCE: z.preprocess(emptyAsUndefined, z.string().max(512).optional()),
  AUTH_ADMIN_CLAIM: optionalText(
    "AUTH_ADMIN_CLAIM",
    /^[A-Za-z0-9_:-]+(\.[A-Za-z0-9_:-]+)*(=.{1,256})?$/,
    "must be a claim name (role, or realm_access.roles for a nested one), optionally followed by =value",
  ),
  AUTH_API_KEYS: z.preprocess(emptyAsUndefined, z.string().optional()),
  AUTH_COOKIE: optionalText("AUTH_COOKIE", /^[A-Za-z0-9!#$%&'*+.^_`|~-]{1,128}$/, "must be a cookie name (letters, digits and !#$%&'*+.^_`|~-)"),
  AUTH_TICKET_SECRET: secretValue("AUTH_TICKET_SECRET", MIN_SECRET_LENGTH),
  AUTH_TICKET_TTL_SECONDS: integerValue("AUTH_TICKET_TTL_SECONDS", 5, 3600).default(60),
  AUTH_GRANT_SECRET: secretValue("AUTH_GRANT_SECRET", MIN_SECRET_LENGTH),
  ALLOWED_ORIGINS: z.preprocess(emptyAsUndefined, z.string().optional()),
  TRUST_PROXY: optionalText(
    "TRUST_PROXY",
    /^(true|false|\d{1,2}|[0-9A-Fa-f.:/]+(,[0-9A-Fa-f.:/]+)*)$/,
    "must be true, false, a number of proxy hops, or a comma list of proxy addresses and CIDR ranges",
  ),
};

/** The parsed values of authEnvShape. */
export interface AuthEnv {
  NODE_ENV: string;
  AUTH_MODE?: AuthMode | undefined;
  AUTH_JWT_SECRET?: string | undefined;
  AUTH_JWKS_URL?: string | undefined;
  AUTH_API_KEYS?: string | undefined;
  AUTH_TICKET_SECRET?: string | undefined;
  AUTH_GRANT_SECRET?: string | undefined;
  ALLOWED_ORIGINS?: string | undefined;
}

/** Returns the authentication mode in force: AUTH_MODE, or none when it is unset (rejected in production by checkAuthEnv). */
export function authModeOf(env: Pick<AuthEnv, "AUTH_MODE">): AuthMode {
  return env.AUTH_MODE ?? "none";
}

/** Checks that span several variables; returns one line per problem, never a secret's value. */
export function checkAuthEnv(env: AuthEnv): string[] {
  const problems: string[] = [];
  const production = env.NODE_ENV === "production";
  if (production && env.AUTH_MODE === undefined) {
    problems.push(
      "AUTH_MODE=unset: required when NODE_ENV=production: set jwt or api-key, or none to accept every request without authentication",
    );
  }

  const mode = authModeOf(env);
  if (mode === "jwt") {
    const sources = [env.AUTH_JWT_SECRET, env.AUTH_JWKS_URL].filter((value) => value !== undefined);
    if (sources.length !== 1) {
      problems.push("AUTH_MODE=jwt: set exactly one of AUTH_JWT_SECRET (HS256) and AUTH_JWKS_URL (RS256, ES256 and other key types)");
    }
    if (production && env.AUTH_JWKS_URL !== undefined && !env.AUTH_JWKS_URL.startsWith("https://")) {
      problems.push("AUTH_JWKS_URL: must use https when NODE_ENV=production, so the signing keys cannot be swapped in transit");
    }
  }
  if (mode === "api-key") {
    if (env.AUTH_API_KEYS === undefined) problems.push("AUTH_MODE=api-key: set AUTH_API_KEYS to key:user entries, comma-separated");
    else problems.push(...parseApiKeys(env.AUTH_API_KEYS).problems);
  }
  if (production && mode !== "none" && env.AUTH_TICKET_SECRET === undefined) {
    problems.push("AUTH_TICKET_SECRET=unset: required when NODE_ENV=production, so every instance accepts the tickets of the others");
  }

  const secrets = (["AUTH_JWT_SECRET", "AUTH_TICKET_SECRET", "AUTH_GRANT_SECRET"] as const).filter((name) => env[name] !== undefined);
  for (let i = 0; i < secrets.length; i += 1) {
    for (let j = i + 1; j < secrets.length; j += 1) {
      if (env[secrets[i]!] === env[secrets[j]!]) {
        problems.push(`${secrets[i]} and ${secrets[j]} have the same value: use a different secret for each, so one kind of token cannot pass as another`);
      }
    }
  }

  if (env.ALLOWED_ORIGINS !== undefined) problems.push(...parseAllowedOrigins(env.ALLOWED_ORIGINS).problems);
  return problems;
}

/** Variables whose values are secrets: hidden in configuration errors and the start-up log. */
export const AUTH_SECRET_VARIABLES = ["AUTH_JWT_SECRET", "AUTH_API_KEYS", "AUTH_TICKET_SECRET", "AUTH_GRANT_SECRET"] as const;
