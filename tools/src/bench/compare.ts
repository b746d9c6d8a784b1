/**
 * LLMChat against the floor (a bare streaming proxy on the same mock) and
 * against the mock called directly, per level: the targets checked
 * on the median of one or more rounds. The floor is what any Node proxy gets
 * on this machine, so the throughput and CPU targets are relative to it:
 *
 *   100 streams:  throughput >= 95% of the floor's; TTFT p99 at most 25 ms
 *                 over direct; server CPU per turn <= 1.3x the floor's
 *   1000 streams: throughput >= 70% of the floor's; server CPU per turn
 *                 <= 1.5x the floor's; zero errors; server RSS after the
 *                 level <= 300 MiB
 *
 * Without the floor (`--no-floor`), or without a CPU or RSS figure, a target
 * is reported as not checked rather than judged on an invented value. On a
 * shared two-core machine one round can land 15% above or below the next;
 * with `--repeat` the verdict rests on the middle round, and every round is
 * shown.
 */

import { formatMs, formatPercent } from './stats.js';

/** What a comparison needs of one target's run. */
export interface RunFigures {
  turnsPerS: number;
  ttftP99Ms: number;
  ok: number;
  errors: number;
  turns: number;
  /** The serving process's CPU per turn, ms (serverCpuMsPerTurn); undefined without a figure. */
  serverCpuMsPerTurn: number | undefined;
  /** The serving process's RSS after the run, MiB; undefined without a figure. */
  serverRssMiB: number | undefined;
}

/** One target against the mock called directly. */
export interface DirectComparison {
  /** The target's turns/s divided by direct turns/s. */
  throughputRatio: number;
  /** The target's TTFT p99 minus direct TTFT p99, ms. */
  ttftP99OverheadMs: number;
}

/** LLMChat against the floor. */
export interface FloorComparison {
  /** LLMChat's turns/s divided by the floor's. */
  throughputRatio: number;
  /** LLMChat's server CPU per turn divided by the floor proxy's; NaN when either has no figure. */
  cpuPerTurnRatio: number;
}

/** LLMChat in one round: against direct, and against the floor when the round ran it. */
export interface RoundComparison extends DirectComparison {
  ofFloor: FloorComparison | undefined;
}

export interface TargetCheck {
  name: string;
  /** 'not checked' when a figure the target needs is missing (no floor run, no CPU or RSS figure). */
  verdict: 'pass' | 'fail' | 'not checked';
  /** The value the verdict rests on, or why there is none. */
  actual: string;
}

/** LLMChat against direct, medians of the rounds. */
export interface LevelComparison extends DirectComparison {
  level: number;
  /** Every round, in the order run; the figures of the level are their medians. */
  rounds: RoundComparison[];
  /** The floor against direct, median of the rounds that ran it; no targets. */
  floor: DirectComparison | undefined;
  /** LLMChat against the floor, medians of the rounds that ran it; undefined when none did (`--no-floor`). */
  ofFloor: FloorComparison | undefined;
  /** LLMChat's server CPU per turn, ms, median of the rounds; NaN without a figure. */
  serverCpuMsPerTurn: number;
  /** The floor proxy's CPU per turn, ms, median of the rounds that ran it; NaN without a figure. */
  floorCpuMsPerTurn: number;
  /** LLMChat's server RSS after its runs, MiB, median of the rounds; NaN without a figure. */
  serverRssMiB: number;
  checks: TargetCheck[];
  /** Reasons to doubt the comparison. */
  notes: string[];
}

/** The part of a run serverCpuMsPerTurn reads (a RunSummary, live or saved). */
export interface CpuPerTurnInput {
  target: string;
  turnsPerS: number | null;
  cpuPercent: { server?: number | null | undefined };
}

/**
 * The serving process's (LLMChat's server, or the floor proxy's) CPU per turn
 * in ms: its share of one core over warm-up + window divided by the window's
 * rate. Undefined for direct (no process serves it) and without a figure.
 */
export function serverCpuMsPerTurn(run: CpuPerTurnInput): number | undefined {
  const share = run.cpuPercent.server;
  if (run.target === 'direct' || share === undefined || share === null || run.turnsPerS === null || !(run.turnsPerS > 0)) return undefined;
  return (share / 100 / run.turnsPerS) * 1000;
}

/** The middle value (the mean of the two middle ones for an even count); NaN for none. */
export function median(values: readonly number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  if (sorted.length === 0) return Number.NaN;
  const mid = Math.floor(sorted.length / 2);
  return sorted.length % 2 === 1 ? (sorted[mid] as number) : ((sorted[mid - 1] as number) + (sorted[mid] as number)) / 2;
}

