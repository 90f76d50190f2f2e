/**
 * Per-user limits on POST /v1/sora/generate, checked before the request goes
 * to Runblob: generations per clock hour (UTC), active generations, and spend
 * per UTC day.
 *
 * A generation counts as active from the request until the status store holds
 * a final status for it, or until `activeMaxAgeMs` has passed (the relay stops
 * polling a generation by then, so a later final status may never be stored).
 *
 * Spend is the sum of the `price` strings Runblob returned for the user's
 * generations. The price is known only from Runblob's upstreamResponse, so the check
 * compares the spend before the request with the limit, and the requests in
 * flight at that moment (at most MAX_ACTIVE_GENERATIONS) can pass it by their
 * own prices.
 */
import type { Logger } from "pino";
import type { StatusStore } from "../store/status-store.js";
import { isFinalStatus } from "../wire/upstream.js";
import type { Principal } from "../auth/principal.js";
import { userKeyOf } from "../auth/user-key.js";
import type { GenerationQuota, LimitWindow, LimitsStore, Settlement, UsageCounts } from "./limits-store.js";
import { formatUnits, usdToUnits } from "./money.js";

const HOUR_MS = 3_600_000;
const DAY_MS = 86_400_000;

export function limitWindowAt(nowMs: number): LimitWindow {
  return { nowMs, hourIndex: Math.floor(nowMs / HOUR_MS), day: new Date(nowMs).toISOString().slice(0, 10) };
}

/** A generate request that passed the limits and keeps an active slot until it is settled. */
export interface Reservation {
  userKey: string;
  window: LimitWindow;
  token: string;
}

/** A limit was reached: the response is 429 with the limit's name and when it resets. */
export class LimitRejection extends Error {
  override readonly name = "LimitRejection";

  constructor(
    readonly detail: string,
    readonly retryAfterSeconds: number,
  ) {
    super(detail);
  }
}

export interface GenerationLimitsOptions {
  store: LimitsStore;
  statusStore: Pick<StatusStore, "get">;
  perHour: number;
  maxActive: number;
  /** DAILY_SPEND_LIMIT_USD as configured, such as "10" or "2.50". */
  dailySpendUsd: string;
  maxConnections: number;
  activeMaxAgeMs: number;
  logger: Logger;
  now?: () => number;
}

export interface Usage {
  user_id: string;
  generations_this_hour: { used: number; limit: number; resets_at: string };
  active_generations: { used: number; limit: number };
  spend_today_usd: { used: string; limit: string; resets_at: string };
  open_connections: { used: number; limit: number };
}

export class GenerationLimits {
  readonly #options: GenerationLimitsOptions;
  readonly #quota: GenerationQuota;
  readonly #now: () => number;

