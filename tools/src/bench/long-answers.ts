/**
 * One long-answer or open-loop level, start to end: a fresh database and
 * Redis prefix, a fresh server (so its idle memory is its own and nothing of
 * an earlier level stays in its heap), a turn through the whole path to
 * check the set-up, then the planned turns with the server watched, then
 * the count of what the database kept. `npm run bench -- --long` and the
 * long-answer test both run levels through here.
 */

import { randomBytes } from 'node:crypto';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Arrival, LevelReport } from './long-report.js';
import { clientFigures, kibPerStream } from './long-report.js';
import { cpuSeconds, describeExit, openFiles, openFilesLimit, rssMiB, sumOverChildren } from './processes.js';
import { startResourceSampler } from './resource-sampler.js';
import { startScheduledLoad } from './scheduled-load.js';
import type { RunningServer } from './stack.js';
import { BENCH_ADMIN, BENCH_AGENT_ID, chooseBackends, createAgent, login, releaseBackends, startServer } from './stack.js';
import { countStoredTurns, waitForFinalRows } from './stored-turns.js';
import type { PlannedTurn } from './turn-schedule.js';
import { answerMs } from './turn-schedule.js';

export interface LevelPlan {
  name: string;
  arrival: Arrival;
  description: string;
  turns: readonly PlannedTurn[];
  /** After the last planned start, how long turns may still run before they are abandoned. */
  drainMs: number;
}

export interface LevelSetting {
  root: string;
  mockUrl: string;
  embedded: boolean;
  workers: number;
  /** On top of the bench's server environment (`--server-env`). */
  serverEnv: Record<string, string>;
  /** Bytes of the server's memory cgroup (`--server-memory-limit`); undefined: none. */
  serverMemoryLimit?: number | undefined;
  log: (line: string) => void;
  signal?: AbortSignal;
}

const CHILD_STOP_GRACE_MS = 35_000;
const SETTLE_MS = 2_000;
const FINAL_ROWS_TIMEOUT_MS = 60_000;
/** Descriptors a server needs per stream (client socket, upstream socket, some slack), and beyond the streams. */
const SERVER_FILES_PER_STREAM = 3;
const FILES_HEADROOM = 2_048;

/** The most turns of a plan that can run at once: every turn whose answer is not over when the next starts. */
export function peakConcurrency(turns: readonly PlannedTurn[]): number {
  const events: [number, number][] = [];
  for (const t of turns) events.push([t.atMs, 1], [t.atMs + answerMs(t.answer), -1]);
  events.sort((a, b) => a[0] - b[0] || a[1] - b[1]);
  let now = 0;
  let peak = 0;
  for (const [, step] of events) {
    now += step;
    if (now > peak) peak = now;
  }
  return peak;
}

const RAISE_ADVICE = 'Raise it first: `ulimit -Hn` as root, LimitNOFILE= under systemd, or run where CAP_SYS_RESOURCE lets `prlimit` raise it.';

/**
 * Whether a child can be started with `want` open files. Node raises its
 * own soft limit to the hard one at start, so within this process's hard
 * limit nothing is needed; above it the child is started through `prlimit`
 * where that may raise a hard limit (CAP_SYS_RESOURCE), and otherwise a
 * note says the level may run out of descriptors.
 */
export function openFilesFor(want: number, what: string): { openFiles: number | undefined; note: string | undefined } {
  const limit = openFilesLimit('self');
  if (limit === undefined || want <= limit.hard) return { openFiles: undefined, note: undefined };
  const probe = spawnSync('prlimit', [`--nofile=${want}:${want}`, '--', 'true'], { encoding: 'utf8' });
  if (probe.status === 0) return { openFiles: want, note: undefined };
  return {
    openFiles: undefined,
    note:
      `${what} may need about ${want} open files but the hard limit is ${limit.hard} and cannot be raised here ` +
      `(${(probe.stderr || probe.error?.message || 'prlimit failed').trim()}): expect EMFILE failures at this level. ${RAISE_ADVICE}`,
  };
}

/** Raises this process's own open-files limit to `want` where `prlimit` may; a note when it stays short. */
export function raiseOwnOpenFiles(want: number): string | undefined {
  const limit = openFilesLimit('self');
  if (limit === undefined || want <= limit.soft) return undefined;
  const raised = spawnSync('prlimit', ['--pid', String(process.pid), `--nofile=${want}:${want}`], { encoding: 'utf8' });
  if (raised.status === 0) return undefined;
  return `the load generator may need about ${want} open files (one per stream) but its limit is ${limit.soft} (${(raised.stderr || raised.error?.message || 'prlimit failed').trim()}). ${RAISE_ADVICE}`;
}

