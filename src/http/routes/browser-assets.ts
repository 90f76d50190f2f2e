/**
 * GET /sdk/<module>.js and GET /demo.js: the browser SDK's compiled ES modules
 * and the demo page's script, served from this relay so the demo needs no CDN.
 * Files are read once at start-up into an allowlist, so no request path ever
 * reaches the file system.
 */
import { readdir, readFile } from "node:fs/promises";
import type { FastifyPluginAsync } from "fastify";
import { sendDetail } from "../errors.js";

/** Output folder of `npm run build:client` (tsc -p client), relative to this file in src/ and in dist/. */
const SDK_DIRECTORY = new URL("../../../client/dist/client/src/", import.meta.url);
const DEMO_SCRIPT = new URL("../../../public/demo.js", import.meta.url);

const JAVASCRIPT = "text/javascript; charset=utf-8";

async function readSdkModules(): Promise<Map<string, string>> {
  const modules = new Map<string, string>();
  let names: string[];
  try {
    names = await readdir(SDK_DIRECTORY);
  } catch {
    return modules;
  }
  for (const name of names.filter((file) => file.endsWith(".js"))) {
    modules.set(name, await readFile(new URL(name, SDK_DIRECTORY), "utf8"));
  }
  return modules;
}

export const browserAssetsRoute: FastifyPluginAsync = async (app) => {
  const modules = await readSdkModules();
  const demoScript = await readFile(DEMO_SCRIPT, "utf8");
  if (!modules.has("index.js")) {
    app.log.warn({ directory: SDK_DIRECTORY.pathname }, "the browser SDK is not built, so the demo page cannot load it: run npm run build:client");
  }

  app.get<{ Params: { file: string } }>("/sdk/:file", async (request, reply) => {
    const source = modules.get(request.params.file);
    if (source === undefined) {
      const hint = modules.size === 0 ? ": the SDK is not built, run npm run build:client and restart the relay" : "";
      return sendDetail(reply, 404, `no SDK module named ${JSON.stringify(request.params.file.slice(0, 80))}${hint}`);
    }
    return reply.type(JAVASCRIPT).header("cache-control", "no-cache").send(source);
  });

  app.get("/demo.js", async (_request, reply) => reply.type(JAVASCRIPT).header("cache-control", "no-cache").send(demoScript));
};