/** The median of the values that are figures (finite); NaN when none is. */
export function medianOfFigures(values: readonly (number | null | undefined)[]): number {
  return median(values.filter((v): v is number => typeof v === 'number' && Number.isFinite(v)));
}

const againstDirect = (direct: RunFigures, other: RunFigures): DirectComparison => ({
  throughputRatio: other.turnsPerS / direct.turnsPerS,
  ttftP99OverheadMs: other.ttftP99Ms - direct.ttftP99Ms,
});

const againstFloor = (floor: RunFigures, llmchat: RunFigures): FloorComparison => ({
  throughputRatio: floor.turnsPerS > 0 ? llmchat.turnsPerS / floor.turnsPerS : Number.NaN,
  cpuPerTurnRatio:
    llmchat.serverCpuMsPerTurn === undefined || floor.serverCpuMsPerTurn === undefined || !(floor.serverCpuMsPerTurn > 0)
      ? Number.NaN
      : llmchat.serverCpuMsPerTurn / floor.serverCpuMsPerTurn,
});

const medianAgainstDirect = (rounds: readonly DirectComparison[]): DirectComparison => ({
  throughputRatio: median(rounds.map((r) => r.throughputRatio)),
  ttftP99OverheadMs: median(rounds.map((r) => r.ttftP99OverheadMs)),
});

/** A check of `value` against a limit; not checked (with `missing` as the reason) when value is not a figure. */
function limitCheck(name: string, value: number, within: (v: number) => boolean, format: (v: number) => string, missing: string): TargetCheck {
  if (!Number.isFinite(value)) return { name, verdict: 'not checked', actual: missing };
  return { name, verdict: within(value) ? 'pass' : 'fail', actual: format(value) };
}

/** A ratio such as 1.35x; '-' when there is no figure. */
export function formatTimes(ratio: number): string {
  return Number.isFinite(ratio) ? `${ratio.toFixed(2)}x` : '-';
}

/** Milliseconds with their sign: +12.0 ms, -3.00 ms. */
export function formatSignedMs(ms: number): string {
  return `${ms >= 0 ? '+' : ''}${formatMs(ms)} ms`;
}

const NO_FLOOR = 'the floor did not run: --no-floor';

/** Compares the rounds of one level and checks the targets for it (100 and 1000 have targets). */
export function compareLevel(
  level: number,
  rounds: readonly { direct: RunFigures; llmchat: RunFigures; floor?: RunFigures | undefined }[],
): LevelComparison {
  const each: RoundComparison[] = rounds.map(({ direct, llmchat, floor }) => ({
    ...againstDirect(direct, llmchat),
    ofFloor: floor === undefined ? undefined : againstFloor(floor, llmchat),
  }));
  const { throughputRatio, ttftP99OverheadMs } = medianAgainstDirect(each);
  const withFloor = rounds.flatMap(({ direct, llmchat, floor }) => (floor === undefined ? [] : [{ direct, llmchat, floor }]));
  const floor = withFloor.length === 0 ? undefined : medianAgainstDirect(withFloor.map((r) => againstDirect(r.direct, r.floor)));
  const floorRatios = each.flatMap((r) => (r.ofFloor === undefined ? [] : [r.ofFloor]));
  const ofFloor: FloorComparison | undefined =
    floorRatios.length === 0
      ? undefined
      : {
          throughputRatio: medianOfFigures(floorRatios.map((r) => r.throughputRatio)),
          cpuPerTurnRatio: medianOfFigures(floorRatios.map((r) => r.cpuPerTurnRatio)),
        };
  const serverCpu = medianOfFigures(rounds.map((r) => r.llmchat.serverCpuMsPerTurn));
  const floorCpu = medianOfFigures(withFloor.map((r) => r.floor.serverCpuMsPerTurn));
  const serverRss = medianOfFigures(rounds.map((r) => r.llmchat.serverRssMiB));
  const errors = rounds.reduce((sum, r) => sum + r.llmchat.errors, 0);
  const turns = rounds.reduce((sum, r) => sum + r.llmchat.turns, 0);
  const ok = rounds.reduce((sum, r) => sum + r.llmchat.ok, 0);

  const ofFloorThroughput = (minimum: number): TargetCheck =>
    limitCheck(
      `throughput >= ${Math.round(minimum * 100)}% of the floor`,
      ofFloor?.throughputRatio ?? Number.NaN,
      (v) => v >= minimum,
      formatPercent,
      ofFloor === undefined ? NO_FLOOR : 'no floor turn completed in the window',
    );
  const cpuAgainstFloor = (maximum: number): TargetCheck =>
    limitCheck(
      `server CPU per turn <= ${maximum}x the floor's`,
      ofFloor?.cpuPerTurnRatio ?? Number.NaN,
      (v) => v <= maximum,
      (v) => `${formatTimes(v)}: ${formatMs(serverCpu)} against ${formatMs(floorCpu)} ms`,
      ofFloor === undefined ? NO_FLOOR : 'no CPU figure for the server or the floor proxy',
    );
  const checks: TargetCheck[] = [];
  if (level === 100) {
    checks.push(ofFloorThroughput(0.95));
    checks.push(limitCheck('TTFT p99 overhead <= 25 ms', ttftP99OverheadMs, (v) => v <= 25, formatSignedMs, 'no TTFT figure'));
    checks.push(cpuAgainstFloor(1.3));
  } else if (level === 1000) {
    checks.push(ofFloorThroughput(0.7));
    checks.push(cpuAgainstFloor(1.5));
    checks.push({ name: 'zero errors', verdict: errors === 0 && ok > 0 ? 'pass' : 'fail', actual: `${errors} errors in ${turns} turns` });
    checks.push(limitCheck('server RSS <= 300 MiB', serverRss, (v) => v <= 300, (v) => `${v.toFixed(0)} MiB`, 'no RSS figure for the server'));
  }

  const notes: string[] = [];
  const directErrors = rounds.reduce((sum, r) => sum + r.direct.errors, 0);
  if (directErrors > 0) notes.push(`the direct runs had ${directErrors} errors: the baseline itself is suspect`);
  const floorErrors = withFloor.reduce((sum, r) => sum + r.floor.errors, 0);
  if (floorErrors > 0) notes.push(`the floor runs had ${floorErrors} errors: the targets against it are suspect`);
  if (ok === 0) notes.push('no LLMChat turn succeeded in the window');
  return {
    level,
    throughputRatio,
    ttftP99OverheadMs,
    rounds: each,
    floor,
    ofFloor,
    serverCpuMsPerTurn: serverCpu,
    floorCpuMsPerTurn: floorCpu,
    serverRssMiB: serverRss,
    checks,
    notes,
  };
}

