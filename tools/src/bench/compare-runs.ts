/**
 * `npm run bench -- --compare FILE`: two short-level results side by side,
 * a saved one (bench-results/bench-*.json) and this run's or a second saved
 * one (`--against`). For each level and target present in both it shows each
 * key figure before and after and the change, then the level comparisons'
 * ratios. A report, never a verdict: differences do not change the exit code.
 */

import { readFileSync } from 'node:fs';
import type { CpuPerTurnInput } from './compare.js';
import { formatSignedMs, formatTimes, medianOfFigures, serverCpuMsPerTurn } from './compare.js';
import { formatMs, formatPercent, formatRate, formatTable } from './stats.js';

/** What the comparison reads of one saved run (one level, target and round); null where the bench had no figure. */
export interface SavedRun extends CpuPerTurnInput {
  level: number;
  target: string;
  turnsPerS: number | null;
  ttftMs: { p50: number | null; p99: number | null };
  totalMs: { p99: number | null };
  errors: number;
  turns: number;
  serverRssMiB: number | null;
}

/** What the comparison reads of one saved level comparison (compare.ts's LevelComparison); older files lack `ofFloor`. */
export interface SavedLevelComparison {
  level: number;
  throughputRatio: number | null;
  ttftP99OverheadMs: number | null;
  floor: { throughputRatio: number | null } | undefined;
  ofFloor: { throughputRatio: number | null; cpuPerTurnRatio: number | null } | undefined;
}

/** A short-level bench result as read from its file. */
export interface BenchResult {
  /** Where it came from: a file name, or "this run". */
  source: string;
  startedAt: string | undefined;
  broken: string | undefined;
  backends: string | undefined;
  machine: string | undefined;
  /** The options that change what the figures mean (answer shape, window, workers), in words. */
  setup: string | undefined;
  runs: SavedRun[];
  comparisons: SavedLevelComparison[];
}

export class BenchResultError extends Error {
  override name = 'BenchResultError';
}

// ---------------------------------------------------------------- reading

type Json = Record<string, unknown>;

const isObject = (value: unknown): value is Json => typeof value === 'object' && value !== null && !Array.isArray(value);
const shown = (value: unknown): string => (value === undefined ? 'nothing' : JSON.stringify(value));

function objectAt(value: unknown, where: string, source: string): Json {
  if (!isObject(value)) throw new BenchResultError(`${source}: ${where} must be an object, got ${shown(value)}`);
  return value;
}

/** A number, or null (the bench writes NaN as null); absent counts as null when `optional`. */
function figureAt(value: unknown, where: string, source: string, optional = false): number | null {
  if (typeof value === 'number' || value === null || (optional && value === undefined)) return value ?? null;
  throw new BenchResultError(`${source}: ${where} must be a number or null, got ${shown(value)}`);
}

function countAt(value: unknown, where: string, source: string): number {
  if (typeof value === 'number' && Number.isInteger(value) && value >= 0) return value;
  throw new BenchResultError(`${source}: ${where} must be a non-negative integer, got ${shown(value)}`);
}

function textAt(value: unknown): string | undefined {
  return typeof value === 'string' ? value : undefined;
}

function readRun(value: unknown, where: string, source: string): SavedRun {
  const run = objectAt(value, where, source);
  const target = run.target;
  if (typeof target !== 'string' || target === '') throw new BenchResultError(`${source}: ${where}.target must be a target name, got ${shown(target)}`);
  const ttft = objectAt(run.ttftMs, `${where}.ttftMs`, source);
  const total = objectAt(run.totalMs, `${where}.totalMs`, source);
  const cpu = objectAt(run.cpuPercent, `${where}.cpuPercent`, source);
  return {
    level: countAt(run.level, `${where}.level`, source),
    target,
    turnsPerS: figureAt(run.turnsPerS, `${where}.turnsPerS`, source),
    ttftMs: { p50: figureAt(ttft.p50, `${where}.ttftMs.p50`, source), p99: figureAt(ttft.p99, `${where}.ttftMs.p99`, source) },
    totalMs: { p99: figureAt(total.p99, `${where}.totalMs.p99`, source) },
    errors: countAt(run.errors, `${where}.errors`, source),
    turns: countAt(run.turns, `${where}.turns`, source),
    cpuPercent: { server: figureAt(cpu.server, `${where}.cpuPercent.server`, source, true) },
    serverRssMiB: figureAt(run.serverRssMiB, `${where}.serverRssMiB`, source, true),
  };
}

