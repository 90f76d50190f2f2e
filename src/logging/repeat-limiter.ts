/**
 * Rate limit for log lines that repeat during an outage (the same upstream
 * failure for every request or subscriber). The first line per key and
 * window is written with all its fields and ids. Later ones in the same
 * window are only counted, and the count is written once the window ends.
 */
import type { Logger } from "pino";

type Level = "error" | "warn" | "info";

/** Anything with pino's level methods: the relay's logger, a child, or a Fastify request logger. */
export type LevelLogger = Pick<Logger, Level>;

interface KeyState {
  windowStartedAt: number;
  suppressed: number;
  level: Level;
  message: string;
}

export interface RepeatLimiterOptions {
  /** Length of one window in ms. */
  windowMs?: number;
  /** Distinct keys tracked at once; past it, lines are written without limiting, so nothing is lost silently. */
  maxKeys?: number;
  now?: () => number;
}

export class RepeatLimiter {
  readonly #logger: LevelLogger;
  readonly #windowMs: number;
  readonly #maxKeys: number;
  readonly #now: () => number;
  readonly #keys = new Map<string, KeyState>();
  #timer: NodeJS.Timeout | undefined;

  /** `logger` writes the summary lines; each limited line goes to the logger passed with it. */
  constructor(logger: LevelLogger, options: RepeatLimiterOptions = {}) {
    this.#logger = logger;
    this.#windowMs = options.windowMs ?? 60_000;
    this.#maxKeys = options.maxKeys ?? 1000;
    this.#now = options.now ?? Date.now;
  }

  /**
   * Writes `message` at `level` unless a line with the same key was written
   * within the current window. `key` names the kind of failure and must not
   * hold ids, which would make every line unique.
   */
  log(logger: LevelLogger, level: Level, key: string, fields: Record<string, unknown>, message: string): void {
    const now = this.#now();
    const state = this.#keys.get(key);
    if (state !== undefined && now - state.windowStartedAt < this.#windowMs) {
      state.suppressed += 1;
      return;
    }

    if (state !== undefined) this.#report(key, state);
    if (state !== undefined || this.#keys.size < this.#maxKeys) {
      this.#keys.set(key, { windowStartedAt: now, suppressed: 0, level, message });
      this.#arm();
    }
    logger[level](fields, message);
  }

  /** Writes the pending repeat counts and stops the sweep timer. */
  flush(): void {
    clearInterval(this.#timer);
    this.#timer = undefined;
    for (const [key, state] of this.#keys) this.#report(key, state);
    this.#keys.clear();
  }

  /** One shared timer reports and removes keys whose window has ended. */
  #arm(): void {
    if (this.#timer !== undefined) return;
    this.#timer = setInterval(() => this.#sweep(), this.#windowMs);
    this.#timer.unref();
  }

  #sweep(): void {
    const now = this.#now();
    for (const [key, state] of this.#keys) {
      if (now - state.windowStartedAt < this.#windowMs) continue;
      this.#report(key, state);
      this.#keys.delete(key);
    }
    if (this.#keys.size === 0) {
      clearInterval(this.#timer);
      this.#timer = undefined;
    }
  }

  #report(key: string, state: KeyState): void {
    if (state.suppressed === 0) return;
    this.#logger[state.level](
      { repeat_key: key, suppressed: state.suppressed, window_ms: this.#windowMs },
      `${state.message} (${state.suppressed} more like it in ${Math.round(this.#windowMs / 1000)} s, not logged)`,
    );
    state.suppressed = 0;
  }
}
