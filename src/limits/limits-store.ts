/**
 * Counters behind the per-user limits: generations per clock hour, active
 * generations, spend per UTC day and open push connections. Redis keeps them
 * for every instance (redis-limits-store.ts); the memory store serves a
 * single instance. Users appear by their key hash (auth/user-key.ts).
 */

/** Which limit a rejected request hit. */
export type GenerationLimitName = "generations_per_hour" | "active_generations" | "daily_spend";

/** The counting windows a call falls into. */
export interface LimitWindow {
  nowMs: number;
  /** Hours since the epoch: the generations-per-hour window. */
  hourIndex: number;
  /** The UTC date, YYYY-MM-DD: the spend window. */
  day: string;
}

export interface GenerationQuota {
  perHour: number;
  active: number;
  /** Daily spend limit in units of 0.0001 USD. */
  spendUnits: number;
  /** An active entry older than this is dropped: the relay stops polling a generation by then. */
  activeMaxAgeMs: number;
}

export type ReserveResult =
  | { ok: true; token: string }
  /** `oldestActiveMs`: creation time of the oldest active entry, when the active limit was hit. */
  | { ok: false; limit: GenerationLimitName; used: number; oldestActiveMs?: number };

/** What became of a reserved generate request. */
export type Settlement =
  /** Runblob created the generation: it becomes active and its price is added to the day's spend. */
  | { kind: "created"; generationId: string; priceUnits: number; createdAtMs: number }
  /** Runblob refused: the hourly count is given back. */
  | { kind: "rejected" }
  /** No response from Runblob, so the generation may exist: the hourly count is kept. */
  | { kind: "unknown" };

export interface UsageCounts {
  generationsThisHour: number;
  activeGenerations: number;
  spendUnits: number;
  openConnections: number;
}

export interface LimitsStore {
  /** Generation ids counted as active (reservations excluded), for the final-status check. */
  activeGenerations(userKey: string, window: LimitWindow, activeMaxAgeMs: number): Promise<string[]>;
  /**
   * Drops `finishedIds` from the active set, then checks every generation
   * limit and, when none is reached, counts the request and reserves an
   * active slot, in one atomic step.
   */
  reserveGeneration(userKey: string, window: LimitWindow, quota: GenerationQuota, finishedIds: readonly string[]): Promise<ReserveResult>;
  settleGeneration(userKey: string, window: LimitWindow, token: string, settlement: Settlement): Promise<void>;
  usage(userKey: string, window: LimitWindow, activeMaxAgeMs: number): Promise<UsageCounts>;
  /** Opens a connection slot unless `max` are open; `expiresAtMs` bounds a slot whose instance died. */
  acquireConnection(userKey: string, connectionId: string, max: number, nowMs: number, expiresAtMs: number): Promise<boolean>;
  releaseConnection(userKey: string, connectionId: string): Promise<void>;
  /** Moves the expiry of open slots forward; called by one timer per instance. */
  refreshConnections(slots: ReadonlyArray<readonly [userKey: string, connectionId: string]>, expiresAtMs: number): Promise<void>;
}

export const RESERVATION_PREFIX = "reservation:";

interface UserCounters {
  hourIndex: number;
  hourCount: number;
  day: string;
  spendUnits: number;
  /** Active generation ids and reservations, with their creation time. */
  active: Map<string, number>;
  /** Open connection ids and their expiry. */
  connections: Map<string, number>;
}

/** Counters of this process only: limits hold per instance, so run one instance without Redis. */
export class MemoryLimitsStore implements LimitsStore {
  readonly #users = new Map<string, UserCounters>();

  async activeGenerations(userKey: string, window: LimitWindow, activeMaxAgeMs: number): Promise<string[]> {
    const user = this.#user(userKey, window);
    this.#dropStale(user, window.nowMs - activeMaxAgeMs);
    return [...user.active.keys()].filter((member) => !member.startsWith(RESERVATION_PREFIX));
  }

