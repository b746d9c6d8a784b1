/**
 * `npm run bench -- --long` and `--open-loop`: long answers at scale. The
 * long-answer levels hold N turns open at once (answers of 30 chunks 2 s
 * apart, arrivals ramped over 10 s, and one burst); the open-loop level is
 * the seed's population (users sending a turn every 20 s on average,
 * answers of 10 to 30 s). Each level runs on a fresh server; the report
 * counts what the database kept, what the clients saw, and what the server
 * used.
 */

import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { selfSignedCertificate } from '../mock-upstream/self-signed.js';
import type { LevelPlan } from './long-answers.js';
import { openFilesFor, peakConcurrency, runLevel } from './long-answers.js';
import type { LevelReport } from './long-report.js';
import { levelDetails, longLevelsTable, openLoopTable } from './long-report.js';
import type { Machine } from './machine.js';
import { banner, interruptOnSignals } from './machine.js';
import { describeMemoryLimit } from './memory-cgroup.js';
import type { ManagedProcess } from './processes.js';
import { describeExit } from './processes.js';
import { startMock } from './stack.js';
import type { AnswerShape } from './turn-schedule.js';
import { answerMs, poissonArrivals, rampedArrivals, seededRandom } from './turn-schedule.js';

export interface OpenLoopOptions {
  users: number;
  durationS: number;
  /** Mean seconds between two turns of one user. */
  meanGapS: number;
  answerMinS: number;
  answerMaxS: number;
  chunks: number;
  seed: number;
}

export interface LongBenchOptions {
  /** Long-answer levels, each ramped (empty: only the open-loop level). */
  levels: number[];
  rampS: number;
  /** The level of the one burst case; undefined for none. */
  burst: number | undefined;
  answer: AnswerShape;
  /** Cap in seconds on waiting for a level's turns after its last start, beyond the answer's own length. */
  drainS: number;
  openLoop: OpenLoopOptions | undefined;
  embedded: boolean;
  workers: number;
  serverEnv: Record<string, string>;
  /** Bytes of the server's memory cgroup (`--server-memory-limit`); undefined: none. */
  serverMemoryLimit?: number | undefined;
  /** Serve the mock over HTTPS (HTTP/2), its certificate trusted by the server through UPSTREAM_CA_FILE. */
  upstreamTls?: boolean | undefined;
}

const MOCK_STOP_GRACE_MS = 10_000;

function describeAnswer(shape: AnswerShape): string {
  return `answers of ${shape.chunks} chunks, the first ${shape.firstTokenMs} ms after the headers, then ${shape.intervalMs} ms apart (${(answerMs(shape) / 1000).toFixed(0)} s)`;
}

/** The levels to run, in order: each ramped level (the burst right after its own level), then the open-loop level. */
export function planLevels(options: Pick<LongBenchOptions, 'levels' | 'rampS' | 'burst' | 'answer' | 'drainS' | 'openLoop'>): LevelPlan[] {
  const plans: LevelPlan[] = [];
  const drainMs = answerMs(options.answer) + options.drainS * 1000;
  const burst = (n: number): LevelPlan => ({
    name: `${n} burst`,
    arrival: 'burst',
    description: `all at once; ${describeAnswer(options.answer)}`,
    turns: rampedArrivals(n, 0, options.answer),
    drainMs,
  });
  for (const n of options.levels) {
    plans.push({
      name: `${n} ramped ${options.rampS} s`,
      arrival: 'ramped',
      description: `arrivals spread over ${options.rampS} s; ${describeAnswer(options.answer)}`,
      turns: rampedArrivals(n, options.rampS * 1000, options.answer),
      drainMs,
    });
    if (options.burst === n) plans.push(burst(n));
  }
  if (options.burst !== undefined && !options.levels.includes(options.burst)) plans.push(burst(options.burst));
  const open = options.openLoop;
  if (open !== undefined) {
    plans.push({
      name: `open loop ${open.users} users`,
      arrival: 'open-loop',
      description:
        `${open.users} users, each a turn every ${open.meanGapS} s on average (Poisson), for ${open.durationS} s; ` +
        `answers of ${open.chunks} chunks over ${open.answerMinS} to ${open.answerMaxS} s (uniform), seed ${open.seed}`,
      turns: poissonArrivals({
        users: open.users,
        meanGapMs: open.meanGapS * 1000,
        durationMs: open.durationS * 1000,
        answerMinMs: open.answerMinS * 1000,
        answerMaxMs: open.answerMaxS * 1000,
        chunks: open.chunks,
        random: seededRandom(open.seed),
      }),
      drainMs: open.answerMaxS * 1000 + options.drainS * 1000,
    });
  }
  return plans;
}

function printReports(reports: readonly LevelReport[]): void {
  const long = reports.filter((r) => r.arrival !== 'open-loop');
  const open = reports.filter((r) => r.arrival === 'open-loop');
  if (long.length > 0) {
    console.log(
      '\nLong answers (stored = assistant rows in PostgreSQL; HTTP errors = answers other than 200, refused before acknowledgement; ' +
        "overhead = client time to first token minus the mock's own delay to its first chunk; KiB/stream = (peak − idle RSS) / peak turns in flight; " +
        'V8 heap = heapTotal, external = memory outside it (buffers), peaks from /health/detailed; fds = /proc/<pid>/fd; srv CPU = server CPU seconds over the level, ms/turn over turns sent)\n',
    );
    console.log(longLevelsTable(long));
  }
  if (open.length > 0) {
    console.log('\nOpen loop (errors = turns that did not end complete for the client; e2e − answer = end-to-end minus the mock\'s own answer time)\n');
    console.log(openLoopTable(open));
  }
  console.log('');
  for (const report of reports) for (const line of levelDetails(report)) console.log(line);
}

