/**
 * The credentials each route accepts and the checks it needs, in one
 * table. A route under /v1/ that is missing here requires a user credential
 * (fail closed); every other route (health, metrics, docs, the demo page) is public.
 */

export interface RoutePolicy {
  /** Accepts `?ticket=` from POST /v1/sora/tickets. */
  tickets: boolean;
  /** Accepts a grant (`?grant=` or the X-Relay-Grant header). */
  grants: boolean;
  /** The path parameter that names one generation the caller must be able to read. */
  generationParam?: "id";
  /** The `ids` query lists generations; those the caller may not read get the not-found error. */
  generationIdsQuery?: boolean;
  /** A push connection, counted against MAX_CONNECTIONS_PER_USER while open. */
  connection?: boolean;
  /** The generate request: checked against the generation and spend limits. */
  generate?: boolean;
}

const USER_CREDENTIAL_ONLY: RoutePolicy = { tickets: false, grants: false };

const POLICIES = new Map<string, RoutePolicy>([
  ["POST /v1/sora/generate", { ...USER_CREDENTIAL_ONLY, generate: true }],
  ["GET /v1/sora/generations", USER_CREDENTIAL_ONLY],
  ["GET /v1/sora/generations/:id", { tickets: false, grants: true, generationParam: "id" }],
  ["GET /v1/sora/generations/:id/events", { tickets: true, grants: true, generationParam: "id", connection: true }],
  ["GET /v1/sora/events", { tickets: true, grants: true, generationIdsQuery: true, connection: true }],
  ["GET /v1/sora/ws", { tickets: true, grants: true, connection: true }],
  ["POST /v1/sora/tickets", USER_CREDENTIAL_ONLY],
  ["GET /v1/sora/usage", USER_CREDENTIAL_ONLY],
]);

/** Public routes under /v1/: Runblob's webhook deliveries, which the token in their path authenticates. */
const PUBLIC_ROUTES: ReadonlySet<string> = new Set(["POST /v1/sora/webhooks/:token"]);

/** Returns the policy of a matched route, or undefined for a public one. `url` is the route pattern. */
export function policyFor(method: string, url: string | undefined): RoutePolicy | undefined {
  if (url === undefined) return undefined;
  const key = `${method === "HEAD" ? "GET" : method} ${url}`;
  if (PUBLIC_ROUTES.has(key)) return undefined;
  const policy = POLICIES.get(key);
  if (policy !== undefined) return policy;
  return url.startsWith("/v1/") ? USER_CREDENTIAL_ONLY : undefined;
}

/** Routes exempt from the per-address request limit: probes of orchestrators and metrics scrapers. */
export const OPERATIONS_ROUTES: ReadonlySet<string> = new Set(["/healthz", "/readyz", "/metrics"]);
