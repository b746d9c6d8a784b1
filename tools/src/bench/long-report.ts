/**
 * The figures of a long-answer or open-loop level, from what the clients
 * saw, what the database kept and what the server used, and their tables.
 */

import { describeMemoryLimit } from './memory-cgroup.js';
import type { ResourcePeaks } from './resource-sampler.js';
import type { TurnRecord } from './scheduled-load.js';
import type { Distribution } from './stats.js';
import { distribution, formatMs, formatTable } from './stats.js';
import type { StoredCount } from './stored-turns.js';

export type Arrival = 'ramped' | 'burst' | 'open-loop';

export interface LevelReport {
  name: string;
  arrival: Arrival;
  /** Turns sent. */
  turns: number;
  /** What the level asked for, in words (answer shape, ramp, users…). */
  description: string;
  backends: string;
  /** `--server-env` and other settings on top of the bench's server environment. */
  serverEnv: Record<string, string>;
  /** Bytes of the server's memory cgroup (`--server-memory-limit`), when it ran in one. */
  serverMemoryLimit?: number | undefined;
  client: {
    complete: number;
    failed: number;
    /** Failed turns by reason: `HTTP 503 UPSTREAM_BUSY`, `end status error UPSTREAM_TIMEOUT`, `connection: …`. */
    byReason: Record<string, number>;
    /** Answers other than 200, by status and error code: refusals before acknowledgement. */
    httpErrors: Record<string, number>;
    examples: string[];
  };
  /** Undefined without PostgreSQL (the embedded database cannot be read from outside the server). */
  stored: StoredCount | undefined;
  /** Answers still `streaming` when the count was taken. */
  storedStreamingLeft: number | undefined;
  /** Client time to first text chunk minus the mock's own delay to its first chunk, over turns that got one. */
  firstTokenOverheadMs: Distribution;
  /** First-token overhead by the second each turn started in (where in a ramp the cost falls); results file only. */
  overheadByStartSecond: { second: number; turns: number; p50: number; max: number }[];
  /** Over complete turns: request to `end`. */
  endToEndMs: Distribution;
  /** Over complete turns: end-to-end minus the mock's own answer time. */
  endToEndOverheadMs: Distribution;
  resources: {
    idleRssMiB: number | undefined;
    rssPeakMiB: number | undefined;
    /** (peak RSS − idle RSS) / peak turns in flight, KiB. */
    kibPerStream: number | undefined;
    idleOpenFiles: number | undefined;
    openFilesPeak: number | undefined;
    openFilesLimit: number | undefined;
    heapUsedPercentPeak: number | undefined;
    /** V8's heap in all (live objects, garbage not yet collected, the young generation) and memory outside it, at their peaks. */
    heapTotalPeakMiB: number | undefined;
    externalPeakMiB: number | undefined;
    eventLoopDelayPeakMs: number | undefined;
    runningGenerationsPeak: number | undefined;
    /** From `load.upstreamSlots` where the server reports it: calls to upstreams at once, and waiting in its own queue. */
    upstreamSlotsUsedPeak: number | undefined;
    upstreamSlotsWaitingPeak: number | undefined;
    healthFailures: number;
    peakInFlight: number;
    serverCpuSeconds: number | undefined;
    serverCpuMsPerTurn: number | undefined;
    benchCpuSeconds: number;
  };
  /** Every /proc and health sample of the level, for the results file (not printed). */
  timeline: Pick<ResourcePeaks, 'samples' | 'health'>;
  wallSeconds: number;
  server: { exit: string; problems: { kind: string; count: number }[] };
  notes: string[];
}

const EXAMPLES = 5;

/** The reason a failed turn is counted under: its status and error code, or the stream's failure and the code inside it. */
export function failureReason(record: TurnRecord): string | undefined {
  if (record.error === undefined) return undefined;
  if (record.status !== 0 && record.status !== 200) return `HTTP ${record.status}${record.code === undefined ? '' : ` ${record.code}`}`;
  const code = record.error.startsWith('end status') || record.error === 'error event' ? /"code"\s*:\s*"([A-Za-z0-9_.-]{1,64})"/.exec(record.errorDetail ?? '')?.[1] : undefined;
  return code === undefined ? record.error : `${record.error} ${code}`;
}

export interface ClientFigures {
  client: LevelReport['client'];
  firstTokenOverheadMs: Distribution;
  overheadByStartSecond: LevelReport['overheadByStartSecond'];
  endToEndMs: Distribution;
  endToEndOverheadMs: Distribution;
}