/** Runs one level on a fresh server and database; throws only when the set-up itself fails. */
export async function runLevel(setting: LevelSetting, plan: LevelPlan): Promise<LevelReport> {
  const { log } = setting;
  const notes: string[] = [];
  const tag = `${plan.arrival}-${plan.turns.length}-${randomBytes(4).toString('hex')}`;
  const concurrency = peakConcurrency(plan.turns);
  const serverFiles = openFilesFor(SERVER_FILES_PER_STREAM * concurrency + FILES_HEADROOM, 'the server');
  if (serverFiles.note !== undefined) notes.push(serverFiles.note);
  const ownNote = raiseOwnOpenFiles(concurrency + FILES_HEADROOM);
  if (ownNote !== undefined) notes.push(ownNote);

  const backends = await chooseBackends(setting.embedded);
  const dataDir = mkdtempSync(path.join(os.tmpdir(), 'llmchat-bench-long-'));
  let running: RunningServer | undefined;
  try {
    if (backends.kind !== 'postgres+redis') notes.push(`backends ${backends.kind}: not the production setup; ${backends.notes.join('; ')}`);
    running = await startServer({
      root: setting.root,
      backends,
      dataDir,
      workers: setting.workers,
      env: setting.serverEnv,
      openFiles: serverFiles.openFiles,
      memoryLimitBytes: setting.serverMemoryLimit,
    });
    const server = running;
    const token = await login(server.base, BENCH_ADMIN, server.adminPassword);
    notes.push(...(await createAgent(server.base, token, setting.mockUrl)));

    // One quick turn through the whole path: a broken set-up fails here, not as N errors.
    const first = plan.turns[0];
    if (first === undefined) throw new Error(`level ${plan.name} plans no turn`);
    const probe = startScheduledLoad({
      origin: server.base,
      token,
      agentId: BENCH_AGENT_ID,
      tag: `${tag}-probe`,
      turns: [{ atMs: 0, answer: { chunks: first.answer.chunks, firstTokenMs: 0, intervalMs: 0 } }],
      drainMs: 30_000,
    });
    const [check] = await probe.done;
    if (check?.error !== undefined) throw new Error(`a turn through LLMChat failed before the level: ${check.error} ${check.errorDetail ?? ''}`);

    await sleep(SETTLE_MS);
    const pid = server.process.pid;
    const idleRssMiB = sumOverChildren(pid, rssMiB);
    const idleOpenFiles = sumOverChildren(pid, openFiles);
    const serverLimit = pid === undefined ? undefined : openFilesLimit(pid)?.soft;
    const cpuBefore = sumOverChildren(pid, cpuSeconds);
    const benchBefore = process.cpuUsage();
    const startedAt = performance.now();
    const lastStart = plan.turns.reduce((max, t) => Math.max(max, t.atMs), 0);
    log(`  ${plan.name}: ${plan.turns.length} turns (${plan.description}), server pid ${pid ?? '?'} at ${server.base}, idle RSS ${idleRssMiB?.toFixed(0) ?? '-'} MiB`);

    const load = startScheduledLoad({
      origin: server.base,
      token,
      agentId: BENCH_AGENT_ID,
      tag,
      turns: plan.turns,
      drainMs: plan.drainMs,
      ...(setting.signal === undefined ? {} : { signal: setting.signal }),
    });
    const sampler = startResourceSampler({ pid, base: server.base, inFlight: () => load.inFlight(), maxMs: lastStart + plan.drainMs + 60_000 });
    const progress = setInterval(() => log(`    ${((performance.now() - startedAt) / 1000).toFixed(0)} s: ${load.inFlight()} turns in flight`), 10_000);
    progress.unref();
    const records = await load.done.finally(() => clearInterval(progress));
    const wallSeconds = (performance.now() - startedAt) / 1000;
    const cpuAfter = sumOverChildren(pid, cpuSeconds);
    const benchUsage = process.cpuUsage(benchBefore);
    const peaks = await sampler.stop();

    let stored: LevelReport['stored'];
    let storedStreamingLeft: number | undefined;
    if (backends.databaseUrl !== undefined) {
      storedStreamingLeft = await waitForFinalRows(backends.databaseUrl, tag, FINAL_ROWS_TIMEOUT_MS);
      const chunks = new Map(records.map((r) => [r.question, r.chunks]));
      const chunksOf = (question: string): number | undefined => chunks.get(question);
      stored = await countStoredTurns(backends.databaseUrl, tag, chunksOf);
    } else {
      notes.push('no PostgreSQL: what was stored is not counted (the embedded database lives inside the server)');
    }

    const figures = clientFigures(records);
    const peakInFlight = load.peakInFlight();
    const serverCpuSeconds = cpuBefore === undefined || cpuAfter === undefined ? undefined : cpuAfter - cpuBefore;
    const exit = describeExit(await server.process.stop(CHILD_STOP_GRACE_MS));
    running = undefined;
    return {
      name: plan.name,
      arrival: plan.arrival,
      turns: plan.turns.length,
      description: plan.description,
      backends: backends.kind,
      serverEnv: setting.serverEnv,
      serverMemoryLimit: setting.serverMemoryLimit,
      ...figures,
      stored,
      storedStreamingLeft,
      resources: {
        idleRssMiB,
        rssPeakMiB: peaks.rssPeakMiB,
        kibPerStream: kibPerStream(idleRssMiB, peaks, peakInFlight),
        idleOpenFiles,
        openFilesPeak: peaks.openFilesPeak,
        openFilesLimit: serverLimit,
        heapUsedPercentPeak: peaks.heapUsedPercentPeak,
        heapTotalPeakMiB: peaks.heapTotalPeakMiB,
        externalPeakMiB: peaks.externalPeakMiB,
        eventLoopDelayPeakMs: peaks.eventLoopDelayPeakMs,
        runningGenerationsPeak: peaks.runningGenerationsPeak,
        upstreamSlotsUsedPeak: peaks.upstreamSlotsUsedPeak,
        upstreamSlotsWaitingPeak: peaks.upstreamSlotsWaitingPeak,
        healthFailures: peaks.healthFailures,
        peakInFlight,
        serverCpuSeconds,
        serverCpuMsPerTurn: serverCpuSeconds === undefined ? undefined : (serverCpuSeconds * 1000) / plan.turns.length,
        benchCpuSeconds: (benchUsage.user + benchUsage.system) / 1e6,
      },
      timeline: { samples: peaks.samples, health: peaks.health },
      wallSeconds,
      server: { exit, problems: server.process.problems().kinds },
      notes,
    };
  } finally {
    if (running !== undefined) await running.process.stop(CHILD_STOP_GRACE_MS);
    await releaseBackends(backends, (line) => log(`  ${line}`));
    rmSync(dataDir, { recursive: true, force: true });
  }
}
