/**
 * Repeats the Dockerfile's steps without Docker, which CI does not have. The
 * Dockerfile is parsed, not copied: each stage's COPY, ENV and RUN lines run
 * in a temporary folder per stage, so the test and the image cannot drift.
 * Then the runtime stage's CMD starts against a simulator. /healthz and
 * /readyz must return 200 and the HEALTHCHECK command must pass. SIGTERM must
 * stop the process with exit code 0 within 10 s.
 *
 * NOTE: the base image (node:24-bookworm-slim) is not reproduced; the steps
 * run on this machine's Node.js, and `npm cache clean` is skipped because it
 * would empty this machine's npm cache rather than an image layer's.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { cpSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { basename, join, resolve } from "node:path";
import net from "node:net";
import { afterAll, describe, expect, it } from "vitest";
import { startSimulator } from "./support/relay-harness.js";
import type { SimulatorHandle } from "./support/relay-harness.js";
import { httpRequest, waitUntil } from "./support/ops-clients.js";

const REPOSITORY = resolve(new URL("..", import.meta.url).pathname);
const STEP_TIMEOUT_MS = 8 * 60_000;
const STOP_DEADLINE_MS = 10_000;

type Instruction = { keyword: string; argument: string };

interface Stage {
  name: string;
  workdir: string;
  instructions: Instruction[];
}

/** Splits a Dockerfile into stages of instructions, joining `\` continuations and dropping comments. */
function parseDockerfile(text: string): Stage[] {
  const logical: string[] = [];
  let current = "";
  for (const raw of text.split("\n")) {
    const line = raw.trim();
    if (current === "" && (line === "" || line.startsWith("#"))) continue;
    if (line.endsWith("\\")) {
      current += `${line.slice(0, -1).trim()} `;
      continue;
    }
    logical.push(`${current}${line}`.trim());
    current = "";
  }

  const stages: Stage[] = [];
  for (const line of logical) {
    const space = line.indexOf(" ");
    const keyword = line.slice(0, space).toUpperCase();
    const argument = line.slice(space + 1).trim();
    if (keyword === "FROM") {
      const alias = /\bAS\s+(\S+)/i.exec(argument)?.[1] ?? String(stages.length);
      stages.push({ name: alias, workdir: "/", instructions: [] });
      continue;
    }
    const stage = stages.at(-1);
    if (stage === undefined) throw new Error(`Dockerfile instruction before FROM: ${line}`);
    if (keyword === "WORKDIR") stage.workdir = argument;
    stage.instructions.push({ keyword, argument });
  }
  return stages;
}

/** Parses `ENV a=1 b=2` into a record (values without spaces, as this Dockerfile uses). */
function parseEnv(argument: string): Record<string, string> {
  return Object.fromEntries(argument.split(/\s+/).map((pair) => pair.split("=") as [string, string]));
}

/** Parses an exec-form command such as `["node", "dist/main.js"]`. */
function parseExecForm(argument: string): string[] {
  const command = JSON.parse(argument) as unknown;
  if (!Array.isArray(command) || command.length === 0) throw new Error(`expected an exec-form command, got ${argument}`);
  return command as string[];
}

function run(command: string, cwd: string, env: NodeJS.ProcessEnv): Promise<void> {
  return new Promise((resolvePromise, reject) => {
    const child = spawn("sh", ["-c", command], { cwd, env, stdio: ["ignore", "pipe", "pipe"] });
    let output = "";
    child.stdout.on("data", (chunk: Buffer) => (output += chunk.toString()));
    child.stderr.on("data", (chunk: Buffer) => (output += chunk.toString()));
    child.on("error", reject);
    child.on("exit", (code) => {
      if (code === 0) resolvePromise();
      else reject(new Error(`"${command}" in ${cwd} failed with exit code ${code}:\n${output.slice(-4000)}`));
    });
  });
}

