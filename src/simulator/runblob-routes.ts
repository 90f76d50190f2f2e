/**
 * The simulated Runblob API: the routes of the real service at the same
 * paths, plus the download route of the simulator's own videos.
 *
 * Every request passes, in order: counting in stats, the persistent latency,
 * the next queued fault of its route, the bearer token check (not for videos),
 * then the handler.
 */
import type { FastifyInstance, FastifyReply, FastifyRequest, onRequestAsyncHookHandler } from "fastify";
import { BOTH_IMAGES_DETAIL, hasBothImageInputs } from "../wire/generate.js";
import { createBearerAuth } from "./auth.js";
import { formatUsd, priceUnits } from "./billing.js";
import { applyFault, waitUnlessAborted, type Fault } from "./faults.js";
import { planGeneration } from "./generations.js";
import { toListItem } from "./lifecycle.js";
import { statusNow, type SimulatorState } from "./state.js";
import type { RouteKey } from "./stats.js";
import { parseListQuery, validateGenerateBody } from "./validation.js";
import { PLACEHOLDER_MP4 } from "./video.js";
import { isLoopbackUrl } from "./webhooks.js";

/**
 * Maximum generate body in bytes: a 10 MB image is about 13.4 MB as base64,
 * well above Fastify's default limit of 1 MiB.
 */
export const GENERATE_BODY_LIMIT_BYTES = 16 * 1024 * 1024;

const DEFAULT_DURATION_SECONDS = 10;

function describeFault(fault: Fault): string {
  if ("delayMs" in fault) return `delay ${fault.delayMs} ms`;
  if ("reset" in fault) return "connection reset";
  return `status ${fault.status}`;
}

/** Creates the first `onRequest` hook of a route: counting, latency and fault injection. */
function createArrivalHook(state: SimulatorState, route: RouteKey): onRequestAsyncHookHandler {
  return async function countAndInjectFault(request: FastifyRequest, reply: FastifyReply) {
    const generationId = route === "status" ? (request.params as { id?: string }).id : undefined;
    state.stats.record(route, generationId);

    // The fault is taken on arrival, so concurrent requests use up faults in arrival order.
    const fault = state.faults.take(route);
    await waitUnlessAborted(state.latencyMs, state.closing.signal);
    if (fault === undefined) return undefined;

    request.log.debug({ route, fault: describeFault(fault) }, "simulator fault applied");
    const responded = await applyFault(fault, request, reply, state.closing.signal);
    return responded ? reply : undefined;
  };
}

/**
 * Builds the 307 target for a request whose path differs from a route only in
 * its trailing slash, as Starlette's `redirect_slashes` does: an absolute URL
 * from the Host header, with the query kept.
 */
function slashRedirectLocation(request: FastifyRequest): string {
  const queryStart = request.url.indexOf("?");
  const path = queryStart === -1 ? request.url : request.url.slice(0, queryStart);
  const query = queryStart === -1 ? "" : request.url.slice(queryStart);
  const target = (path.endsWith("/") ? path.slice(0, -1) : `${path}/`) + query;

  if (request.headers.host === undefined) return target;
  return `${request.protocol}://${request.headers.host}${target}`;
}

/**
 * Lets a loopback callback_url pass validation over plain http (see
 * webhooks.ts); the body is validated as if it used https.
 */
function withLoopbackCallbackAsHttps(body: unknown): unknown {
  if (typeof body !== "object" || body === null) return body;
  const callbackUrl = (body as { callback_url?: unknown }).callback_url;
  if (typeof callbackUrl !== "string" || !callbackUrl.startsWith("http://") || !isLoopbackUrl(callbackUrl)) return body;
  return { ...body, callback_url: `https://${callbackUrl.slice("http://".length)}` };
}

/** Registers the Runblob routes on `app`. */
export function registerRunblobRoutes(app: FastifyInstance, state: SimulatorState): void {
  const checkToken = createBearerAuth(state.settings.token);
  const authenticated = (route: RouteKey) => ({ onRequest: [createArrivalHook(state, route), checkToken] });

  app.post(
    "/v1/sora/generate",
    { ...authenticated("generate"), bodyLimit: GENERATE_BODY_LIMIT_BYTES },
    async (request, reply) => {
      // FastAPI order: field validation (422) first, then the handler's own checks.
      const validated = validateGenerateBody(withLoopbackCallbackAsHttps(request.body));
      if (!validated.ok) return reply.code(422).send({ detail: validated.issues });
      const body = validated.value;

      if (hasBothImageInputs(body)) return reply.code(400).send({ detail: BOTH_IMAGES_DETAIL });

      const price = priceUnits(body.duration ?? DEFAULT_DURATION_SECONDS);
      // NOTE: Runblob's reference does not say whether a failed generation is refunded. The simulator never refunds.
      if (!state.balance.charge(price)) return reply.code(402).send({ detail: "INSUFFICIENT_CREDITS" });

      const plan = planGeneration(body.prompt, state.settings, state.random);
      const record = state.generations.create(body.prompt, plan, new Date(state.now()));
      const callbackUrl = (request.body as { callback_url?: string }).callback_url;
      if (callbackUrl !== undefined) {
        record.callback_url = callbackUrl;
        state.webhooks.schedule(plan.queueMs + plan.processingMs, () => {
          const status = statusNow(state, record);
          if (status.status === "completed" || status.status === "failed") state.webhooks.deliver(callbackUrl, status);
        });
      }
      request.log.debug({ generation_id: record.generation_id, outcome: plan.outcome }, "simulated generation created");

      return reply.code(201).send({ generation_id: record.generation_id, status: "pending", price: formatUsd(price) });
    },
  );

  app.get<{ Params: { id: string } }>("/v1/sora/generations/:id/", authenticated("status"), async (request, reply) => {
    const record = state.generations.get(request.params.id);
    if (record === undefined) return reply.code(404).send({ detail: "Generation not found" });
    return statusNow(state, record);
  });

  // Starlette sends these redirects before routing, so neither authentication nor stats apply.
  const redirectSlash = async (request: FastifyRequest, reply: FastifyReply) =>
    reply.redirect(slashRedirectLocation(request), 307);
  app.get("/v1/sora/generations/:id", redirectSlash);
  app.get("/v1/sora/generations/", redirectSlash);

  app.get("/v1/sora/generations", authenticated("list"), async (request, reply) => {
    const query = parseListQuery(request.query as Record<string, unknown>);
    if (!query.ok) return reply.code(422).send({ detail: query.issues });

    const { offset, limit } = query.value;
    return state.generations.page(offset, limit).map((record) => toListItem(statusNow(state, record)));
  });

  app.get("/v1/data/balance", authenticated("balance"), async () => ({ balance: state.balance.format() }));

  // Videos are public, like Runblob's CDN links, so this route has no token check.
  app.get<{ Params: { file: string } }>(
    "/videos/:file",
    { onRequest: [createArrivalHook(state, "video")] },
    async (request, reply) => {
      const file = request.params.file;
      const record = file.endsWith(".mp4") ? state.generations.get(file.slice(0, -".mp4".length)) : undefined;
      if (record === undefined || statusNow(state, record).status !== "completed") {
        return reply.code(404).send({ detail: "Not Found" });
      }
      return reply.type("video/mp4").send(PLACEHOLDER_MP4);
    },
  );
}
