/** What the run was measured on; machines here are shared, so the load average is recorded too. */
import { availableParallelism, cpus, loadavg, release, totalmem, type } from 'node:os';
import type { BenchMode } from './types.js';

export interface MachineInfo {
  cpuModel: string;
  cores: number;
  availableParallelism: number;
  memoryBytes: number;
  node: string;
  os: string;
  date: string;
  mode: BenchMode;
  /** 1, 5 and 15 minute load averages when the run started. */
  loadAverageAtStart: number[];
}

export function machineInfo(mode: BenchMode): MachineInfo {
  const cpuList = cpus();
  return {
    cpuModel: cpuList[0]?.model.trim() ?? 'unknown',
    cores: cpuList.length,
    availableParallelism: availableParallelism(),
    memoryBytes: totalmem(),
    node: process.version,
    os: `${type()} ${release()} ${process.arch}`,
    date: new Date().toISOString(),
    mode,
    loadAverageAtStart: loadavg().map((l) => Math.round(l * 100) / 100),
  };
}
