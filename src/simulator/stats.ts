/**
 * Request counters of the simulator, for tests and benchmarks that check how
 * often the relay calls Runblob (for example: one status poll per interval per
 * generation, however many browsers watch it).
 *
 * A request is counted when it arrives, before authentication and before any
 * injected fault responds to it, so rejected and faulted requests count too.
 */

/** Routes of the simulated Runblob API that are counted and that faults can target. */
export const ROUTE_KEYS = ["generate", "status", "list", "balance", "video"] as const;
export type RouteKey = (typeof ROUTE_KEYS)[number];

export interface StatsSnapshot {
  /** Requests per route since creation or the last reset. */
  requests: Record<RouteKey, number>;
  /** Status requests per requested generation id, including ids that do not exist. */
  status_requests_by_generation: Record<string, number>;
}

function zeroCounts(): Record<RouteKey, number> {
  return { generate: 0, status: 0, list: 0, balance: 0, video: 0 };
}

export class SimulatorStats {
  private counts = zeroCounts();
  private readonly statusCounts = new Map<string, number>();

  /** Counts one request to `route`; `generationId` is the id of a status request. */
  record(route: RouteKey, generationId?: string): void {
    this.counts[route] += 1;
    if (route === "status" && generationId !== undefined) {
      this.statusCounts.set(generationId, (this.statusCounts.get(generationId) ?? 0) + 1);
    }
  }

  /** Returns the number of requests to `route`. */
  requests(route: RouteKey): number {
    return this.counts[route];
  }

  /** Returns the number of status requests for one generation id. */
  statusRequests(generationId: string): number {
    return this.statusCounts.get(generationId) ?? 0;
  }

  /** Copies all counters into a plain object, also sent by `GET /__simulator/stats`. */
  snapshot(): StatsSnapshot {
    return {
      requests: { ...this.counts },
      status_requests_by_generation: Object.fromEntries(this.statusCounts),
    };
  }

  reset(): void {
    this.counts = zeroCounts();
    this.statusCounts.clear();
  }
}