/** What the clients saw. */
export function clientFigures(records: readonly TurnRecord[]): ClientFigures {
  const byReason: Record<string, number> = {};
  const httpErrors: Record<string, number> = {};
  const examples: string[] = [];
  const overhead: number[] = [];
  const bySecond = new Map<number, number[]>();
  const endToEnd: number[] = [];
  const endToEndOverhead: number[] = [];
  let complete = 0;
  for (const record of records) {
    if (record.ttftMs !== undefined) {
      const value = record.ttftMs - record.mockFirstTokenMs;
      overhead.push(value);
      const second = Math.floor(record.startMs / 1000);
      const bucket = bySecond.get(second);
      if (bucket === undefined) bySecond.set(second, [value]);
      else bucket.push(value);
    }
    const reason = failureReason(record);
    if (reason === undefined) {
      complete++;
      endToEnd.push(record.totalMs);
      endToEndOverhead.push(record.totalMs - record.mockAnswerMs);
      continue;
    }
    byReason[reason] = (byReason[reason] ?? 0) + 1;
    if (record.status !== 0 && record.status !== 200) httpErrors[reason] = (httpErrors[reason] ?? 0) + 1;
    if (byReason[reason] === 1 && examples.length < EXAMPLES) examples.push(`${reason}: ${record.errorDetail ?? ''}`.slice(0, 300));
  }
  return {
    client: { complete, failed: records.length - complete, byReason, httpErrors, examples },
    firstTokenOverheadMs: distribution(overhead),
    overheadByStartSecond: [...bySecond]
      .sort((a, b) => a[0] - b[0])
      .map(([second, values]) => {
        const d = distribution(values);
        return { second, turns: d.count, p50: d.p50, max: d.max };
      }),
    endToEndMs: distribution(endToEnd),
    endToEndOverheadMs: distribution(endToEndOverhead),
  };
}

/** KiB of resident memory per turn in flight at the peak. */
export function kibPerStream(idleRssMiB: number | undefined, peaks: Pick<ResourcePeaks, 'rssPeakMiB'>, peakInFlight: number): number | undefined {
  if (idleRssMiB === undefined || peaks.rssPeakMiB === undefined || peakInFlight <= 0) return undefined;
  return ((peaks.rssPeakMiB - idleRssMiB) * 1024) / peakInFlight;
}

const figure = (v: number | undefined, digits = 0): string => (v === undefined || !Number.isFinite(v) ? '-' : v.toFixed(digits));
const triple = (d: Distribution): string => `${formatMs(d.p50)} / ${formatMs(d.p95)} / ${formatMs(d.p99)}`;
const seconds = (d: Distribution): string =>
  d.count === 0 ? '-' : `${(d.p50 / 1000).toFixed(1)} / ${(d.p95 / 1000).toFixed(1)} / ${(d.p99 / 1000).toFixed(1)}`;

function storedOther(stored: StoredCount | undefined, turns: number): string {
  if (stored === undefined) return '-';
  const other = Object.entries(stored.byStatus)
    .filter(([status]) => status !== 'complete')
    .reduce((sum, [, n]) => sum + n, 0);
  // Turns never stored (refused before acknowledgement) are "anything else" too, listed apart.
  const missing = turns - stored.questions;
  return missing > 0 ? `${other} (+${missing} not stored)` : String(other);
}

function sumValues(record: Record<string, number>): number {
  return Object.values(record).reduce((a, b) => a + b, 0);
}

/** One row per long-answer level (ramped or burst). */
export function longLevelsTable(reports: readonly LevelReport[]): string {
  const rows: string[][] = [
    ['level', 'arrivals', 'stored complete', 'stored other', 'HTTP errors', 'overhead p50 / p95 / p99 ms', 'RSS idle→peak MiB', 'KiB/stream', 'V8 heap / external peak MiB', 'fds peak', 'srv CPU s', 'ms/turn'],
  ];
  for (const r of reports) {
    rows.push([
      String(r.turns),
      r.arrival === 'burst' ? 'burst' : r.name.replace(/^\d+ /, ''),
      r.stored === undefined ? '-' : String(r.stored.byStatus.complete ?? 0),
      storedOther(r.stored, r.turns),
      String(sumValues(r.client.httpErrors)),
      triple(r.firstTokenOverheadMs),
      `${figure(r.resources.idleRssMiB)}→${figure(r.resources.rssPeakMiB)}`,
      figure(r.resources.kibPerStream),
      `${figure(r.resources.heapTotalPeakMiB)} / ${figure(r.resources.externalPeakMiB)}`,
      figure(r.resources.openFilesPeak),
      figure(r.resources.serverCpuSeconds, 1),
      figure(r.resources.serverCpuMsPerTurn, 2),
    ]);
  }
  return formatTable(rows);
}

