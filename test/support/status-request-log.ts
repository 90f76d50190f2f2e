/**
 * Arrival times of the status requests that a simulator receives, per
 * generation. The simulator's own stats only count requests, but tests of
 * failover need the gaps between polls. So this log listens on the
 * simulator's HTTP server and notes each `GET /v1/sora/generations/{id}/`.
 */
import type { IncomingMessage } from "node:http";
import type { SimulatorHandle } from "./relay-harness.js";

const STATUS_PATH = /^\/v1\/sora\/generations\/([^/?]+)\/(?:\?.*)?$/;

export class StatusRequestLog {
  /** performance.now() of each status request, per generation id, in arrival order. */
  readonly #times = new Map<string, number[]>();

  /** Starts logging. Requests that arrived before are not in the log. */
  constructor(sim: SimulatorHandle) {
    sim.simulator.app.server.on("request", (request: IncomingMessage) => {
      if (request.method !== "GET") return;
      const match = STATUS_PATH.exec(request.url ?? "");
      if (match === null) return;
      const generationId = decodeURIComponent(match[1]!);
      let times = this.#times.get(generationId);
      if (times === undefined) {
        times = [];
        this.#times.set(generationId, times);
      }
      times.push(performance.now());
    });
  }

  times(generationId: string): readonly number[] {
    return this.#times.get(generationId) ?? [];
  }

  /** Counts the requests for one generation that arrived after `from` and at or before `to`. */
  countBetween(generationId: string, from: number, to: number): number {
    return this.times(generationId).filter((time) => time > from && time <= to).length;
  }

  /** Returns the arrival time of the first request for one generation after `after`, or undefined. */
  firstAfter(generationId: string, after: number): number | undefined {
    return this.times(generationId).find((time) => time > after);
  }

  /** Returns the arrival time of the last request for one generation at or before `before`, or undefined. */
  lastBefore(generationId: string, before: number): number | undefined {
    return this.times(generationId).findLast((time) => time <= before);
  }

  /**
   * Returns the longest time in ms without a request for one generation
   * between `from` and `to`. It measures from the last request before `from`
   * and up to `to`, so a generation that stopped being polled shows the whole
   * silence.
   */
  longestGap(generationId: string, from: number, to: number): number {
    const times = this.times(generationId);
    let previous = this.lastBefore(generationId, from) ?? from;
    let longest = 0;
    for (const time of times) {
      if (time <= from) continue;
      if (time > to) break;
      longest = Math.max(longest, time - previous);
      previous = time;
    }
    return Math.max(longest, to - previous);
  }
}