  constructor(options: GenerationLimitsOptions) {
    this.#options = options;
    this.#now = options.now ?? Date.now;
    this.#quota = {
      perHour: options.perHour,
      active: options.maxActive,
      spendUnits: usdToUnits(options.dailySpendUsd)!,
      activeMaxAgeMs: options.activeMaxAgeMs,
    };
  }

  /** Checks every limit and reserves an active slot; throws LimitRejection when one is reached. */
  async reserve(principal: Principal): Promise<Reservation> {
    const { store } = this.#options;
    const userKey = userKeyOf(principal.userId);
    const window = limitWindowAt(this.#now());
    const active = await store.activeGenerations(userKey, window, this.#quota.activeMaxAgeMs);
    const finished = await this.#finishedAmong(active);

    const result = await store.reserveGeneration(userKey, window, this.#quota, finished);
    if (result.ok) return { userKey, window, token: result.token };
    switch (result.limit) {
      case "generations_per_hour": {
        const resetsAtMs = (window.hourIndex + 1) * HOUR_MS;
        throw new LimitRejection(
          `generation limit reached: this user started ${result.used} generations this hour, the maximum set by ` +
            `GENERATIONS_PER_HOUR=${this.#quota.perHour}; the count resets at ${new Date(resetsAtMs).toISOString()}`,
          secondsUntil(resetsAtMs, window.nowMs),
        );
      }
      case "active_generations": {
        const latestMs = (result.oldestActiveMs ?? window.nowMs) + this.#quota.activeMaxAgeMs;
        throw new LimitRejection(
          `active generation limit reached: ${result.used} generations of this user are still running, the maximum set by ` +
            `MAX_ACTIVE_GENERATIONS=${this.#quota.active}; a slot frees up when one completes or fails, at the latest at ` +
            new Date(latestMs).toISOString(),
          Math.min(60, secondsUntil(latestMs, window.nowMs)),
        );
      }
      case "daily_spend": {
        const resetsAtMs = (Math.floor(window.nowMs / DAY_MS) + 1) * DAY_MS;
        throw new LimitRejection(
          `daily spend limit reached: this user spent ${formatUnits(result.used)} USD today (UTC), the maximum set by ` +
            `DAILY_SPEND_LIMIT_USD=${this.#options.dailySpendUsd}; the spend resets at ${new Date(resetsAtMs).toISOString()}`,
          secondsUntil(resetsAtMs, window.nowMs),
        );
      }
    }
  }

  /**
   * Records what became of a reserved request. A created generation without a
   * readable `price` adds nothing to the spend and is logged.
   */
  async settle(reservation: Reservation, outcome: { generationId: string; price: string | null | undefined } | "rejected" | "unknown"): Promise<void> {
    let settlement: Settlement;
    if (typeof outcome === "string") {
      settlement = { kind: outcome };
    } else {
      let priceUnits = outcome.price == null ? undefined : usdToUnits(outcome.price);
      if (priceUnits === undefined) {
        this.#options.logger.warn(
          { generation_id: outcome.generationId, price: outcome.price ?? null },
          "Runblob sent no readable price for a new generation; it adds nothing to the user's daily spend",
        );
        priceUnits = 0;
      }
      settlement = { kind: "created", generationId: outcome.generationId, priceUnits, createdAtMs: this.#now() };
    }
    await this.#options.store.settleGeneration(reservation.userKey, reservation.window, reservation.token, settlement);
  }

  async usage(principal: Principal): Promise<Usage> {
    const window = limitWindowAt(this.#now());
    const counts: UsageCounts = await this.#options.store.usage(userKeyOf(principal.userId), window, this.#quota.activeMaxAgeMs);
    return {
      user_id: principal.userId,
      generations_this_hour: {
        used: counts.generationsThisHour,
        limit: this.#quota.perHour,
        resets_at: new Date((window.hourIndex + 1) * HOUR_MS).toISOString(),
      },
      active_generations: { used: counts.activeGenerations, limit: this.#quota.active },
      spend_today_usd: {
        used: formatUnits(counts.spendUnits),
        limit: formatUnits(this.#quota.spendUnits),
        resets_at: new Date((Math.floor(window.nowMs / DAY_MS) + 1) * DAY_MS).toISOString(),
      },
      open_connections: { used: counts.openConnections, limit: this.#options.maxConnections },
    };
  }

  /** Returns the ids whose stored status is final; an unreadable store counts them as still running. */
  async #finishedAmong(generationIds: readonly string[]): Promise<string[]> {
    const finished: string[] = [];
    await Promise.all(
      generationIds.map(async (generationId) => {
        try {
          const stored = await this.#options.statusStore.get(generationId);
          if (stored !== null && isFinalStatus(stored.status.status)) finished.push(generationId);
        } catch {
          // Counted as running: the limit errs on the side of fewer generations.
        }
      }),
    );
    return finished;
  }
}

function secondsUntil(targetMs: number, nowMs: number): number {
  return Math.max(1, Math.ceil((targetMs - nowMs) / 1000));
}
