/**
 * The relay's security services, built once from the configuration:
 * authentication, generation ownership, and the per-user limits. The Fastify
 * hooks that apply them live in security-hooks.ts; the routes call the few
 * methods here that need a route's own data.
 */
import { randomBytes } from "node:crypto";
import type { FastifyRequest } from "fastify";
import type { Logger } from "pino";
import type { Config } from "../config/env.js";
import type { RedisConnection } from "../cluster/redis-connection.js";
import type { RepeatLimiter } from "../logging/repeat-limiter.js";
import type { StatusStore, StoredStatus } from "../store/status-store.js";
import { StoreUnavailableError } from "../watch/status-reader.js";
import type { StatusReader } from "../watch/status-reader.js";
import { UpstreamError } from "../upstream/errors.js";
import type { GenerateResponse } from "../wire/upstream.js";
import { authModeOf, parseAllowedOrigins, parseApiKeys } from "./auth-env.js";
import type { AuthMode } from "./auth-env.js";
import { ApiKeyVerifier } from "./api-keys.js";
import { Authenticator } from "./authenticator.js";
import { GenerationAccess } from "./generation-access.js";
import { JwtVerifier } from "./jwt-verifier.js";
import { MemoryOwnershipStore } from "./ownership-store.js";
import type { OwnershipStore } from "./ownership-store.js";
import type { Principal } from "./principal.js";
import { RedisOwnershipStore } from "./redis-ownership-store.js";
import { GrantVerifier, TicketSigner } from "./signed-tokens.js";
import { ConnectionLimiter } from "../limits/connection-limits.js";
import { GenerationLimits } from "../limits/generation-limits.js";
import type { Reservation } from "../limits/generation-limits.js";
import { MemoryLimitsStore } from "../limits/limits-store.js";
import { RedisLimitsStore } from "../limits/redis-limits-store.js";

declare module "fastify" {
  interface FastifyRequest {
    /**
     * The authenticated caller; null on public routes, and undefined on routes
     * registered before the security plugin (the OpenAPI documents), whose
     * requests do not get its decoration.
     */
    principal: Principal | null | undefined;
  }
}

export interface SecurityDependencies {
  redis: RedisConnection | undefined;
  statusStore: StatusStore;
  reader: StatusReader;
  logger: Logger;
  logLimiter: RepeatLimiter;
}

export class Security {
  readonly mode: AuthMode;
  /** Undefined when AUTH_MODE=none. */
  readonly authenticator: Authenticator | undefined;
  /** Undefined when AUTH_MODE=none: there is no user to issue a ticket to. */
  readonly tickets: TicketSigner | undefined;
  readonly access: GenerationAccess;
  readonly ownership: OwnershipStore;
  readonly generationLimits: GenerationLimits;
  readonly connectionLimits: ConnectionLimiter;
  readonly allowedOrigins: string[] | "*";
  readonly #reservations = new WeakMap<FastifyRequest, Reservation>();
  readonly #deniedIds = new WeakMap<FastifyRequest, ReadonlySet<string>>();

  constructor(
    readonly config: Config,
    private readonly dependencies: SecurityDependencies,
  ) {
    const { redis, statusStore, logger, logLimiter } = dependencies;
    this.mode = authModeOf(config);
    this.allowedOrigins = config.ALLOWED_ORIGINS === undefined ? [] : parseAllowedOrigins(config.ALLOWED_ORIGINS).origins;

    if (this.mode === "none") {
      logger.warn("AUTH_MODE=none: every request is accepted without authentication and every generation is readable by anyone");
    } else {
      let ticketSecret = config.AUTH_TICKET_SECRET;
      if (ticketSecret === undefined) {
        ticketSecret = randomBytes(32).toString("base64url");
        logger.warn("AUTH_TICKET_SECRET is not set: tickets are signed with a random secret and only this instance accepts them");
      }
      this.tickets = new TicketSigner(ticketSecret, config.AUTH_TICKET_TTL_SECONDS);
      this.authenticator = new Authenticator({
        mode: this.mode,
        tickets: this.tickets,
        ...(this.mode === "jwt"
          ? {
              jwt: new JwtVerifier({
                secret: config.AUTH_JWT_SECRET,
                jwksUrl: config.AUTH_JWKS_URL,
                algorithms: config.AUTH_JWT_ALGORITHMS,
                issuer: config.AUTH_JWT_ISSUER,
                audience: config.AUTH_JWT_AUDIENCE,
                adminClaim: config.AUTH_ADMIN_CLAIM,
              }),
            }
          : { apiKeys: new ApiKeyVerifier(parseApiKeys(config.AUTH_API_KEYS!).entries) }),
        ...(config.AUTH_GRANT_SECRET === undefined ? {} : { grants: new GrantVerifier(config.AUTH_GRANT_SECRET) }),
      });
    }

    const prefix = config.REDIS_KEY_PREFIX;
    this.ownership =
      redis === undefined
        ? new MemoryOwnershipStore({ ttlSeconds: config.STATUS_TTL_SECONDS })
        : new RedisOwnershipStore({ redis, keyPrefix: prefix, ttlSeconds: config.STATUS_TTL_SECONDS, logger: logger.child({ component: "ownership" }) });
    this.access = new GenerationAccess(this.mode, this.ownership);

    const limitsStore = redis === undefined ? new MemoryLimitsStore() : new RedisLimitsStore(redis, prefix);
    this.generationLimits = new GenerationLimits({
      store: limitsStore,
      statusStore,
      perHour: config.GENERATIONS_PER_HOUR,
      maxActive: config.MAX_ACTIVE_GENERATIONS,
      dailySpendUsd: config.DAILY_SPEND_LIMIT_USD,
      maxConnections: config.MAX_CONNECTIONS_PER_USER,
      // The relay gives up polling after POLL_MAX_ATTEMPTS intervals, so a generation is not tracked longer.
      activeMaxAgeMs: config.POLL_MAX_ATTEMPTS * config.POLL_INTERVAL_MS,
      logger: logger.child({ component: "limits" }),
    });
    this.connectionLimits = new ConnectionLimiter({ store: limitsStore, max: config.MAX_CONNECTIONS_PER_USER, logger, logLimiter });
  }

