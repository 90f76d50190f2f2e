/** Routes for browser clients, registered together: for now the multi-generation event stream. */
import type { FastifyPluginAsync } from "fastify";
import type { RelayServices } from "../services.js";
import { multiEventsRoute } from "./multi-events.js";

export const browserClientRoutes: FastifyPluginAsync<{ services: RelayServices }> = async (app, { services }) => {
  await app.register(multiEventsRoute, { services });
};
