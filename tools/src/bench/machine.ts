/** The machine a bench ran on, as its report names it, and the banner its warnings print in. */

import { spawnSync } from 'node:child_process';
import os from 'node:os';
import { formatGiB } from './stats.js';

export function banner(lines: string[]): void {
  const width = Math.max(...lines.map((l) => l.length));
  console.log(`\n${'!'.repeat(width + 4)}`);
  for (const line of lines) console.log(`! ${line.padEnd(width)} !`);
  console.log(`${'!'.repeat(width + 4)}\n`);
}

export interface Machine {
  cores: number;
  cpuModel: string;
  memory: string;
  node: string;
  platform: string;
  openFiles: { soft: string; hard: string };
  /** 1, 5 and 15 minute load averages when the bench started. */
  loadAverage: number[];
}

function shellLimit(flag: string): string {
  const result = spawnSync('/bin/sh', ['-c', `ulimit ${flag} -n`], { encoding: 'utf8' });
  return result.status === 0 ? result.stdout.trim() : 'unknown';
}

export function describeMachine(): Machine {
  const cpus = os.cpus();
  return {
    cores: cpus.length,
    cpuModel: cpus[0]?.model.trim() ?? 'unknown',
    memory: formatGiB(os.totalmem()),
    node: process.version,
    platform: `${os.platform()} ${os.release()} ${os.arch()}`,
    openFiles: { soft: shellLimit('-S'), hard: shellLimit('-H') },
    loadAverage: os.loadavg().map((v) => Math.round(v * 100) / 100),
  };
}

/**
 * An abort signal for SIGINT and SIGTERM: a run stops its load and cleans
 * up rather than dying with children and databases left behind; `abort()`
 * stops it the same way from within. `release()` takes the handlers off.
 */
export function interruptOnSignals(): { signal: AbortSignal; abort: () => void; release: () => void } {
  const interrupt = new AbortController();
  const onSignal = (signal: NodeJS.Signals): void => {
    console.log(`\n${signal}: stopping the load and cleaning up…`);
    interrupt.abort();
  };
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);
  return {
    signal: interrupt.signal,
    abort: () => interrupt.abort(),
    release: () => {
      process.removeListener('SIGINT', onSignal);
      process.removeListener('SIGTERM', onSignal);
    },
  };
}