  /** True when per-user checks apply: every mode but none, which has no users. */
  get perUser(): boolean {
    return this.mode !== "none";
  }

  start(): void {
    if (this.perUser) this.connectionLimits.start();
  }

  async close(): Promise<void> {
    this.connectionLimits.stop();
    await this.ownership.close();
  }

  /** Remembers the limit reservation of a generate request until it is settled. */
  holdReservation(request: FastifyRequest, reservation: Reservation): void {
    this.#reservations.set(request, reservation);
  }

  /**
   * Settles a generate request's reservation, once: with the new generation,
   * or with "rejected" or "unknown" when Runblob refused or did not respond.
   */
  async settleReservation(request: FastifyRequest, outcome: Parameters<GenerationLimits["settle"]>[1]): Promise<void> {
    const reservation = this.#reservations.get(request);
    if (reservation === undefined) return;
    this.#reservations.delete(request);
    try {
      await this.generationLimits.settle(reservation, outcome);
    } catch (error) {
      request.log.error({ err: error }, "could not record a generate request in the limit counters");
    }
  }

  /**
   * Records a generation created by the caller: its creator (before the client
   * learns the id, so the first subscribe finds it) and its price.
   */
  async generationCreated(request: FastifyRequest, created: GenerateResponse): Promise<void> {
    const principal = request.principal;
    if (!this.perUser || principal == null) return;
    // Lowercased like the ids of requests, which generationIdSchema normalizes.
    await this.ownership.record(created.generation_id.toLowerCase(), principal.userId, Date.now());
    await this.settleReservation(request, { generationId: created.generation_id, price: created.price });
    request.log.info({ generation_id: created.generation_id, user_id: principal.userId, price: created.price ?? null }, "generation recorded for its creator");
  }

  setDeniedIds(request: FastifyRequest, denied: ReadonlySet<string>): void {
    this.#deniedIds.set(request, denied);
  }

  /** The ids of a multi-generation stream request that the caller may not read, which get the not-found error in the stream. */
  deniedIds(request: FastifyRequest): ReadonlySet<string> {
    return this.#deniedIds.get(request) ?? new Set();
  }

  /**
   * Returns the check a WebSocket runs before each subscribe, or undefined
   * when the caller reads every generation.
   */
  subscriptionCheck(request: FastifyRequest): ((generationId: string) => Promise<boolean>) | undefined {
    const principal = request.principal;
    if (principal == null || this.access.readsAll(principal)) return undefined;
    return (generationId) => this.access.canRead(principal, generationId);
  }

  /**
   * Returns the caller's own generations, newest first, for
   * GET /v1/sora/generations; undefined when the caller reads Runblob's full list.
   * Statuses come from the store, or the reader when the store has none.
   */
  async ownGenerations(request: FastifyRequest, query: { limit: number; offset: number }): Promise<unknown[] | undefined> {
    const principal = request.principal;
    if (principal == null || this.access.readsAll(principal)) return undefined;
    let ids: string[];
    try {
      ids = await this.ownership.list(principal.userId, query.offset, query.limit);
    } catch (error) {
      // The error handler turns this into 503 with Retry-After and logs it.
      throw new StoreUnavailableError("the ownership store is unreachable; try again shortly", { cause: error });
    }
    const statuses = await Promise.all(ids.map((id) => this.#statusForList(id, request.id)));
    return statuses.filter((status) => status !== undefined).map((stored) => stored.status);
  }

  async #statusForList(generationId: string, requestId: string): Promise<StoredStatus | undefined> {
    try {
      const stored = await this.dependencies.statusStore.get(generationId);
      if (stored !== null) return stored;
    } catch {
      // The reader falls back to Runblob and to this instance's own statuses.
    }
    try {
      return await this.dependencies.reader.current(generationId, { requestId });
    } catch (error) {
      if (error instanceof UpstreamError && error.statusCode === 404) return undefined;
      throw error;
    }
  }
}
