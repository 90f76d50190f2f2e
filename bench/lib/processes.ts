/**
 * Child processes of a benchmark run: started with `taskset` when a core
 * list is given, logged to files in the run directory, and stopped when the
 * run ends, also when it fails or is interrupted.
 *
 * Every child is the leader of its own process group, so stopping it also
 * stops the processes it started itself (Pushpin's runner starts several).
 */
import { spawn, type ChildProcess, type StdioOptions } from "node:child_process";
import { existsSync, openSync, closeSync, readFileSync, readdirSync } from "node:fs";
import { join } from "node:path";

export interface StartOptions {
  /** Short name used for the log file and in error messages. */
  name: string;
  command: string;
  args: string[];
  cwd: string;
  /** Variables added to this process's environment. */
  env?: Record<string, string>;
  /** CPU list for `taskset -c`, e.g. "0" or "1". Ignored when taskset is missing. */
  cpus?: string;
  /** Opens an IPC channel (the child must be a Node.js process). */
  ipc?: boolean;
  logDir: string;
}

export interface ManagedProcess {
  name: string;
  child: ChildProcess;
  pid: number;
  cwd: string;
  /** The command line as run, environment additions first, for the report. */
  commandLine: string;
  logFile: string;
  exited: Promise<number | null>;
  /** Sends SIGTERM to the process group, then SIGKILL after `graceMs`. */
  stop(graceMs?: number): Promise<void>;
}

const running = new Set<ManagedProcess>();

let tasksetChecked: boolean | undefined;

/** True when `taskset` exists on this machine. */
export function hasTaskset(): boolean {
  tasksetChecked ??= ["/usr/bin/taskset", "/bin/taskset", "/usr/local/bin/taskset"].some((path) => existsSync(path));
  return tasksetChecked;
}