export async function runLongBench(options: LongBenchOptions, root: string, machine: Machine, startedAt: Date): Promise<number> {
  const plans = planLevels(options);
  const peak = Math.max(...plans.map((p) => peakConcurrency(p.turns)));
  console.log('LLMChat benchmark: long answers');
  console.log(`  machine: ${machine.cores} cores, ${machine.cpuModel}, ${machine.memory} RAM, ${machine.platform}, node ${machine.node}`);
  console.log(`  open files: soft ${machine.openFiles.soft}, hard ${machine.openFiles.hard}; load average ${machine.loadAverage.join(' / ')}`);
  console.log(`  levels: ${plans.map((p) => `${p.name} (${p.turns.length} turns)`).join(', ')}`);
  const env = Object.entries(options.serverEnv);
  console.log(`  server environment on top of the bench's: ${env.length === 0 ? '(none: the server\'s defaults)' : env.map(([k, v]) => `${k}=${v}`).join(' ')}`);
  if (options.serverMemoryLimit !== undefined) console.log(`  server in a ${describeMemoryLimit(options.serverMemoryLimit)} (--server-memory-limit): Node sizes V8's heap from it`);
  if ((machine.loadAverage[0] ?? 0) > machine.cores * 0.5) {
    banner([`WARNING: the machine is already busy (load ${machine.loadAverage[0]} on ${machine.cores} cores): expect pessimistic figures.`]);
  }

  const interrupt = interruptOnSignals();

  const reports: LevelReport[] = [];
  let broken: string | undefined;
  let mock: ManagedProcess | undefined;
  let mockExit: string | undefined;
  let serverEnv = options.serverEnv;
  let tlsDir: string | undefined;
  try {
    const mockFiles = openFilesFor(peak + 2_048, 'the mock upstream');
    if (mockFiles.note !== undefined) console.log(`  note: ${mockFiles.note}`);
    let tls: { keyFile: string; certFile: string } | undefined;
    if (options.upstreamTls === true) {
      tlsDir = mkdtempSync(path.join(os.tmpdir(), 'llmchat-bench-tls-'));
      const certificate = selfSignedCertificate();
      tls = { keyFile: path.join(tlsDir, 'key.pem'), certFile: path.join(tlsDir, 'cert.pem') };
      writeFileSync(tls.keyFile, certificate.key, { mode: 0o600 });
      writeFileSync(tls.certFile, certificate.cert);
      serverEnv = { UPSTREAM_CA_FILE: tls.certFile, ...serverEnv };
    }
    const started = await startMock(root, { chunks: 20, intervalMs: 5 }, mockFiles.openFiles, tls);
    mock = started.mock;
    console.log(`  mock upstream: ${started.url} (pid ${mock.pid})\n`);
    const mockProcess = mock;
    void mock.exited.then((info) => {
      if (mockExit !== undefined) return;
      broken = `the mock upstream exited during the run (${describeExit(info)})\n${mockProcess.tail().join('\n')}`;
      interrupt.abort();
    });
    for (const plan of plans) {
      if (interrupt.signal.aborted) break;
      const report = await runLevel(
        {
          root,
          mockUrl: started.url,
          embedded: options.embedded,
          workers: options.workers,
          serverEnv,
          serverMemoryLimit: options.serverMemoryLimit,
          log: (line) => console.log(line),
          signal: interrupt.signal,
        },
        plan,
      );
      reports.push(report);
      for (const line of levelDetails(report)) console.log(`  ${line}`);
      console.log('');
    }
    if (interrupt.signal.aborted) broken ??= 'interrupted';
  } catch (error) {
    broken ??= error instanceof Error ? error.message : String(error);
  } finally {
    if (mock !== undefined) {
      mockExit = 'stopping';
      mockExit = describeExit(await mock.stop(MOCK_STOP_GRACE_MS));
    }
    if (tlsDir !== undefined) rmSync(tlsDir, { recursive: true, force: true });
    interrupt.release();
  }

  if (reports.length > 0) printReports(reports);
  const resultsDir = path.join(root, 'bench-results');
  const file = path.join(resultsDir, `bench-long-${startedAt.toISOString().replace(/[:.]/g, '-')}.json`);
  mkdirSync(resultsDir, { recursive: true });
  writeFileSync(
    file,
    `${JSON.stringify(
      { startedAt: startedAt.toISOString(), finishedAt: new Date().toISOString(), machine, options, reports, mockExit, broken },
      (_key, value: unknown) => (typeof value === 'number' && !Number.isFinite(value) ? null : value),
      2,
    )}\n`,
  );
  console.log(`\nresults written to ${path.relative(process.cwd(), file) || file}`);
  if (broken !== undefined) {
    console.log(`\nBENCH BROKEN: ${broken}`);
    return 1;
  }
  return 0;
}