function readComparison(value: unknown, where: string, source: string): SavedLevelComparison {
  const c = objectAt(value, where, source);
  const floor = c.floor === undefined || c.floor === null ? undefined : objectAt(c.floor, `${where}.floor`, source);
  const ofFloor = c.ofFloor === undefined || c.ofFloor === null ? undefined : objectAt(c.ofFloor, `${where}.ofFloor`, source);
  return {
    level: countAt(c.level, `${where}.level`, source),
    throughputRatio: figureAt(c.throughputRatio, `${where}.throughputRatio`, source),
    ttftP99OverheadMs: figureAt(c.ttftP99OverheadMs, `${where}.ttftP99OverheadMs`, source),
    floor: floor === undefined ? undefined : { throughputRatio: figureAt(floor.throughputRatio, `${where}.floor.throughputRatio`, source) },
    ofFloor:
      ofFloor === undefined
        ? undefined
        : {
            throughputRatio: figureAt(ofFloor.throughputRatio, `${where}.ofFloor.throughputRatio`, source),
            cpuPerTurnRatio: figureAt(ofFloor.cpuPerTurnRatio, `${where}.ofFloor.cpuPerTurnRatio`, source),
          },
  };
}

/** Cores, CPU and Node version, as far as the file says; these are context, not checked. */
function describeMachine(machine: Json): string | undefined {
  const parts = [
    typeof machine.cores === 'number' ? `${machine.cores} cores` : undefined,
    textAt(machine.cpuModel),
    textAt(machine.node) === undefined ? undefined : `node ${textAt(machine.node)}`,
  ].filter((p) => p !== undefined);
  return parts.length === 0 ? undefined : parts.join(', ');
}

function describeSetup(options: Json): string | undefined {
  const figure = (name: string, unit: string): string | undefined => (typeof options[name] === 'number' ? `${name} ${String(options[name])}${unit}` : undefined);
  const env = isObject(options.serverEnv) ? Object.entries(options.serverEnv).map(([k, v]) => `${k}=${String(v)}`) : [];
  const parts = [figure('workers', ''), figure('durationS', ' s'), figure('chunks', ''), figure('intervalMs', ' ms'), env.length > 0 ? `server env ${env.join(' ')}` : undefined].filter(
    (p) => p !== undefined,
  );
  return parts.length === 0 ? undefined : parts.join(', ');
}

/** Checks the shape of a parsed results file and keeps what the comparison reads; throws BenchResultError saying what is wrong. */
export function parseBenchResult(json: unknown, source: string): BenchResult {
  if (!isObject(json)) throw new BenchResultError(`${source} is not a result of npm run bench: expected a JSON object, got ${shown(json)}`);
  if (json.runs === undefined && Array.isArray(json.reports)) {
    throw new BenchResultError(`${source} is a result of npm run bench -- --long or --open-loop; --compare reads the short levels' results (bench-results/bench-*.json)`);
  }
  if (!Array.isArray(json.runs)) throw new BenchResultError(`${source} is not a result of npm run bench: it has no "runs" list`);
  if (!Array.isArray(json.comparisons)) throw new BenchResultError(`${source} is not a result of npm run bench: it has no "comparisons" list`);
  return {
    source,
    startedAt: textAt(json.startedAt),
    broken: textAt(json.broken),
    backends: isObject(json.backends) ? textAt(json.backends.kind) : undefined,
    machine: isObject(json.machine) ? describeMachine(json.machine) : undefined,
    setup: isObject(json.options) ? describeSetup(json.options) : undefined,
    runs: json.runs.map((run, i) => readRun(run, `runs[${i}]`, source)),
    comparisons: json.comparisons.map((c, i) => readComparison(c, `comparisons[${i}]`, source)),
  };
}

