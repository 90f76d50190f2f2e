/**
 * A periodic visit of many items spread over the period: items are dealt
 * round-robin into SLICES slices and one timer visits one slice per tick,
 * so each item is visited once per period. A loop over 10,000 sockets with
 * one write each (a ping or a keep-alive comment) blocks the event loop for
 * roughly 100 ms on a 2-core VM. That is an estimate from the write cost the
 * burst benchmark measured, about 14 µs per socket. Every push due meanwhile
 * waits, and slices cut that stall tenfold.
 */

/** Slices per period. */
export const SLICES = 10;

export class SlicedSweep<T> {
  readonly #slices: Array<Set<T>> = Array.from({ length: SLICES }, () => new Set<T>());
  readonly #sliceOf = new Map<T, Set<T>>();
  #nextSlice = 0;
  #dealt = 0;
  #timer: NodeJS.Timeout | undefined;

  add(item: T): void {
    if (this.#sliceOf.has(item)) return;
    const slice = this.#slices[this.#dealt % SLICES]!;
    this.#dealt += 1;
    slice.add(item);
    this.#sliceOf.set(item, slice);
  }

  delete(item: T): void {
    this.#sliceOf.get(item)?.delete(item);
    this.#sliceOf.delete(item);
  }

  get size(): number {
    return this.#sliceOf.size;
  }

  /** Starts visiting: every item once per `periodMs`, one slice every `periodMs / SLICES`. */
  start(periodMs: number, visit: (item: T) => void): void {
    this.stop();
    this.#timer = setInterval(() => {
      const slice = this.#slices[this.#nextSlice]!;
      this.#nextSlice = (this.#nextSlice + 1) % SLICES;
      for (const item of slice) visit(item);
    }, periodMs / SLICES);
    this.#timer.unref();
  }

  stop(): void {
    clearInterval(this.#timer);
    this.#timer = undefined;
  }
}
