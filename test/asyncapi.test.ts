/**
 * docs/asyncapi.yaml describes the WebSocket and SSE protocols for people and
 * code generators, and these tests keep it from drifting. The document must
 * be valid AsyncAPI 3.0. Every message type of the zod schemas in
 * src/wire/relay.ts must appear in it, and the other way round. Each payload
 * schema must equal z.toJSONSchema of its zod schema, descriptions and titles aside.
 */
import { readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";
import { parse } from "yaml";
import { z } from "zod";
import { Ajv } from "ajv";
import addFormats from "ajv-formats";
import specs from "@asyncapi/specs";
import {
  clientMessageSchema,
  errorMessageSchema,
  relayStatusSchema,
  serverMessageSchema,
  timeoutMessageSchema,
  upstreamMessageSchema,
} from "../src/wire/relay.js";

type Json = any;

const DOCUMENT_PATH = new URL("../docs/asyncapi.yaml", import.meta.url);
const document: Json = parse(readFileSync(DOCUMENT_PATH, "utf8"));

/** Keys for people (and the `$ref` wrapper resolved away) that zod's JSON Schema output never has. */
const PROSE_KEYS = new Set(["description", "title", "summary", "examples"]);

/** Resolves local `#/...` references, recursively. */
function dereference(value: Json): Json {
  if (Array.isArray(value)) return value.map(dereference);
  if (typeof value !== "object" || value === null) return value;
  if (typeof value.$ref === "string") {
    const target = (value.$ref as string)
      .replace(/^#\//, "")
      .split("/")
      .reduce((node: Json, key: string) => node?.[key.replace(/~1/g, "/").replace(/~0/g, "~")], document);
    if (target === undefined) throw new Error(`unresolved $ref ${value.$ref}`);
    return dereference(target);
  }
  return Object.fromEntries(Object.entries(value).map(([key, entry]) => [key, dereference(entry)]));
}

/** Removes prose keys, so a payload schema can be compared with zod's output. */
function withoutProse(value: Json): Json {
  if (Array.isArray(value)) return value.map(withoutProse);
  if (typeof value !== "object" || value === null) return value;
  return Object.fromEntries(
    Object.entries(value)
      .filter(([key]) => !PROSE_KEYS.has(key))
      .map(([key, entry]) => [key, withoutProse(entry)]),
  );
}

/** z.toJSONSchema without `$schema`, in the form the document uses. */
function jsonSchemaOf(schema: z.ZodType, io: "input" | "output"): Json {
  const json = z.toJSONSchema(schema, { io, target: "draft-2020-12" }) as Json;
  delete json.$schema;
  return json;
}

function channelMessages(channel: string): Record<string, Json> {
  const messages = document.channels?.[channel]?.messages;
  if (messages === undefined) throw new Error(`channel ${channel} has no messages in docs/asyncapi.yaml`);
  return dereference(messages);
}

function typeOf(schema: z.ZodType): string {
  const json = jsonSchemaOf(schema, "output");
  return json.properties.type.const as string;
}

const clientMessages = clientMessageSchema.options.map((schema) => ({ type: typeOf(schema), schema, io: "input" as const }));
const serverMessages = serverMessageSchema.options.map((schema) => ({ type: typeOf(schema), schema, io: "output" as const }));

/** Data of each SSE event, derived from the WebSocket message of the same name. */
const sseEvents: Record<string, z.ZodType> = {
  status: relayStatusSchema,
  timeout: timeoutMessageSchema.omit({ type: true }),
  // Every SSE error names its generation.
  error: errorMessageSchema.omit({ type: true }).required({ generation_id: true }),
  upstream: upstreamMessageSchema.omit({ type: true }),
  // The multi-generation stream's last event carries an empty object.
  end: z.strictObject({}),
};

describe("AsyncAPI document", () => {
  it("is valid AsyncAPI 3.0", () => {
    expect(document.asyncapi).toBe("3.0.0");
    // The specification bundles its own copy of the draft-07 meta-schema, so Ajv's built-in one is left out.
    const ajv = new Ajv({ strict: false, allErrors: true, meta: false, validateSchema: false });
    addFormats.default(ajv);
    const validate = ajv.compile(specs.schemas["3.0.0"] as object);
    const valid = validate(document);
    expect(validate.errors ?? [], JSON.stringify(validate.errors?.slice(0, 5))).toEqual([]);
    expect(valid).toBe(true);
  });

  it("lists every WebSocket message type and no other", () => {
    const documented = Object.values(channelMessages("websocket")).map((message) => message.payload.properties.type.const);
    const expected = [...clientMessages, ...serverMessages].map((message) => message.type);
    expect([...documented].sort()).toEqual([...expected].sort());
  });

  it.each([...clientMessages, ...serverMessages])("WebSocket $type payload equals the zod schema", ({ type, schema, io }) => {
    const message = Object.values(channelMessages("websocket")).find((entry) => entry.payload.properties.type.const === type);
    expect(message, `message ${type} in docs/asyncapi.yaml`).toBeDefined();
    expect(withoutProse(message.payload)).toEqual(jsonSchemaOf(schema, io));
  });

  it.each([
    { channel: "generationEvents", events: ["status", "timeout", "error", "upstream"] },
    { channel: "multiGenerationEvents", events: ["status", "timeout", "error", "upstream", "end"] },
  ])("SSE $channel events equal the zod schemas", ({ channel, events }) => {
    const messages = channelMessages(channel);
    expect(Object.values(messages).map((message) => message.name).sort()).toEqual([...events].sort());
    for (const message of Object.values(messages)) {
      const schema = sseEvents[message.name as string];
      expect(schema, `zod schema for SSE event ${message.name}`).toBeDefined();
      expect(withoutProse(message.payload), `payload of ${channel} ${message.name}`).toEqual(jsonSchemaOf(schema!, "output"));
    }
  });

  it("operations cover every channel message", () => {
    const operations = Object.values(document.operations) as Json[];
    for (const [channel, definition] of Object.entries(document.channels as Record<string, Json>)) {
      const referenced = operations
        .filter((operation) => operation.channel.$ref === `#/channels/${channel}`)
        .flatMap((operation) => operation.messages.map((message: Json) => message.$ref));
      for (const name of Object.keys(definition.messages)) {
        expect(referenced, `an operation sends or receives ${channel}/${name}`).toContain(`#/channels/${channel}/messages/${name}`);
      }
    }
  });
});
