/**
 * The SDK as it ships: tsc builds it, its bundle stays small and free of
 * dependencies, and the React entry leaves React to the application.
 */
import { execFile } from "node:child_process";
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { gzipSync } from "node:zlib";
import { build } from "esbuild";
import { describe, expect, it } from "vitest";

const run = promisify(execFile);
const MAX_GZIPPED_BYTES = 4096;

async function bundle(entry: string, external: string[] = []): Promise<string> {
  const result = await build({
    entryPoints: [entry],
    bundle: true,
    minify: true,
    format: "esm",
    platform: "browser",
    target: "es2022",
    external,
    write: false,
  });
  return result.outputFiles[0]!.text;
}

describe("client package", () => {
  it("bundle stays under 4 KB gzipped", async () => {
    const code = await bundle("client/src/index.ts");
    const gzipped = gzipSync(code).length;
    console.info(`SDK bundle: ${code.length} bytes minified, ${gzipped} bytes gzipped (esbuild, zlib level 6)`);

    expect(gzipped).toBeLessThanOrEqual(MAX_GZIPPED_BYTES);
    // No runtime dependency: nothing is left to import, and zod's types stayed types.
    expect(code).not.toMatch(/\bimport\b/);
    expect(code).not.toContain("zod");
  });

  it("react entry imports only react", async () => {
    const code = await bundle("client/src/react.ts", ["react"]);
    const imports = [...code.matchAll(/from\s*"([^"]+)"/g)].map((match) => match[1]);
    expect(imports).toEqual(["react"]);
  });

  it("builds with tsc into ES modules and declarations", async () => {
    const outDir = await mkdtemp(join(tmpdir(), "relay-client-"));
    try {
      await run("npx", ["tsc", "-p", "client/tsconfig.json", "--outDir", outDir], { timeout: 60_000 });
      const index = await readFile(join(outDir, "client/src/index.js"), "utf8");
      const declarations = await readFile(join(outDir, "client/src/protocol.d.ts"), "utf8");

      expect(index).toContain('export { createRelayClient, isFinalStatus, RelayError } from "./client.js"');
      for (const file of ["client.js", "websocket-transport.js", "sse-transport.js", "react.js"]) {
        expect(await readFile(join(outDir, "client/src", file), "utf8")).not.toContain("zod");
      }
      // The message types stay tied to the server's schemas.
      expect(declarations).toContain("z.output<typeof relayStatusSchema>");
    } finally {
      await rm(outDir, { recursive: true, force: true });
    }
  });
});