/** Returns this machine's environment without the variables the image would not have. */
function baseEnvironment(): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { ...process.env };
  for (const name of Object.keys(env)) {
    if (name === "NODE_ENV" || name.startsWith("VITEST") || name === "REDIS_URL" || name.startsWith("RUNBLOB_")) delete env[name];
  }
  return env;
}

interface BuiltImage {
  runtimeDir: string;
  env: Record<string, string>;
  user: string | undefined;
  healthcheck: string[] | undefined;
  command: string[];
}

/**
 * Runs every stage's COPY, ENV and RUN lines in its own folder under `root`.
 * A stage's WORKDIR maps to its folder, so `COPY --from=build /app/dist` reads
 * the build stage's folder.
 */
async function buildStages(stages: Stage[], root: string): Promise<BuiltImage> {
  const folders = new Map<string, { dir: string; workdir: string }>();
  let image: BuiltImage | undefined;

  for (const stage of stages) {
    const dir = join(root, stage.name);
    mkdirSync(dir, { recursive: true });
    folders.set(stage.name, { dir, workdir: stage.workdir });
    const env: Record<string, string> = {};
    image = { runtimeDir: dir, env, user: undefined, healthcheck: undefined, command: [] };

    for (const { keyword, argument } of stage.instructions) {
      switch (keyword) {
        case "ENV":
          Object.assign(env, parseEnv(argument));
          break;
        case "COPY":
          copyInstruction(argument, dir, folders);
          break;
        case "RUN":
          for (const command of argument.split("&&").map((part) => part.trim())) {
            if (command.startsWith("npm cache clean")) continue;
            await run(command, dir, { ...baseEnvironment(), ...env });
          }
          break;
        case "USER":
          image.user = argument;
          break;
        case "HEALTHCHECK":
          image.healthcheck = parseExecForm(argument.slice(argument.indexOf("CMD") + 3).trim());
          break;
        case "CMD":
          image.command = parseExecForm(argument);
          break;
      }
    }
  }
  if (image === undefined) throw new Error("Dockerfile has no stage");
  return image;
}

/** Paths of .dockerignore, as plain relative paths (the only form this repository uses). */
function dockerIgnored(): string[] {
  return readFileSync(join(REPOSITORY, ".dockerignore"), "utf8")
    .split("\n")
    .map((line) => line.trim())
    .filter((line) => line !== "" && !line.startsWith("#"));
}

function copyInstruction(argument: string, dir: string, folders: Map<string, { dir: string; workdir: string }>): void {
  const parts = argument.split(/\s+/);
  let sourceRoot = REPOSITORY;
  let sourcePrefix = "";
  if (parts[0]!.startsWith("--from=")) {
    const from = folders.get(parts.shift()!.slice("--from=".length));
    if (from === undefined) throw new Error(`COPY from an unknown stage: ${argument}`);
    sourceRoot = from.dir;
    sourcePrefix = from.workdir;
  }
  const destination = parts.pop()!;
  for (const source of parts) {
    const relative = sourcePrefix !== "" && source.startsWith(sourcePrefix) ? source.slice(sourcePrefix.length) : source;
    const from = join(sourceRoot, relative);
    const target = destination.endsWith("/") ? join(dir, destination, basename(relative)) : join(dir, destination);
    if (!statSync(from).isDirectory()) {
      cpSync(from, target);
      continue;
    }
    // The build context leaves out what .dockerignore lists; files from another stage are copied whole.
    const ignored = sourceRoot === REPOSITORY ? dockerIgnored().map((path) => join(REPOSITORY, path)) : [];
    cpSync(from, target, { recursive: true, filter: (path) => !ignored.some((skip) => path === skip || path.startsWith(`${skip}/`)) });
  }
}

async function freePort(): Promise<number> {
  const server = net.createServer();
  await new Promise<void>((done) => server.listen(0, "127.0.0.1", done));
  const { port } = server.address() as net.AddressInfo;
  await new Promise((done) => server.close(done));
  return port;
}

