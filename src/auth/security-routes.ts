/** POST /v1/sora/tickets (stream tickets) and GET /v1/sora/usage (the caller's counts against each limit). */
import { z } from "zod";
import type { FastifyPluginAsyncZod } from "fastify-type-provider-zod";
import { errorBodySchema } from "../wire/upstream.js";
import { sendDetail } from "../http/errors.js";
import type { Security } from "./security.js";

const ticketSchema = z.object({
  ticket: z.string().describe("Pass as ?ticket= on the SSE, multi-generation SSE and WebSocket URLs"),
  expires_at: z.string().describe("ISO 8601 time after which the relay rejects the ticket"),
  expires_in: z.number().int().describe("Seconds until expires_at"),
});

const countSchema = z.object({ used: z.number().int(), limit: z.number().int() });
const usageSchema = z.object({
  user_id: z.string(),
  generations_this_hour: countSchema.extend({ resets_at: z.string() }),
  active_generations: countSchema,
  spend_today_usd: z.object({ used: z.string(), limit: z.string(), resets_at: z.string() }),
  open_connections: countSchema,
});

const unauthorized = errorBodySchema.describe("Missing or invalid credentials");

export const securityRoutes: FastifyPluginAsyncZod<{ security: Security }> = async (app, { security }) => {
  app.post(
    "/v1/sora/tickets",
    {
      schema: {
        tags: ["auth"],
        summary: "Issue a short-lived stream ticket",
        description:
          "For browsers, which cannot set an Authorization header on EventSource or WebSocket: the ticket stands for the caller " +
          "on the stream URLs until it expires (AUTH_TICKET_TTL_SECONDS). A stream that is open when it expires stays open.",
        response: { 201: ticketSchema, 401: unauthorized, 404: errorBodySchema.describe("AUTH_MODE=none: there are no users") },
      },
    },
    async (request, reply) => {
      if (security.tickets === undefined || request.principal == null) {
        return sendDetail(reply, 404, "tickets are not needed: this relay runs with AUTH_MODE=none and accepts every request");
      }
      const issued = await security.tickets.issue(request.principal);
      reply.header("cache-control", "no-store");
      return reply.code(201).send({
        ticket: issued.ticket,
        expires_at: issued.expiresAt.toISOString(),
        expires_in: security.tickets.ttlSeconds,
      });
    },
  );

  app.get(
    "/v1/sora/usage",
    {
      schema: {
        tags: ["auth"],
        summary: "The caller's counts against each per-user limit",
        response: { 200: usageSchema, 401: unauthorized, 404: errorBodySchema.describe("AUTH_MODE=none: there are no users") },
      },
    },
    async (request, reply) => {
      if (!security.perUser || request.principal == null) {
        return sendDetail(reply, 404, "no usage is counted: this relay runs with AUTH_MODE=none, which has no users and no per-user limits");
      }
      return reply.send(await security.generationLimits.usage(request.principal));
    },
  );
};