/** Reads and checks a results file; throws BenchResultError naming the file when it cannot be read or is not a bench result. */
export function readBenchResult(file: string): BenchResult {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (error) {
    throw new BenchResultError(`cannot read ${file}: ${error instanceof Error ? error.message : String(error)}`);
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (error) {
    throw new BenchResultError(`${file} is not a result of npm run bench: not JSON (${error instanceof Error ? error.message : String(error)})`);
  }
  return parseBenchResult(json, file);
}

// ---------------------------------------------------------------- comparing

/** How a figure is shown, and how its change is: relative, in its unit, or in percentage points. */
export type FigureKind = 'rate' | 'latency' | 'cpu' | 'memory' | 'count' | 'share' | 'overhead' | 'times';

export interface FigureChange {
  figure: string;
  kind: FigureKind;
  before: number | null;
  after: number | null;
}

/** One level and target present in both results: the median of its rounds on each side. */
export interface TargetChange {
  level: number;
  target: string;
  rounds: { before: number; after: number };
  figures: FigureChange[];
}

export interface ResultsComparison {
  before: BenchResult;
  after: BenchResult;
  targets: TargetChange[];
  /** The level comparisons' ratios, for the levels present in both. */
  levels: { level: number; figures: FigureChange[] }[];
  /** What is only on one side, and what makes the two hard to compare. */
  notes: string[];
}

const key = (level: number, target: string): string => `${level} ${target}`;

function groupRuns(runs: readonly SavedRun[]): Map<string, SavedRun[]> {
  const groups = new Map<string, SavedRun[]>();
  for (const run of runs) {
    const k = key(run.level, run.target);
    groups.set(k, [...(groups.get(k) ?? []), run]);
  }
  return groups;
}

const nullIfNaN = (value: number): number | null => (Number.isFinite(value) ? value : null);

/** One side's value of a figure. */
interface Figure {
  figure: string;
  kind: FigureKind;
  value: number | null;
}

/** The key figures of one level and target: medians over its rounds, errors summed. */
function targetFigures(rounds: readonly SavedRun[]): Figure[] {
  const m = (pick: (r: SavedRun) => number | null | undefined): number | null => nullIfNaN(medianOfFigures(rounds.map(pick)));
  const figures: Figure[] = [
    { figure: 'turns/s', kind: 'rate', value: m((r) => r.turnsPerS) },
    { figure: 'TTFT p50 (ms)', kind: 'latency', value: m((r) => r.ttftMs.p50) },
    { figure: 'TTFT p99 (ms)', kind: 'latency', value: m((r) => r.ttftMs.p99) },
    { figure: 'total p99 (ms)', kind: 'latency', value: m((r) => r.totalMs.p99) },
  ];
  // Direct has no serving process: the RSS on its rows is the idle server's.
  if (rounds[0]?.target !== 'direct') {
    figures.push({ figure: 'server CPU per turn (ms)', kind: 'cpu', value: m((r) => serverCpuMsPerTurn(r)) });
    figures.push({ figure: 'server RSS (MiB)', kind: 'memory', value: m((r) => r.serverRssMiB) });
  }
  figures.push({ figure: 'errors', kind: 'count', value: rounds.reduce((sum, r) => sum + r.errors, 0) });
  return figures;
}

function levelFigures(c: SavedLevelComparison): Figure[] {
  return [
    { figure: 'LLMChat throughput of the floor', kind: 'share', value: c.ofFloor?.throughputRatio ?? null },
    { figure: 'LLMChat throughput of direct', kind: 'share', value: c.throughputRatio },
    { figure: 'LLMChat TTFT p99 over direct (ms)', kind: 'overhead', value: c.ttftP99OverheadMs },
    { figure: "LLMChat CPU per turn, times the floor's", kind: 'times', value: c.ofFloor?.cpuPerTurnRatio ?? null },
    { figure: 'floor throughput of direct', kind: 'share', value: c.floor?.throughputRatio ?? null },
  ];
}

/** Pairs two lists of figures by name, leaving out those with no figure on either side. */
function pair(before: readonly Figure[], after: readonly Figure[]): FigureChange[] {
  return after.flatMap(({ figure, kind, value }) => {
    const old = before.find((b) => b.figure === figure)?.value ?? null;
    return old === null && value === null ? [] : [{ figure, kind, before: old, after: value }];
  });
}

/** What `runs` has and `other` lacks: whole levels, or single targets of a level both have. */
function onlyOneSide(side: string, runs: readonly SavedRun[], other: readonly SavedRun[]): string[] {
  const missing = new Map<number, string[]>();
  for (const run of runs) {
    if (other.some((o) => o.level === run.level && o.target === run.target)) continue;
    const targets = missing.get(run.level) ?? [];
    if (!targets.includes(run.target)) missing.set(run.level, [...targets, run.target]);
  }
  return [...missing].map(([level, targets]) =>
    other.some((o) => o.level === level) ? `level ${level} ${targets.join(', ')}: only ${side}` : `level ${level}: only ${side}`,
  );
}

/** Lines the two results up: every level and target present in both, in the order of `after`. */
export function compareResults(before: BenchResult, after: BenchResult): ResultsComparison {
  const notes: string[] = [];
  for (const side of [before, after]) {
    if (side.broken !== undefined) notes.push(`${side.source}: the run was broken (${side.broken}); its figures may be partial`);
  }
  for (const [what, b, a] of [
    ['backends', before.backends, after.backends],
    ['machines', before.machine, after.machine],
    ['setups', before.setup, after.setup],
  ] as const) {
    if (b !== undefined && a !== undefined && b !== a) notes.push(`the ${what} differ: before ${b}; after ${a}`);
  }

  const beforeRuns = groupRuns(before.runs);
  const afterRuns = groupRuns(after.runs);
  const targets: TargetChange[] = [];
  for (const [k, afterRounds] of afterRuns) {
    const beforeRounds = beforeRuns.get(k);
    if (beforeRounds === undefined) continue;
    const first = afterRounds[0] as SavedRun;
    targets.push({
      level: first.level,
      target: first.target,
      rounds: { before: beforeRounds.length, after: afterRounds.length },
      figures: pair(targetFigures(beforeRounds), targetFigures(afterRounds)),
    });
  }
  notes.push(...onlyOneSide('before', before.runs, after.runs), ...onlyOneSide('after', after.runs, before.runs));
  for (const t of targets) {
    if (t.rounds.before !== t.rounds.after) notes.push(`level ${t.level} ${t.target}: medians of ${t.rounds.before} round(s) before, ${t.rounds.after} after`);
  }

  const levels: ResultsComparison['levels'] = [];
  for (const c of after.comparisons) {
    const old = before.comparisons.find((b) => b.level === c.level);
    if (old === undefined) continue;
    levels.push({ level: c.level, figures: pair(levelFigures(old), levelFigures(c)) });
    if ((old.ofFloor === undefined) !== (c.ofFloor === undefined)) {
      const side = old.ofFloor === undefined ? 'before' : 'after';
      notes.push(`level ${c.level}: no ratios to the floor ${side} (the floor did not run, or the file predates those ratios)`);
    }
  }
  return { before, after, targets, levels, notes };
}

// ---------------------------------------------------------------- report

function formatValue(kind: FigureKind, value: number | null): string {
  if (value === null) return '-';
  switch (kind) {
    case 'rate':
      return formatRate(value);
    case 'latency':
    case 'overhead':
      return formatMs(value);
    case 'cpu':
      return value.toFixed(2);
    case 'memory':
      return value.toFixed(0);
    case 'count':
      return String(value);
    case 'share':
      return formatPercent(value);
    case 'times':
      return formatTimes(value);
  }
}

function relative(before: number, after: number): string {
  if (before === 0) return after === 0 ? '0.0%' : '-';
  const change = (after - before) / Math.abs(before);
  return `${change >= 0 ? '+' : ''}${(change * 100).toFixed(1)}%`;
}

/** The change from before to after: relative for rates and costs, in the figure's unit or in percentage points otherwise. */
export function formatChange(change: Pick<FigureChange, 'kind' | 'before' | 'after'>): string {
  const { kind, before, after } = change;
  if (before === null || after === null) return '-';
  const signed = (v: number, digits: number): string => `${v >= 0 ? '+' : ''}${v.toFixed(digits)}`;
  switch (kind) {
    case 'rate':
    case 'cpu':
      return relative(before, after);
    case 'latency':
      return `${formatSignedMs(after - before)} (${relative(before, after)})`;
    case 'memory':
      return `${signed(after - before, 0)} MiB (${relative(before, after)})`;
    case 'count':
      return after === before ? '0' : signed(after - before, 0);
    case 'share':
      return `${signed((after - before) * 100, 1)} pts`;
    case 'overhead':
      return formatSignedMs(after - before);
    case 'times':
      return `${signed(after - before, 2)}x`;
  }
}

function describeSide(label: string, r: BenchResult): string {
  const details = [r.startedAt === undefined ? undefined : `started ${r.startedAt}`, r.backends, r.setup].filter((d) => d !== undefined);
  return `  ${label}: ${r.source}${details.length > 0 ? ` (${details.join('; ')})` : ''}`;
}

/** The comparison as text: both sources, a table of each target's figures, one of the level ratios, then the notes. */
export function formatResultsComparison(c: ResultsComparison): string {
  const lines = ['Comparison of two bench results (a report: differences do not change the exit code)', describeSide('before', c.before), describeSide('after', c.after)];
  if (c.targets.length === 0) {
    lines.push('', 'No level and target is in both results.');
  } else {
    const levelWidth = Math.max(...c.targets.map((t) => String(t.level).length));
    const targetWidth = Math.max(...c.targets.map((t) => t.target.length));
    const rows: string[][] = [['level, target, figure', 'before', 'after', 'change']];
    for (const t of c.targets) {
      const label = `${String(t.level).padEnd(levelWidth)}  ${t.target.padEnd(targetWidth)}  `;
      for (const f of t.figures) rows.push([`${label}${f.figure}`, formatValue(f.kind, f.before), formatValue(f.kind, f.after), formatChange(f)]);
    }
    lines.push('', 'Each level and target (medians of the rounds; errors summed over them)', '', formatTable(rows));
  }
  if (c.levels.length > 0) {
    const levelWidth = Math.max(...c.levels.map((l) => String(l.level).length));
    const rows: string[][] = [['level, ratio', 'before', 'after', 'change']];
    for (const l of c.levels) {
      for (const f of l.figures) rows.push([`${String(l.level).padEnd(levelWidth)}  ${f.figure}`, formatValue(f.kind, f.before), formatValue(f.kind, f.after), formatChange(f)]);
    }
    lines.push('', 'Level comparisons (medians of the rounds, as the targets are checked)', '', formatTable(rows));
  }
  if (c.notes.length > 0) lines.push('', ...c.notes.map((n) => `note: ${n}`));
  return lines.join('\n');
}