function waitForExit(child: ChildProcess, timeoutMs: number): Promise<{ code: number | null; signal: string | null; ms: number }> {
  const started = Date.now();
  return new Promise((resolvePromise, reject) => {
    const timer = setTimeout(() => reject(new Error(`process did not exit within ${timeoutMs} ms of SIGTERM`)), timeoutMs);
    child.once("exit", (code, signal) => {
      clearTimeout(timer);
      resolvePromise({ code, signal, ms: Date.now() - started });
    });
  });
}

describe("container steps", () => {
  const root = mkdtempSync(join(tmpdir(), "relay-image-"));
  let sim: SimulatorHandle | undefined;
  let relay: ChildProcess | undefined;
  afterAll(async () => {
    if (relay !== undefined && relay.exitCode === null) relay.kill("SIGKILL");
    await sim?.close();
    rmSync(root, { recursive: true, force: true });
  });

  it("builds, serves and stops like the image", async () => {
    const stages = parseDockerfile(readFileSync(join(REPOSITORY, "Dockerfile"), "utf8"));
    expect(stages.map((stage) => stage.name)).toEqual(["build", "runtime"]);

    const image = await buildStages(stages, root);
    // The image runs as the base image's unprivileged `node` user, never as root.
    expect(image.user).toBe("node");
    expect(image.env.NODE_ENV).toBe("production");
    expect(image.command).toEqual(["node", "dist/main.js"]);
    expect(image.healthcheck).toBeDefined();
    // Production install only: no dev dependency in the runtime folder.
    expect(() => statSync(join(image.runtimeDir, "node_modules", "vitest"))).toThrow();
    expect(statSync(join(image.runtimeDir, "node_modules", "prom-client")).isDirectory()).toBe(true);

    sim = await startSimulator();
    const port = await freePort();
    const env = {
      ...baseEnvironment(),
      ...image.env,
      // Loopback only: the image's HOST=0.0.0.0 would listen on every interface of this machine.
      HOST: "127.0.0.1",
      PORT: String(port),
      RUNBLOB_TOKEN: sim.token,
      RUNBLOB_BASE_URL: sim.url,
      LOG_LEVEL: "info",
      // Production requires an explicit choice; the test sends no credentials.
      AUTH_MODE: "none",
    };
    let output = "";
    relay = spawn(image.command[0]!, image.command.slice(1), { cwd: image.runtimeDir, env, stdio: ["ignore", "pipe", "pipe"] });
    relay.stdout!.on("data", (chunk: Buffer) => (output += chunk.toString()));
    relay.stderr!.on("data", (chunk: Buffer) => (output += chunk.toString()));
    const baseUrl = `http://127.0.0.1:${port}`;

    await waitUntil(() => output.includes("listening") || relay!.exitCode !== null, "the relay logs that it listens", 30_000);
    expect(relay.exitCode, output).toBeNull();

    const health = await httpRequest(`${baseUrl}/healthz`);
    expect(health.status, health.text).toBe(200);
    const ready = await httpRequest(`${baseUrl}/readyz`);
    expect(ready.status, ready.text).toBe(200);
    expect(ready.json.status).toBe("ready");
    const docs = await httpRequest(`${baseUrl}/docs/json`);
    expect(docs.status).toBe(200);
    // The demo page loads the browser SDK from the relay, so the image must carry its build.
    const demo = await httpRequest(`${baseUrl}/`);
    expect(demo.status).toBe(200);
    const sdk = await httpRequest(`${baseUrl}/sdk/index.js`);
    expect(sdk.status, sdk.text).toBe(200);

    await run(image.healthcheck!.map((part) => `'${part.replace(/'/g, `'\\''`)}'`).join(" "), image.runtimeDir, env);

    relay.kill("SIGTERM");
    const exit = await waitForExit(relay, STOP_DEADLINE_MS);
    expect(exit.signal, output).toBeNull();
    expect(exit.code, output).toBe(0);
    expect(exit.ms).toBeLessThan(STOP_DEADLINE_MS);
    expect(output).toContain("stopped");
    expect(output).not.toContain(sim.token);
  }, STEP_TIMEOUT_MS);
});