/** Quotes one word for a POSIX shell, for command lines shown in the report. */
export function shellQuote(word: string): string {
  return /^[A-Za-z0-9_@%+=:,./-]+$/.test(word) ? word : `'${word.replace(/'/g, `'\\''`)}'`;
}

export function startProcess(options: StartOptions): ManagedProcess {
  const logFile = join(options.logDir, `${options.name}.log`);
  const logFd = openSync(logFile, "a");

  let command = options.command;
  let args = options.args;
  if (options.cpus !== undefined && hasTaskset()) {
    args = ["-c", options.cpus, command, ...args];
    command = "taskset";
  }

  const stdio: StdioOptions = options.ipc ? ["ignore", logFd, logFd, "ipc"] : ["ignore", logFd, logFd];
  const child = spawn(command, args, {
    cwd: options.cwd,
    env: { ...process.env, ...options.env },
    stdio,
    detached: true,
  });
  closeSync(logFd);
  if (child.pid === undefined) throw new Error(`could not start ${options.name} (${command}): no process id`);

  const envWords = Object.entries(options.env ?? {}).map(([key, value]) => `${key}=${shellQuote(value)}`);
  const commandLine = [...envWords, command, ...args].map((word, i) => (i < envWords.length ? word : shellQuote(word))).join(" ");

  const exited = new Promise<number | null>((resolve) => {
    child.once("exit", (code, signal) => resolve(code ?? (signal === null ? null : -1)));
    child.once("error", () => resolve(-1));
  });

  const managed: ManagedProcess = {
    name: options.name,
    child,
    pid: child.pid,
    cwd: options.cwd,
    commandLine,
    logFile,
    exited,
    async stop(graceMs = 10_000) {
      if (child.exitCode !== null || child.signalCode !== null) {
        running.delete(managed);
        return;
      }
      signalGroup(child.pid!, "SIGTERM");
      const timer = setTimeout(() => signalGroup(child.pid!, "SIGKILL"), graceMs);
      await exited;
      clearTimeout(timer);
      // Children of the leader (Pushpin's services) may outlive it for a moment.
      signalGroup(child.pid!, "SIGKILL");
      running.delete(managed);
    },
  };
  running.add(managed);
  void exited.then(() => {
    if (managed.child.exitCode !== null && managed.child.exitCode !== 0 && running.has(managed)) {
      process.stderr.write(`bench: ${options.name} exited with status ${managed.child.exitCode}; see ${logFile}\n`);
    }
  });
  return managed;
}

function signalGroup(pid: number, signal: NodeJS.Signals): void {
  try {
    process.kill(-pid, signal);
  } catch {
    // The group is gone already.
  }
}

/** Stops every process this run started, newest first. */
export async function stopAll(): Promise<void> {
  const all = [...running].reverse();
  await Promise.all(all.map((managed) => managed.stop(5000)));
}

/** Kills every process this run started at once; for the exit handler, which cannot wait. */
export function killAllNow(): void {
  for (const managed of running) signalGroup(managed.pid, "SIGKILL");
}

/** Returns the last lines of a process's log, for error messages. */
export function logTail(managed: ManagedProcess, lines = 20): string {
  try {
    return readFileSync(managed.logFile, "utf8").trimEnd().split("\n").slice(-lines).join("\n");
  } catch {
    return "(no log)";
  }
}

/** Clock ticks per second of /proc/<pid>/stat times (USER_HZ, 100 on Linux). */
const CLOCK_TICKS_PER_SECOND = 100;

export interface Usage {
  /** Resident set size in bytes, summed over the processes. */
  rssBytes: number;
  /** User plus system CPU time in seconds, summed over the processes. */
  cpuSeconds: number;
}

/** Reads RSS and CPU time of one process from /proc; zero when it is gone. */
export function readUsage(pid: number): Usage {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    // Fields after the command name, which is in parentheses and may contain spaces.
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    const utime = Number(fields[11]);
    const stime = Number(fields[12]);
    const status = readFileSync(`/proc/${pid}/status`, "utf8");
    const rssKb = Number(/VmRSS:\s+(\d+)/.exec(status)?.[1] ?? 0);
    return { rssBytes: rssKb * 1024, cpuSeconds: (utime + stime) / CLOCK_TICKS_PER_SECOND };
  } catch {
    return { rssBytes: 0, cpuSeconds: 0 };
  }
}

/** Lists the process and all its descendants, found through the parent ids in /proc. */
export function processTree(rootPid: number): number[] {
  const parentOf = new Map<number, number>();
  for (const entry of readdirSync("/proc")) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const stat = readFileSync(`/proc/${entry}/stat`, "utf8");
      const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
      parentOf.set(Number(entry), Number(fields[1]));
    } catch {
      // The process ended while the list was read.
    }
  }
  const tree = [rootPid];
  for (let i = 0; i < tree.length; i += 1) {
    for (const [pid, parent] of parentOf) if (parent === tree[i]) tree.push(pid);
  }
  return tree;
}

/** Sums the usage of a list of processes. */
export function readTreeUsage(pids: readonly number[]): Usage {
  let rssBytes = 0;
  let cpuSeconds = 0;
  for (const pid of pids) {
    const usage = readUsage(pid);
    rssBytes += usage.rssBytes;
    cpuSeconds += usage.cpuSeconds;
  }
  return { rssBytes, cpuSeconds };
}

export interface UsageSummary {
  /** Largest RSS sampled, in bytes. */
  rssMaxBytes: number;
  /** RSS at the last sample, in bytes. */
  rssEndBytes: number;
  /** CPU time over the window divided by its length, in percent of one core. */
  cpuPercent: number;
  /** CPU time used in the window, in seconds. */
  cpuSeconds: number;
}

/**
 * Samples RSS and CPU of a set of processes once per `periodMs` until
 * stopped. `pids` is called on every sample, so a process tree can grow.
 */
export class UsageSampler {
  #timer: NodeJS.Timeout | undefined;
  #rssMax = 0;
  #rssLast = 0;
  readonly #startCpu: number;
  readonly #startedAt: number;

  constructor(
    private readonly pids: () => number[],
    periodMs = 1000,
  ) {
    const first = readTreeUsage(this.pids());
    this.#startCpu = first.cpuSeconds;
    this.#startedAt = performance.now();
    this.#record(first);
    this.#timer = setInterval(() => this.#record(readTreeUsage(this.pids())), periodMs);
  }

  #record(usage: Usage): void {
    this.#rssLast = usage.rssBytes;
    this.#rssMax = Math.max(this.#rssMax, usage.rssBytes);
  }

  stop(): UsageSummary {
    clearInterval(this.#timer);
    const last = readTreeUsage(this.pids());
    this.#record(last);
    const seconds = (performance.now() - this.#startedAt) / 1000;
    return {
      rssMaxBytes: this.#rssMax,
      rssEndBytes: this.#rssLast,
      cpuPercent: seconds > 0 ? (100 * (last.cpuSeconds - this.#startCpu)) / seconds : 0,
      cpuSeconds: last.cpuSeconds - this.#startCpu,
    };
  }
}
