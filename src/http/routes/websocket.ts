/** GET /v1/sora/ws: the WebSocket endpoint; the protocol lives in push/websocket-connection.ts. */
import type { FastifyPluginAsync } from "fastify";
import type {} from "@fastify/websocket";
import { WebSocketConnection } from "../../push/websocket-connection.js";
import { sendDetail } from "../errors.js";
import type { RelayServices } from "../services.js";

export const websocketRoute: FastifyPluginAsync<{ services: RelayServices }> = async (app, { services }) => {
  const { config } = services;
  app.route({
    method: "GET",
    url: "/v1/sora/ws",
    schema: {
      tags: ["push"],
      summary: "WebSocket endpoint for status changes of many generations",
      description:
        "Upgrade to a WebSocket and send JSON text frames: subscribe and unsubscribe; the relay sends status, timeout and " +
        "error messages. Message formats: docs/asyncapi.yaml. A plain HTTP request gets 426.",
    },
    handler: async (_request, reply) =>
      sendDetail(reply, 426, "this endpoint speaks WebSocket only: connect with a WebSocket client (Upgrade: websocket)"),
    wsHandler: (socket, request) => {
      const connection = new WebSocketConnection(
        socket,
        services.hub,
        services.reader,
        {
          maxSubscriptions: config.WS_MAX_SUBSCRIPTIONS,
          maxMessagesPerSecond: config.WS_MAX_MESSAGES_PER_SECOND,
          maxBufferedBytes: config.MAX_BUFFERED_BYTES,
          conflateBytes: config.PUSH_CONFLATE_BYTES,
        },
        request.log,
        // request.raw.socket is the TCP socket the upgrade took over; ws writes every frame to it.
        {
          rawSocket: request.raw.socket,
          metrics: services.metrics.transport("websocket"),
          logLimiter: services.logLimiter,
          authorize: services.security.subscriptionCheck(request),
        },
      );
      services.connections.addWebSocket(connection);

      socket.on("message", (data, isBinary) => connection.handleMessage(data, isBinary));
      socket.on("close", () => {
        connection.dispose();
        services.connections.removeWebSocket(connection);
      });
      // ws closes the socket itself after an error (an oversized frame, say: close code 1009).
      socket.on("error", (error) => request.log.info({ err: error }, "websocket error"));
    },
  });
};
