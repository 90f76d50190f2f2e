/**
 * Client of the simulator's control API under `/__simulator/` (see
 * src/simulator/control-routes.ts): create generations with a plan, pin a
 * final status, and read or reset the per-generation request counts.
 */
import { Agent, request } from "node:http";

export interface GenerationPlan {
  queueStart?: number;
  queueMs?: number;
  processingMs?: number;
  outcome?: "completed" | "failed";
}

export interface SimulatorStats {
  requests: Record<string, number>;
  status_requests_by_generation: Record<string, number>;
}

const agent = new Agent({ keepAlive: true, maxSockets: 16 });

export class SimulatorApi {
  constructor(
    readonly port: number,
    readonly token: string,
  ) {}

  async #call<T>(method: string, path: string, body?: unknown): Promise<T> {
    const payload = body === undefined ? undefined : JSON.stringify(body);
    return new Promise<T>((resolve, reject) => {
      const req = request(
        {
          host: "127.0.0.1",
          port: this.port,
          method,
          path,
          agent,
          headers: {
            authorization: `Bearer ${this.token}`,
            ...(payload === undefined ? {} : { "content-type": "application/json" }),
          },
        },
        (res) => {
          const chunks: Buffer[] = [];
          res.on("data", (chunk: Buffer) => chunks.push(chunk));
          res.on("end", () => {
            const text = Buffer.concat(chunks).toString("utf8");
            if ((res.statusCode ?? 0) >= 300) {
              reject(new Error(`simulator ${method} ${path} failed with status ${res.statusCode}: ${text}`));
              return;
            }
            resolve((text === "" ? undefined : JSON.parse(text)) as T);
          });
        },
      );
      req.on("error", reject);
      req.end(payload);
    });
  }

  /** Creates `count` generations with the same plan, 32 requests at a time; returns their ids. */
  async createGenerations(count: number, plan: GenerationPlan): Promise<string[]> {
    const ids: string[] = [];
    for (let start = 0; start < count; start += 32) {
      const batch = Math.min(32, count - start);
      const created = await Promise.all(
        Array.from({ length: batch }, () => this.#call<{ generation_id: string }>("POST", "/__simulator/generations", { plan })),
      );
      ids.push(...created.map((item) => item.generation_id));
    }
    return ids;
  }

  finish(generationId: string, outcome: "completed" | "failed" = "completed"): Promise<unknown> {
    return this.#call("POST", `/__simulator/generations/${generationId}/finish`, { outcome });
  }

  stats(): Promise<SimulatorStats> {
    return this.#call("GET", "/__simulator/stats");
  }

  resetStats(): Promise<void> {
    return this.#call("POST", "/__simulator/stats/reset");
  }
}

/**
 * A plan whose status changes about every `changeEveryMs`: the queue position
 * counts down by one per step for about `lifetimeMs`, so each poll one
 * interval apart sees a new position and the generation never ends during a run.
 */
export function changingPlan(changeEveryMs: number, lifetimeMs = 6 * 3600_000): GenerationPlan {
  const steps = Math.ceil(lifetimeMs / changeEveryMs);
  return { queueStart: steps, queueMs: steps * changeEveryMs, processingMs: 60_000, outcome: "completed" };
}

/** A plan whose status stays the same for `lifetimeMs`: queue position 1 the whole time. */
export function steadyPlan(lifetimeMs = 6 * 3600_000): GenerationPlan {
  return { queueStart: 1, queueMs: lifetimeMs, processingMs: 60_000, outcome: "completed" };
}
