/** Parts shared by every scenario: its signature, connection plans and number formatting. */
import type { BarChart } from "./svg.js";
import type { ScenarioResult } from "./report.js";
import type { RunContext } from "./stack.js";
import type { ConnectionSpec } from "./worker-protocol.js";

export interface ScenarioOutput {
  result: Omit<ScenarioResult, "machine" | "durationSeconds" | "commands" | "quick" | "scale" | "relay" | "name">;
  /** Charts by file name under bench/results/. */
  charts: Record<string, BarChart>;
}

export interface Scenario {
  name: string;
  /** Upper bound on the scenario's run time; the runner aborts it past this. */
  timeLimitMs(quick: boolean): number;
  run(context: RunContext): Promise<ScenarioOutput>;
}

export const wsPath = "/v1/sora/ws";
export const ssePath = (generationId: string) => `/v1/sora/generations/${generationId}/events`;

/**
 * Plans one connection per subscriber: `perGeneration` subscribers for each id,
 * alternating WebSocket and SSE (or only one kind), dealt round-robin over
 * the relay ports.
 */
export function subscriberConnections(
  ids: readonly string[],
  perGeneration: number,
  ports: readonly number[],
  transports: "both" | "ws" | "sse" = "both",
): ConnectionSpec[] {
  const specs: ConnectionSpec[] = [];
  let n = 0;
  for (let i = 0; i < perGeneration; i += 1) {
    for (const id of ids) {
      const port = ports[n % ports.length]!;
      const useWs = transports === "ws" || (transports === "both" && n % 2 === 0);
      specs.push(useWs ? { transport: "ws", port, path: wsPath, ids: [id] } : { transport: "sse", port, path: ssePath(id) });
      n += 1;
    }
  }
  return specs;
}

export const MiB = 2 ** 20;

export function mib(bytes: number): string {
  return (bytes / MiB).toFixed(0);
}

export function ms(value: number): string {
  return Number.isFinite(value) ? String(Math.round(value)) : "n/a";
}

/** Formats a count table such as failures by reason: "none" when empty. */
export function counts(table: Record<string, number>): string {
  const entries = Object.entries(table);
  if (entries.length === 0) return "none";
  return entries.map(([key, value]) => `${key} ${value}`).join(", ");
}
