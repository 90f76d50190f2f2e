/**
 * MAX_CONNECTIONS_PER_USER: open WebSocket and SSE connections per user, over
 * every instance when Redis is configured.
 *
 * Each open connection takes a slot that expires SLOT_TTL_MS after its last
 * refresh. One timer per instance refreshes all of its slots every
 * REFRESH_INTERVAL_MS, so the slots of an instance that died free up within
 * SLOT_TTL_MS. When the store cannot be reached, connections are let through
 * (and logged): pushes keep working and no money is at stake.
 */
import { randomUUID } from "node:crypto";
import type { Logger } from "pino";
import type { RepeatLimiter } from "../logging/repeat-limiter.js";
import type { Principal } from "../auth/principal.js";
import { userKeyOf } from "../auth/user-key.js";
import type { LimitsStore } from "./limits-store.js";

const REFRESH_INTERVAL_MS = 30_000;
const SLOT_TTL_MS = 3 * REFRESH_INTERVAL_MS;

export class ConnectionLimiter {
  /** Open slots of this instance: connection id to user key. */
  readonly #open = new Map<string, string>();
  #timer: NodeJS.Timeout | undefined;

  constructor(
    private readonly options: { store: LimitsStore; max: number; logger: Logger; logLimiter: RepeatLimiter; now?: () => number },
  ) {}

  /**
   * Takes a slot for one connection of `principal`. Returns a release
   * function, or undefined when the user has MAX_CONNECTIONS_PER_USER open.
   */
  async acquire(principal: Principal): Promise<(() => void) | undefined> {
    const { store, max, logger, logLimiter } = this.options;
    const userKey = userKeyOf(principal.userId);
    const connectionId = randomUUID();
    const now = (this.options.now ?? Date.now)();
    try {
      if (!(await store.acquireConnection(userKey, connectionId, max, now, now + SLOT_TTL_MS))) return undefined;
    } catch (error) {
      logLimiter.log(logger, "warn", "connection-limit-store", { err: error }, "could not check the connection limit; the connection is let through");
      return () => {};
    }
    this.#open.set(connectionId, userKey);

    let released = false;
    return () => {
      if (released) return;
      released = true;
      this.#open.delete(connectionId);
      store.releaseConnection(userKey, connectionId).catch((error: unknown) => {
        logLimiter.log(logger, "warn", "connection-limit-release", { err: error }, "could not release a connection slot; it expires on its own");
      });
    };
  }

  start(): void {
    if (this.#timer !== undefined) return;
    this.#timer = setInterval(() => this.#refresh(), REFRESH_INTERVAL_MS);
    this.#timer.unref();
  }

  stop(): void {
    clearInterval(this.#timer);
    this.#timer = undefined;
  }

  #refresh(): void {
    const { store, logger, logLimiter } = this.options;
    const slots = [...this.#open].map(([connectionId, userKey]) => [userKey, connectionId] as const);
    const expiresAtMs = (this.options.now ?? Date.now)() + SLOT_TTL_MS;
    store.refreshConnections(slots, expiresAtMs).catch((error: unknown) => {
      logLimiter.log(logger, "warn", "connection-limit-refresh", { err: error }, "could not refresh the connection slots");
    });
  }
}