  async reserveGeneration(userKey: string, window: LimitWindow, quota: GenerationQuota, finishedIds: readonly string[]): Promise<ReserveResult> {
    const user = this.#user(userKey, window);
    this.#dropStale(user, window.nowMs - quota.activeMaxAgeMs);
    for (const id of finishedIds) user.active.delete(id);
    if (user.hourCount >= quota.perHour) return { ok: false, limit: "generations_per_hour", used: user.hourCount };
    if (user.active.size >= quota.active) {
      return { ok: false, limit: "active_generations", used: user.active.size, oldestActiveMs: Math.min(...user.active.values()) };
    }
    if (user.spendUnits >= quota.spendUnits) return { ok: false, limit: "daily_spend", used: user.spendUnits };

    const token = `${RESERVATION_PREFIX}${crypto.randomUUID()}`;
    user.hourCount += 1;
    user.active.set(token, window.nowMs);
    return { ok: true, token };
  }

  async settleGeneration(userKey: string, window: LimitWindow, token: string, settlement: Settlement): Promise<void> {
    const user = this.#user(userKey, window);
    user.active.delete(token);
    if (settlement.kind === "created") {
      user.active.set(settlement.generationId, settlement.createdAtMs);
      user.spendUnits += settlement.priceUnits;
    } else if (settlement.kind === "rejected" && user.hourCount > 0) {
      user.hourCount -= 1;
    }
  }

  async usage(userKey: string, window: LimitWindow, activeMaxAgeMs: number): Promise<UsageCounts> {
    const user = this.#user(userKey, window);
    this.#dropStale(user, window.nowMs - activeMaxAgeMs);
    this.#dropExpiredConnections(user, window.nowMs);
    return {
      generationsThisHour: user.hourCount,
      activeGenerations: user.active.size,
      spendUnits: user.spendUnits,
      openConnections: user.connections.size,
    };
  }

  async acquireConnection(userKey: string, connectionId: string, max: number, nowMs: number, expiresAtMs: number): Promise<boolean> {
    const user = this.#user(userKey, undefined);
    this.#dropExpiredConnections(user, nowMs);
    if (user.connections.size >= max) return false;
    user.connections.set(connectionId, expiresAtMs);
    return true;
  }

  async releaseConnection(userKey: string, connectionId: string): Promise<void> {
    this.#users.get(userKey)?.connections.delete(connectionId);
  }

  async refreshConnections(slots: ReadonlyArray<readonly [string, string]>, expiresAtMs: number): Promise<void> {
    for (const [userKey, connectionId] of slots) {
      const connections = this.#users.get(userKey)?.connections;
      if (connections?.has(connectionId)) connections.set(connectionId, expiresAtMs);
    }
  }

  /** Returns the user's counters, starting a new hour or day when the window moved on. */
  #user(userKey: string, window: LimitWindow | undefined): UserCounters {
    let user = this.#users.get(userKey);
    if (user === undefined) {
      user = { hourIndex: window?.hourIndex ?? 0, hourCount: 0, day: window?.day ?? "", spendUnits: 0, active: new Map(), connections: new Map() };
      this.#users.set(userKey, user);
    }
    if (window !== undefined && user.hourIndex !== window.hourIndex) {
      user.hourIndex = window.hourIndex;
      user.hourCount = 0;
    }
    if (window !== undefined && user.day !== window.day) {
      user.day = window.day;
      user.spendUnits = 0;
    }
    return user;
  }

  #dropStale(user: UserCounters, createdBeforeMs: number): void {
    for (const [member, createdAtMs] of user.active) if (createdAtMs < createdBeforeMs) user.active.delete(member);
  }

  #dropExpiredConnections(user: UserCounters, nowMs: number): void {
    for (const [connectionId, expiresAtMs] of user.connections) if (expiresAtMs <= nowMs) user.connections.delete(connectionId);
  }
}
