/**
 * Credentials for authentication tests: HS256 tokens, a local JWKS server with
 * RSA and EC keys, hand-made tokens that must fail (alg none, HMAC with the
 * public key) and grants. A ledger records every secret a test file used and
 * the logs of every relay it started, for the leak check at its end.
 */
import { createHmac, randomBytes } from "node:crypto";
import { createServer } from "node:http";
import type { AddressInfo } from "node:net";
import { SignJWT, exportJWK, exportSPKI, generateKeyPair } from "jose";
import type { JWTPayload } from "jose";
import { expect } from "vitest";
import { startRelay } from "./relay-harness.js";
import type { RelayHandle, SimulatorHandle } from "./relay-harness.js";

export const randomSecret = (label: string) => `${label}-${randomBytes(24).toString("base64url")}`;

/** Secrets used by one test file and the relays that saw them. */
export class SecretLedger {
  readonly secrets = new Set<string>();
  readonly relays: RelayHandle[] = [];

  /** Registers a secret (a key, token, ticket or grant) and returns it. */
  add<T extends string>(secret: T): T {
    this.secrets.add(secret);
    return secret;
  }

  /** Starts a relay whose logs are scanned at the end; every secret-looking value of `env` is registered. */
  async startRelay(sim: SimulatorHandle, env: Record<string, string>): Promise<RelayHandle> {
    for (const name of ["AUTH_JWT_SECRET", "AUTH_TICKET_SECRET", "AUTH_GRANT_SECRET"]) {
      if (env[name] !== undefined) this.add(env[name]);
    }
    if (env.AUTH_API_KEYS !== undefined) for (const entry of env.AUTH_API_KEYS.split(",")) this.add(entry.split(":")[0]!);
    this.add(sim.token);
    const relay = await startRelay(sim, { LOG_LEVEL: "trace", ...env });
    this.relays.push(relay);
    return relay;
  }

  /** Asserts that no captured log line of any relay contains any registered secret, whole or as its signature part. */
  expectNoLeaks(): void {
    const lines = this.relays.flatMap((relay) => relay.logs);
    expect(lines.length).toBeGreaterThan(0);
    for (const secret of this.secrets) {
      const forms = [secret];
      // A JWT's signature alone identifies it.
      const parts = secret.split(".");
      if (parts.length === 3 && parts[2]!.length > 10) forms.push(parts[2]!);
      for (const line of lines) {
        const leaked = forms.find((form) => line.includes(form));
        expect(leaked, `a log line contains a secret: ${line.slice(0, 300)}`).toBeUndefined();
      }
    }
  }
}

export interface TokenOptions {
  secret: string;
  sub?: string | undefined;
  expiresInSeconds?: number;
  issuer?: string;
  audience?: string;
  claims?: JWTPayload;
}

/** Signs an HS256 user token. */
export async function hsToken(options: TokenOptions): Promise<string> {
  const now = Math.floor(Date.now() / 1000);
  let builder = new SignJWT({ ...options.claims })
    .setProtectedHeader({ alg: "HS256", typ: "JWT" })
    .setIssuedAt(now)
    .setExpirationTime(now + (options.expiresInSeconds ?? 300));
  if (options.sub !== undefined) builder = builder.setSubject(options.sub);
  if (options.issuer !== undefined) builder = builder.setIssuer(options.issuer);
  if (options.audience !== undefined) builder = builder.setAudience(options.audience);
  return builder.sign(new TextEncoder().encode(options.secret));
}

const base64url = (value: object | string) => Buffer.from(typeof value === "string" ? value : JSON.stringify(value)).toString("base64url");

/** Builds an unsecured JWT (`alg: none`, empty signature). */
export function unsecuredToken(payload: JWTPayload): string {
  return `${base64url({ alg: "none", typ: "JWT" })}.${base64url(payload)}.`;
}

/** Signs a token with HS256 by hand, using `key` (a public key's PEM, say) as the HMAC secret. */
export function hmacTokenWithKey(payload: JWTPayload, key: string, header: Record<string, unknown> = {}): string {
  const signingInput = `${base64url({ alg: "HS256", typ: "JWT", ...header })}.${base64url(payload)}`;
  return `${signingInput}.${createHmac("sha256", key).update(signingInput).digest("base64url")}`;
}

/** Replaces one character of the payload, keeping the signature: the signature no longer matches. */
export function tamperedToken(token: string): string {
  const [header, payload, signature] = token.split(".") as [string, string, string];
  const claims = JSON.parse(Buffer.from(payload, "base64url").toString()) as JWTPayload;
  return `${header}.${base64url({ ...claims, sub: `${claims.sub}-admin` })}.${signature}`;
}

export function standardClaims(sub: string, lifetimeSeconds = 300): JWTPayload {
  const now = Math.floor(Date.now() / 1000);
  return { sub, iat: now, exp: now + lifetimeSeconds };
}

export interface JwksServer {
  url: string;
  rsaPublicPem: string;
  /** Number of key set requests served. */
  requests(): number;
  signRs256(payload: JWTPayload): Promise<string>;
  signEs256(payload: JWTPayload): Promise<string>;
  close(): Promise<void>;
}

/** Serves a JWKS with one RSA (RS256) and one EC (ES256) key on 127.0.0.1. */
export async function startJwksServer(): Promise<JwksServer> {
  const rsa = await generateKeyPair("RS256", { extractable: true });
  const ec = await generateKeyPair("ES256", { extractable: true });
  const keys = [
    { ...(await exportJWK(rsa.publicKey)), kid: "rsa-1", alg: "RS256", use: "sig" },
    { ...(await exportJWK(ec.publicKey)), kid: "ec-1", alg: "ES256", use: "sig" },
  ];
  let requests = 0;
  const server = createServer((_request, response) => {
    requests += 1;
    response.writeHead(200, { "content-type": "application/json" });
    response.end(JSON.stringify({ keys }));
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}/.well-known/jwks.json`,
    rsaPublicPem: await exportSPKI(rsa.publicKey),
    requests: () => requests,
    signRs256: (payload) => new SignJWT(payload).setProtectedHeader({ alg: "RS256", kid: "rsa-1" }).sign(rsa.privateKey),
    signEs256: (payload) => new SignJWT(payload).setProtectedHeader({ alg: "ES256", kid: "ec-1" }).sign(ec.privateKey),
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}

/** Mints a grant as the README's snippet for application backends does. */
export async function mintGrant(secret: string, sub: string, generationIds: string[], expiresInSeconds = 300): Promise<string> {
  const now = Math.floor(Date.now() / 1000);
  return new SignJWT({ gen: generationIds })
    .setProtectedHeader({ alg: "HS256", typ: "JWT" })
    .setSubject(sub)
    .setAudience("runblob-relay:grant")
    .setIssuedAt(now)
    .setExpirationTime(now + expiresInSeconds)
    .sign(new TextEncoder().encode(secret));
}

export const bearer = (token: string) => ({ authorization: `Bearer ${token}` });

/** Sleeps; for tests that wait for a credential to expire. */
export const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