const VERDICT_LABEL: Record<TargetCheck['verdict'], string> = { pass: 'PASS', fail: 'FAIL', 'not checked': 'not checked' };

/** The report of one level: LLMChat's figures against the floor and direct, every round, then each check. */
export function describeLevel(c: LevelComparison): string[] {
  const ofMedian = c.rounds.length > 1 ? ` (median of ${c.rounds.length} rounds)` : '';
  const throughput =
    c.ofFloor === undefined
      ? `throughput ${formatPercent(c.throughputRatio)} of direct (no floor run)`
      : `throughput ${formatPercent(c.ofFloor.throughputRatio)} of the floor, ${formatPercent(c.throughputRatio)} of direct`;
  const cpu =
    c.ofFloor === undefined
      ? `server CPU ${formatMs(c.serverCpuMsPerTurn)} ms/turn`
      : `server CPU ${formatMs(c.serverCpuMsPerTurn)} ms/turn, ${formatTimes(c.ofFloor.cpuPerTurnRatio)} the floor's ${formatMs(c.floorCpuMsPerTurn)} ms`;
  const rss = Number.isFinite(c.serverRssMiB) ? `; server RSS ${c.serverRssMiB.toFixed(0)} MiB` : '';
  const lines = [`  level ${c.level}${ofMedian}: ${throughput}; TTFT p99 ${formatSignedMs(c.ttftP99OverheadMs)} over direct; ${cpu}${rss}`];
  if (c.rounds.length > 1) {
    const round = (r: RoundComparison): string =>
      (r.ofFloor === undefined ? '' : `${formatPercent(r.ofFloor.throughputRatio)} of floor, `) +
      `${formatPercent(r.throughputRatio)} of direct, ${formatSignedMs(r.ttftP99OverheadMs)}` +
      (r.ofFloor === undefined ? '' : `, CPU ${formatTimes(r.ofFloor.cpuPerTurnRatio)}`);
    lines.push(`    rounds: ${c.rounds.map(round).join('; ')}`);
  }
  if (c.floor !== undefined) {
    lines.push(
      `    floor (bare proxy: no auth, storage or event buffer): ${formatPercent(c.floor.throughputRatio)} of direct, ` +
        `TTFT p99 ${formatSignedMs(c.floor.ttftP99OverheadMs)} over direct`,
    );
  }
  for (const check of c.checks) lines.push(`    ${VERDICT_LABEL[check.verdict]}  ${check.name} (${check.actual})`);
  if (c.checks.length === 0) lines.push('    (no targets for this level)');
  for (const note of c.notes) lines.push(`    note: ${note}`);
  return lines;
}
