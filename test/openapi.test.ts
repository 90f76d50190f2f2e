/**
 * The OpenAPI document at /docs/json is generated from the zod schemas the
 * routes validate with, so a change of a schema changes the document.
 */
import { afterEach, describe, expect, it } from "vitest";
import { startRelay, startSimulator } from "./support/relay-harness.js";
import { CleanupStack, httpRequest } from "./support/ops-clients.js";
import { PROMPT_MAX_CHARS } from "../src/wire/upstream.js";

const cleanup = new CleanupStack();
afterEach(() => cleanup.run());

async function fetchDocument(): Promise<any> {
  const sim = await startSimulator();
  cleanup.add(() => sim.close());
  const relay = await startRelay(sim);
  cleanup.add(() => relay.close());
  const result = await httpRequest(`${relay.baseUrl}/docs/json`);
  expect(result.status, result.text).toBe(200);
  return result.json;
}

describe("OpenAPI document", () => {
  it("is OpenAPI 3.1 with every API path", async () => {
    const document = await fetchDocument();
    expect(document.openapi).toBe("3.1.0");
    expect(document.info.title).toBe("runblob-relay");

    const paths = Object.keys(document.paths);
    for (const path of [
      "/v1/sora/generate",
      "/v1/sora/generations",
      "/v1/sora/generations/{id}",
      "/v1/sora/generations/{id}/events",
      "/v1/sora/ws",
      "/healthz",
      "/readyz",
      "/metrics",
    ]) {
      expect(paths, path).toContain(path);
    }
    expect(paths.some((path) => path.startsWith("/docs"))).toBe(false);
    expect(paths).not.toContain("/");
  });

  it("documents the generate body from its zod schema", async () => {
    const document = await fetchDocument();
    const operation = document.paths["/v1/sora/generate"].post;
    const body = operation.requestBody.content["application/json"].schema;

    expect(operation.tags).toEqual(["generations"]);
    expect(body.properties.prompt.maxLength).toBe(PROMPT_MAX_CHARS);
    expect(body.properties.prompt.maxLength).toBe(4000);
    expect(body.properties.prompt.minLength).toBe(1);
    expect(body.properties.orientation.enum).toEqual(["9:16", "16:9"]);
    expect(body.required).toEqual(["prompt"]);
    expect(body.additionalProperties).toBe(false);
    expect(Object.keys(operation.responses)).toEqual(expect.arrayContaining(["201", "422", "502"]));
  });

  it("documents parameters and responses of the status route", async () => {
    const document = await fetchDocument();
    const operation = document.paths["/v1/sora/generations/{id}"].get;

    const id = operation.parameters.find((parameter: { name: string }) => parameter.name === "id");
    expect(id.in).toBe("path");
    expect(id.schema.format).toBe("uuid");
    const status = operation.responses["200"].content["application/json"].schema;
    expect(status.required).toEqual(expect.arrayContaining(["generation_id", "status", "version", "updated_at"]));
    expect(operation.responses["404"]).toBeDefined();

    const list = document.paths["/v1/sora/generations"].get;
    const limit = list.parameters.find((parameter: { name: string }) => parameter.name === "limit");
    expect(limit.in).toBe("query");
    expect(limit.required).not.toBe(true);
  });
});
