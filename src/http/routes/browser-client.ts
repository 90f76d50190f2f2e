/**
 * Routes for browser clients, registered together: the multi-generation event
 * stream, and with DEMO_ENABLED the SDK modules and the demo page's script.
 */
import type { FastifyPluginAsync } from "fastify";
import type { RelayServices } from "../services.js";
import { browserAssetsRoute } from "./browser-assets.js";
import { multiEventsRoute } from "./multi-events.js";

export const browserClientRoutes: FastifyPluginAsync<{ services: RelayServices }> = async (app, { services }) => {
  await app.register(multiEventsRoute, { services });
  if (services.config.DEMO_ENABLED) await app.register(browserAssetsRoute);
};
