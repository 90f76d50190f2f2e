/**
 * Latency histogram with 1 ms buckets. The relay's `updated_at` has
 * millisecond resolution, so finer buckets would only show noise.
 */

export type HistogramData = Record<string, number>;

export class Histogram {
  readonly #counts = new Map<number, number>();
  #total = 0;

  get count(): number {
    return this.#total;
  }

  add(ms: number, times = 1): void {
    const bucket = Math.max(0, Math.round(ms));
    this.#counts.set(bucket, (this.#counts.get(bucket) ?? 0) + times);
    this.#total += times;
  }

  merge(other: Histogram | HistogramData): void {
    const entries = other instanceof Histogram ? other.#counts.entries() : Object.entries(other).map(([k, v]) => [Number(k), v] as const);
    for (const [bucket, times] of entries) this.add(bucket, times);
  }

  toJSON(): HistogramData {
    return Object.fromEntries(this.#counts);
  }

  /** The smallest bucket at or below which `fraction` of the samples lie; NaN when empty. */
  percentile(fraction: number): number {
    if (this.#total === 0) return Number.NaN;
    const rank = Math.max(1, Math.ceil(fraction * this.#total));
    let seen = 0;
    for (const bucket of [...this.#counts.keys()].sort((a, b) => a - b)) {
      seen += this.#counts.get(bucket)!;
      if (seen >= rank) return bucket;
    }
    return Number.NaN;
  }

  get max(): number {
    return this.#total === 0 ? Number.NaN : Math.max(...this.#counts.keys());
  }

  summary(): LatencySummary {
    return { samples: this.#total, p50: this.percentile(0.5), p99: this.percentile(0.99), max: this.max };
  }
}

export interface LatencySummary {
  samples: number;
  p50: number;
  p99: number;
  max: number;
}
