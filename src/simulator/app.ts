/**
 * The Runblob simulator: a fake Runblob Sora API for local runs without a
 * token, for the test suite and for benchmarks. This file only wires the parts
 * together. lifecycle.ts describes how statuses progress.
 */
import type { AddressInfo } from "node:net";
import Fastify, { LogController, type FastifyInstance } from "fastify";
import { createControl, type SimulatorControl } from "./control.js";
import { registerControlRoutes } from "./control-routes.js";
import { registerFastApiErrorHandling } from "./errors.js";
import type { SimulatorOptions, SimulatorSettings } from "./options.js";
import { registerRunblobRoutes } from "./runblob-routes.js";
import { createState } from "./state.js";
import type { SimulatorStats } from "./stats.js";

export type { SimulatorOptions } from "./options.js";

export interface Simulator {
  readonly app: FastifyInstance;
  /**
   * Starts listening and returns the base URL, e.g. `http://127.0.0.1:4010`.
   * Port 0 (the default) picks a free port.
   */
  listen(port?: number, host?: string): Promise<string>;
  /** Stops listening. Requests that wait on a delay fault or on latency get their response at once. */
  close(): Promise<void>;
  readonly stats: SimulatorStats;
  readonly control: SimulatorControl;
  /** The validated options with defaults filled in. */
  readonly settings: Readonly<SimulatorSettings>;
  /** Base URL of `video_url` values, undefined until the simulator listens unless given as `baseUrl`. */
  readonly baseUrl: string | undefined;
}

/** Builds the URL that clients on this machine use to reach a listening server. */
function urlOfAddress(address: AddressInfo | string | null): string | undefined {
  if (address === null || typeof address === "string") return undefined;

  // A wildcard address accepts local connections on the loopback address of the same family.
  let host = address.address;
  if (host === "0.0.0.0") host = "127.0.0.1";
  if (host === "::") host = "::1";
  if (host.includes(":")) host = `[${host}]`;
  return `http://${host}:${address.port}`;
}

function createFastify(logger: SimulatorOptions["logger"]): FastifyInstance {
  // One log line per status poll would drown the events worth reading, so request logging stays off.
  const common = { logController: new LogController({ disableRequestLogging: true }) };
  if (typeof logger === "object") return Fastify({ ...common, loggerInstance: logger }) as unknown as FastifyInstance;
  return Fastify({ ...common, logger: logger ?? false });
}

/** Creates a simulator that is not listening yet. Throws an Error that names each invalid option. */
export function createSimulator(options: SimulatorOptions): Simulator {
  const state = createState(options);
  const control = createControl(state);
  const app = createFastify(options.logger);

  registerFastApiErrorHandling(app);
  registerRunblobRoutes(app, state);
  registerControlRoutes(app, state, control);

  // Also runs when a caller uses app.listen() directly instead of listen() below.
  app.addHook("onListen", async () => {
    state.baseUrl ??= urlOfAddress(app.server.address());
  });
  app.addHook("preClose", async () => {
    state.closing.abort();
  });

  return {
    app,
    stats: state.stats,
    control,
    settings: state.settings,
    get baseUrl() {
      return state.baseUrl;
    },

    async listen(port = 0, host = "127.0.0.1") {
      await app.listen({ port, host });
      const url = urlOfAddress(app.server.address());
      if (url === undefined) throw new Error(`simulator listens on ${String(app.server.address())}, which has no HTTP URL`);
      return url;
    },

    async close() {
      state.webhooks.close();
      await app.close();
    },
  };
}
