/** Details of the machine a run used, for the report. */
import { execFileSync } from "node:child_process";
import { readFileSync } from "node:fs";
import os from "node:os";
import { hasTaskset } from "./processes.js";

export interface MachineInfo {
  cpuModel: string;
  cores: number;
  ramGiB: number;
  kernel: string;
  node: string;
  date: string;
  /** 1-minute load average when the scenario started: other work on the machine skews results. */
  loadAverage: number;
  openFilesHardLimit: string;
  taskset: boolean;
  redis: string;
  pushpin: string;
}

function commandOutput(command: string, args: string[]): string {
  try {
    return execFileSync(command, args, { encoding: "utf8", stdio: ["ignore", "pipe", "ignore"], timeout: 5000 }).trim();
  } catch {
    return "not installed";
  }
}

export function machineInfo(): MachineInfo {
  let cpuModel = os.cpus()[0]?.model ?? "unknown";
  try {
    cpuModel = /model name\s*:\s*(.+)/.exec(readFileSync("/proc/cpuinfo", "utf8"))?.[1]?.trim() ?? cpuModel;
  } catch {
    // Not Linux: os.cpus() has it.
  }
  const redis = commandOutput("redis-server", ["--version"]);
  const pushpin = commandOutput("pushpin", ["--version"]);
  return {
    cpuModel,
    cores: os.availableParallelism(),
    ramGiB: Math.round((os.totalmem() / 2 ** 30) * 10) / 10,
    kernel: `${os.type()} ${os.release()}`,
    node: process.version,
    date: new Date().toISOString(),
    loadAverage: Math.round(os.loadavg()[0]! * 100) / 100,
    openFilesHardLimit: commandOutput("sh", ["-c", "ulimit -Hn"]),
    taskset: hasTaskset(),
    redis: /v=([\d.]+)/.exec(redis)?.[1] ?? redis,
    pushpin: pushpin.split("\n")[0] ?? pushpin,
  };
}

export function describeMachine(machine: MachineInfo): string {
  return [
    `${machine.cpuModel}, ${machine.cores} cores, ${machine.ramGiB} GiB RAM`,
    `${machine.kernel}, Node.js ${machine.node}`,
    `open files per process (hard limit) ${machine.openFilesHardLimit}`,
    `taskset ${machine.taskset ? "used" : "not available: processes were not pinned"}`,
    `redis-server ${machine.redis}`,
    `pushpin ${machine.pushpin}`,
    `load average ${machine.loadAverage} at start`,
    `run on ${machine.date}`,
  ].join("; ");
}