/** One row per open-loop level. */
export function openLoopTable(reports: readonly LevelReport[]): string {
  const rows: string[][] = [
    ['level', 'turns', 'stored complete', 'errors', 'overhead p50 / p95 / p99 ms', 'end-to-end p50 / p95 / p99 s', 'e2e − answer p50 / p95 / p99 ms', 'peak streams', 'RSS peak MiB', 'srv ms/turn'],
  ];
  for (const r of reports) {
    const errorShare = r.turns === 0 ? Number.NaN : (r.client.failed / r.turns) * 100;
    rows.push([
      r.name,
      String(r.turns),
      r.stored === undefined ? '-' : String(r.stored.byStatus.complete ?? 0),
      `${r.client.failed} (${figure(errorShare, 2)}%)`,
      triple(r.firstTokenOverheadMs),
      seconds(r.endToEndMs),
      triple(r.endToEndOverheadMs),
      String(r.resources.peakInFlight),
      figure(r.resources.rssPeakMiB),
      figure(r.resources.serverCpuMsPerTurn, 2),
    ]);
  }
  return formatTable(rows);
}

/** The lines under a level's row: what failed and how, as the client and the database saw it. */
export function levelDetails(r: LevelReport): string[] {
  const env = Object.keys(r.serverEnv).length > 0 ? `; server env ${Object.entries(r.serverEnv).map(([k, v]) => `${k}=${v}`).join(' ')}` : '';
  const limit = r.serverMemoryLimit === undefined ? '' : `; server in a ${describeMemoryLimit(r.serverMemoryLimit)}`;
  const lines: string[] = [`${r.name}: ${r.description}; ${r.backends}${env}${limit}`];
  if (r.stored !== undefined) {
    const statuses = Object.entries(r.stored.byStatus).map(([status, n]) => `${status} ${n}`).join(', ');
    lines.push(
      `  stored: ${statuses || 'nothing'} (${r.stored.completeWithFullText} complete with the full text` +
        `${r.stored.duplicates > 0 ? `, ${r.stored.duplicates} stored twice` : ''}${r.storedStreamingLeft ? `, ${r.storedStreamingLeft} still streaming at the count` : ''})`,
    );
    for (const example of r.stored.wrongTextExamples) lines.push(`    e.g. ${example}`);
  }
  lines.push(`  client: ${r.client.complete} complete, ${r.client.failed} failed; ${r.firstTokenOverheadMs.count} of ${r.turns} turns saw a first token (the overhead figures are over those)`);
  for (const [reason, n] of Object.entries(r.client.byReason).sort((a, b) => b[1] - a[1])) lines.push(`    ${String(n).padStart(6)} × ${reason}`);
  for (const example of r.client.examples) lines.push(`    e.g. ${example}`);
  const res = r.resources;
  lines.push(
    `  server: peak ${res.peakInFlight} turns in flight, ${figure(res.runningGenerationsPeak)} generations running (health), ` +
      `event-loop delay peak ${figure(res.eventLoopDelayPeakMs)} ms, fds ${figure(res.idleOpenFiles)}→${figure(res.openFilesPeak)} (limit ${figure(res.openFilesLimit)}), ` +
      `load generator CPU ${res.benchCpuSeconds.toFixed(1)} s${res.healthFailures > 0 ? `, ${res.healthFailures} health polls unanswered` : ''}; level took ${r.wallSeconds.toFixed(0)} s`,
  );
  if (res.upstreamSlotsUsedPeak !== undefined) {
    lines.push(`  upstream slots (health): peak ${figure(res.upstreamSlotsUsedPeak)} in use, peak ${figure(res.upstreamSlotsWaitingPeak)} waiting in the server's own queue`);
  }
  if (r.server.exit !== 'code 0') lines.push(`  server stopped with ${r.server.exit} (expected code 0 after SIGTERM)`);
  for (const { kind, count } of r.server.problems.slice(0, 8)) lines.push(`  server log: ${String(count).padStart(6)} × ${kind}`);
  for (const note of r.notes) lines.push(`  note: ${note}`);
  return lines;
}
