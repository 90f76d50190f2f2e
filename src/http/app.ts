/** Builds the Fastify application: plugins, error handling and routes, wired to the relay's services. */
import { randomUUID } from "node:crypto";
import Fastify, { LogController } from "fastify";
import type { FastifyBaseLogger, FastifyInstance } from "fastify";
import websocket from "@fastify/websocket";
import { serializerCompiler, validatorCompiler } from "fastify-type-provider-zod";
import type { Logger } from "pino";
import { createErrorHandler, notFoundHandler } from "./errors.js";
import { instrumentHttp } from "./instrumentation.js";
import { registerOpenApi } from "./openapi.js";
import { metricsRoute } from "./routes/metrics.js";
import type { RelayServices } from "./services.js";
import { generateRoute } from "./routes/generate.js";
import { generationsRoutes } from "./routes/generations.js";
import { eventsRoute } from "./routes/events.js";
import { websocketRoute } from "./routes/websocket.js";
import { healthRoutes } from "./routes/health.js";
import { webhooksRoute } from "./routes/webhooks.js";
import { demoRoute } from "./routes/demo.js";
import { browserClientRoutes } from "./routes/browser-client.js";
import { parseTrustProxy } from "../auth/auth-env.js";
import { registerSecurity } from "../auth/security-hooks.js";

/** Body limit of every route but generate, which sets its own. */
const DEFAULT_BODY_LIMIT = 16 * 1024;
const REQUEST_ID_PATTERN = /^[A-Za-z0-9._:-]{1,64}$/;

export async function buildHttpApp(services: RelayServices, logger: Logger): Promise<FastifyInstance> {
  const app = Fastify({
    loggerInstance: logger as FastifyBaseLogger,
    bodyLimit: DEFAULT_BODY_LIMIT,
    routerOptions: { ignoreTrailingSlash: true, maxParamLength: 200 },
    // A caller's request id is kept when it is safe to log, so one request can be followed across services.
    genReqId: (request) => {
      const incoming = request.headers["x-request-id"];
      return typeof incoming === "string" && REQUEST_ID_PATTERN.test(incoming) ? incoming : randomUUID();
    },
    logController: new LogController({ requestIdLogLabel: "request_id" }),
    return503OnClosing: true,
    // Client addresses (per-address rate limits, logs) and the Host of same-origin checks come from the proxy's headers when set.
    trustProxy: parseTrustProxy(services.config.TRUST_PROXY),
  });

  app.setValidatorCompiler(validatorCompiler);
  app.setSerializerCompiler(serializerCompiler);
  app.setErrorHandler(createErrorHandler(services.logLimiter));
  // Every body the relay accepts is JSON; text/plain would otherwise reach validation as a string.
  app.removeContentTypeParser("text/plain");
  app.setNotFoundHandler(notFoundHandler);
  app.addHook("onRequest", async (request, reply) => {
    reply.header("x-request-id", request.id);
  });
  instrumentHttp(app, services.metrics);
  // Before the routes, so @fastify/swagger sees each of them.
  await registerOpenApi(app);

  await app.register(websocket, {
    options: { maxPayload: services.config.WS_MAX_PAYLOAD_BYTES },
    // Connections are closed by the relay's own shutdown, with a reconnect hint.
    preClose: async () => {},
  });
  // After @fastify/websocket, whose onRequest hook marks upgrade requests (request.ws) so that it can close the socket
  // of one rejected here; before the routes, so these hooks run for every route, WebSocket upgrades included.
  await registerSecurity(app, services.security, { redis: services.redis, logLimiter: services.logLimiter });

  const options = { services };
  await app.register(generateRoute, options);
  await app.register(generationsRoutes, options);
  await app.register(eventsRoute, options);
  await app.register(websocketRoute, options);
  await app.register(healthRoutes, options);
  if (services.config.PUBLIC_BASE_URL !== undefined) await app.register(webhooksRoute, options);
  if (services.config.METRICS_PORT === undefined) await app.register(metricsRoute, { metrics: services.metrics });
  if (services.config.DEMO_ENABLED) await app.register(demoRoute);
  await app.register(browserClientRoutes, options);

  return app;
}
