/**
 * The simulator's own HTTP API under `/__simulator/`, for tests and benchmarks
 * that run the simulator in another process. Each route calls the in-process
 * control API or stats. All of them require the simulator's bearer token, and
 * none is counted in stats or affected by faults and latency.
 */
import type { FastifyInstance, FastifyReply } from "fastify";
import { z } from "zod";
import { createBearerAuth } from "./auth.js";
import { balanceUsdSchema } from "./billing.js";
import { GenerationNotFoundError, type SimulatorControl } from "./control.js";
import { delayMsSchema, injectFaultsBodySchema } from "./faults.js";
import { generationPlanSchema } from "./lifecycle.js";
import { PROMPT_MAX_CHARS } from "../wire/upstream.js";
import type { SimulatorState } from "./state.js";
import { ROUTE_KEYS } from "./stats.js";
import { controlIssues } from "./validation.js";

const createBodySchema = z.strictObject({
  prompt: z.string().min(1).max(PROMPT_MAX_CHARS).optional(),
  plan: generationPlanSchema.partial().optional(),
});

/** Any JSON object: forced fields are sent back as given, wrong types included, to test tolerant clients. */
const forceBodySchema = z.record(z.string(), z.unknown());

const finishBodySchema = z.strictObject({
  outcome: z.enum(["completed", "failed"]),
  error_message: z.string().min(1).optional(),
});

const latencyBodySchema = z.strictObject({ ms: delayMsSchema });
const balanceBodySchema = z.strictObject({ balance: balanceUsdSchema });
const clearFaultsQuerySchema = z.strictObject({ route: z.enum(ROUTE_KEYS).optional() });

type Parsed<T> = { ok: true; value: T } | { ok: false };

/** Parses `input` with `schema`. On failure, it responds with 422 and the issues, and returns `{ ok: false }`. */
function parseOrReject<T>(schema: z.ZodType<T>, input: unknown, reply: FastifyReply): Parsed<T> {
  const parsed = schema.safeParse(input);
  if (parsed.success) return { ok: true, value: parsed.data };
  void reply.code(422).send({ detail: controlIssues(parsed.error) });
  return { ok: false };
}

/** Runs `action` and sends its result, or 404 with Runblob's body when it names an unknown generation. */
function sendUnlessNotFound(reply: FastifyReply, action: () => unknown): FastifyReply {
  try {
    const result = action();
    return result === undefined ? reply.code(204).send() : reply.send(result);
  } catch (error) {
    if (error instanceof GenerationNotFoundError) return reply.code(404).send({ detail: "Generation not found" });
    throw error;
  }
}

/** Registers the `/__simulator/` routes on `app`. */
export function registerControlRoutes(app: FastifyInstance, state: SimulatorState, control: SimulatorControl): void {
  const options = { onRequest: [createBearerAuth(state.settings.token)] };

  app.get("/__simulator/stats", options, async () => state.stats.snapshot());

  app.post("/__simulator/stats/reset", options, async (_request, reply) => {
    state.stats.reset();
    return reply.code(204).send();
  });

  app.post("/__simulator/generations", options, async (request, reply) => {
    const body = parseOrReject(createBodySchema, request.body ?? {}, reply);
    if (!body.ok) return reply;

    const generationId = control.create(body.value.plan, body.value.prompt);
    return reply.code(201).send({ generation_id: generationId });
  });

  app.get<{ Params: { id: string } }>("/__simulator/generations/:id", options, async (request, reply) =>
    sendUnlessNotFound(reply, () => control.status(request.params.id)),
  );

  app.post<{ Params: { id: string } }>("/__simulator/generations/:id/force", options, async (request, reply) => {
    const body = parseOrReject(forceBodySchema, request.body, reply);
    if (!body.ok) return reply;
    return sendUnlessNotFound(reply, () => control.force(request.params.id, body.value));
  });

  app.delete<{ Params: { id: string } }>("/__simulator/generations/:id/force", options, async (request, reply) =>
    sendUnlessNotFound(reply, () => control.release(request.params.id)),
  );

  app.post<{ Params: { id: string } }>("/__simulator/generations/:id/finish", options, async (request, reply) => {
    const body = parseOrReject(finishBodySchema, request.body, reply);
    if (!body.ok) return reply;

    const { outcome, error_message: errorMessage } = body.value;
    return sendUnlessNotFound(reply, () => control.finish(request.params.id, outcome, errorMessage));
  });

  app.get("/__simulator/faults", options, async () => ({ pending: control.pendingFaults() }));

  app.post("/__simulator/faults", options, async (request, reply) => {
    const body = parseOrReject(injectFaultsBodySchema, request.body, reply);
    if (!body.ok) return reply;

    control.injectFaults(body.value.route, body.value.faults);
    request.log.info({ route: body.value.route, count: body.value.faults.length }, "simulator faults queued");
    return { pending: control.pendingFaults() };
  });

  app.delete("/__simulator/faults", options, async (request, reply) => {
    const query = parseOrReject(clearFaultsQuerySchema, request.query, reply);
    if (!query.ok) return reply;

    control.clearFaults(query.value.route);
    return reply.code(204).send();
  });

  app.post("/__simulator/latency", options, async (request, reply) => {
    const body = parseOrReject(latencyBodySchema, request.body, reply);
    if (!body.ok) return reply;

    control.setLatency(body.value.ms);
    return reply.code(204).send();
  });

  app.post("/__simulator/balance", options, async (request, reply) => {
    const body = parseOrReject(balanceBodySchema, request.body, reply);
    if (!body.ok) return reply;

    control.setBalance(body.value.balance);
    return { balance: state.balance.format() };
  });
}

