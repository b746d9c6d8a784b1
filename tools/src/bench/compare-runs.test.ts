import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import type { FigureChange, ResultsComparison } from './compare-runs.js';
import { BenchResultError, compareResults, formatChange, formatResultsComparison, parseBenchResult, readBenchResult } from './compare-runs.js';

/** One saved run as bench.ts writes it (NaN as null, undefined left out). */
const savedRun = (level: number, target: string, turnsPerS: number, extra: { ttftP99?: number; cpu?: number; rss?: number; errors?: number } = {}) => ({
  level,
  target,
  windowS: 10,
  turns: 1000,
  ok: 1000 - (extra.errors ?? 0),
  errors: extra.errors ?? 0,
  turnsPerS,
  ttftMs: { count: 1000, min: 1, mean: 5, p50: 4, p95: 20, p99: extra.ttftP99 ?? 30, max: 40 },
  totalMs: { count: 1000, min: 90, mean: 100, p50: 99, p95: 110, p99: 120, max: 130 },
  errorReasons: {},
  errorExamples: [],
  cpuPercent: { bench: 40, ...(extra.cpu === undefined ? {} : { server: extra.cpu }), mock: 40, machine: 90 },
  ...(extra.rss === undefined ? {} : { serverRssMiB: extra.rss }),
});

const savedComparison = (level: number, throughputRatio: number, ofFloor?: { throughputRatio: number; cpuPerTurnRatio: number | null }) => ({
  level,
  throughputRatio,
  ttftP99OverheadMs: 40,
  rounds: [],
  floor: { throughputRatio: 0.95, ttftP99OverheadMs: 20 },
  ...(ofFloor === undefined ? {} : { ofFloor }),
  checks: [],
  notes: [],
});

const level100 = (llmchatRate: number, llmchatCpu: number) => [
  savedRun(100, 'direct', 1000, { rss: 150, cpu: 1 }),
  savedRun(100, 'floor', 950, { cpu: 64.6, rss: 270 }),
  savedRun(100, 'llmchat', llmchatRate, { cpu: llmchatCpu, rss: 400 }),
];

const file = (runs: unknown[], comparisons: unknown[], extra: Record<string, unknown> = {}) => ({
  startedAt: '2026-12-04T10:00:00.000Z',
  machine: { cores: 2, cpuModel: 'AMD EPYC', node: 'v24.22.3' },
  backends: { kind: 'postgres+redis', notes: [] },
  options: { levels: [100, 1000], durationS: 10, chunks: 20, intervalMs: 5, workers: 1, serverEnv: {} },
  runs,
  comparisons,
  ...extra,
});

const figure = (c: ResultsComparison, level: number, target: string, name: string): FigureChange | undefined =>
  c.targets.find((t) => t.level === level && t.target === target)?.figures.find((f) => f.figure === name);

describe('compareResults', () => {
  it('puts each key figure of a level and target present in both side by side', () => {
    const before = parseBenchResult(file(level100(850, 85), [savedComparison(100, 0.85, { throughputRatio: 0.895, cpuPerTurnRatio: 1.47 })]), 'old.json');
    const after = parseBenchResult(file(level100(900, 72), [savedComparison(100, 0.9, { throughputRatio: 0.947, cpuPerTurnRatio: 1.18 })]), 'new.json');
    const c = compareResults(before, after);
    expect(c.targets.map((t) => `${t.level} ${t.target}`)).toEqual(['100 direct', '100 floor', '100 llmchat']);
    expect(c.targets.find((t) => t.target === 'llmchat')?.figures.map((f) => f.figure)).toEqual([
      'turns/s',
      'TTFT p50 (ms)',
      'TTFT p99 (ms)',
      'total p99 (ms)',
      'server CPU per turn (ms)',
      'server RSS (MiB)',
      'errors',
    ]);
    // Direct has no serving process: no CPU or RSS row.
    expect(c.targets.find((t) => t.target === 'direct')?.figures.map((f) => f.figure)).toEqual(['turns/s', 'TTFT p50 (ms)', 'TTFT p99 (ms)', 'total p99 (ms)', 'errors']);
    expect(figure(c, 100, 'llmchat', 'turns/s')).toMatchObject({ before: 850, after: 900 });
    expect(figure(c, 100, 'llmchat', 'server CPU per turn (ms)')?.before).toBeCloseTo(1);
    expect(figure(c, 100, 'llmchat', 'server CPU per turn (ms)')?.after).toBeCloseTo(0.8);
    expect(c.levels).toEqual([
      {
        level: 100,
        figures: [
          { figure: 'LLMChat throughput of the floor', kind: 'share', before: 0.895, after: 0.947 },
          { figure: 'LLMChat throughput of direct', kind: 'share', before: 0.85, after: 0.9 },
          { figure: 'LLMChat TTFT p99 over direct (ms)', kind: 'overhead', before: 40, after: 40 },
          { figure: "LLMChat CPU per turn, times the floor's", kind: 'times', before: 1.47, after: 1.18 },
          { figure: 'floor throughput of direct', kind: 'share', before: 0.95, after: 0.95 },
        ],
      },
    ]);
    expect(c.notes).toEqual([]);
  });

  it('takes the median of the rounds and sums their errors', () => {
    const before = parseBenchResult(
      file([savedRun(100, 'llmchat', 800, { errors: 1 }), savedRun(100, 'llmchat', 900), savedRun(100, 'llmchat', 700, { errors: 2 })], []),
      'old.json',
    );
    const after = parseBenchResult(file([savedRun(100, 'llmchat', 880)], []), 'new.json');
    const c = compareResults(before, after);
    expect(figure(c, 100, 'llmchat', 'turns/s')).toMatchObject({ before: 800, after: 880 });
    expect(figure(c, 100, 'llmchat', 'errors')).toMatchObject({ before: 3, after: 0 });
    expect(c.notes).toEqual(['level 100 llmchat: medians of 3 round(s) before, 1 after']);
  });

  it('leaves out a level present on one side only, and says so', () => {
    const before = parseBenchResult(file([...level100(850, 85), savedRun(1000, 'direct', 4000), savedRun(1000, 'llmchat', 1500)], [savedComparison(100, 0.85), savedComparison(1000, 0.37)]), 'old.json');
    const after = parseBenchResult(file(level100(900, 72), [savedComparison(100, 0.9)]), 'new.json');
    const c = compareResults(before, after);
    expect(c.targets.map((t) => t.level)).toEqual([100, 100, 100]);
    expect(c.levels.map((l) => l.level)).toEqual([100]);
    expect(c.notes).toEqual(['level 1000: only before']);
  });

  it('says which target a level lacks on one side (a run without the floor)', () => {
    const before = parseBenchResult(file(level100(850, 85), [savedComparison(100, 0.85, { throughputRatio: 0.895, cpuPerTurnRatio: 1.47 })]), 'old.json');
    const noFloor = level100(900, 72).filter((r) => r.target !== 'floor');
    const after = parseBenchResult(file(noFloor, [savedComparison(100, 0.9)]), 'new.json');
    const c = compareResults(before, after);
    expect(c.targets.map((t) => t.target)).toEqual(['direct', 'llmchat']);
    expect(c.levels[0]?.figures[0]).toEqual({ figure: 'LLMChat throughput of the floor', kind: 'share', before: 0.895, after: null });
    expect(c.notes).toEqual([
      'level 100 floor: only before',
      'level 100: no ratios to the floor after (the floor did not run, or the file predates those ratios)',
    ]);
  });

  it('notes a broken run and a different setup', () => {
    const before = parseBenchResult(file(level100(850, 85), [], { backends: { kind: 'embedded' } }), 'old.json');
    const after = parseBenchResult(file(level100(900, 72), [], { broken: 'interrupted' }), 'new.json');
    expect(compareResults(before, after).notes).toEqual([
      'new.json: the run was broken (interrupted); its figures may be partial',
      'the backends differ: before embedded; after postgres+redis',
    ]);
  });
});

describe('formatChange', () => {
  it('gives rates and costs relatively, latencies in ms too, shares in points, counts and ratios as differences', () => {
    expect(formatChange({ kind: 'rate', before: 850, after: 900 })).toBe('+5.9%');
    expect(formatChange({ kind: 'cpu', before: 1, after: 0.8 })).toBe('-20.0%');
    expect(formatChange({ kind: 'latency', before: 40, after: 30 })).toBe('-10.0 ms (-25.0%)');
    expect(formatChange({ kind: 'memory', before: 400, after: 300 })).toBe('-100 MiB (-25.0%)');
    expect(formatChange({ kind: 'share', before: 0.895, after: 0.947 })).toBe('+5.2 pts');
    expect(formatChange({ kind: 'count', before: 0, after: 3 })).toBe('+3');
    expect(formatChange({ kind: 'count', before: 0, after: 0 })).toBe('0');
    expect(formatChange({ kind: 'overhead', before: 46, after: 20 })).toBe('-26.0 ms');
    expect(formatChange({ kind: 'times', before: 1.47, after: 1.18 })).toBe('-0.29x');
    expect(formatChange({ kind: 'rate', before: null, after: 900 })).toBe('-');
    expect(formatChange({ kind: 'rate', before: 0, after: 0 })).toBe('0.0%');
  });
});

describe('formatResultsComparison', () => {
  it('prints both sources, a row per figure with before, after and change, the ratios and the notes', () => {
    const before = parseBenchResult(file(level100(850, 85), [savedComparison(100, 0.85)]), 'old.json');
    const after = parseBenchResult(file(level100(900, 72), [savedComparison(100, 0.9, { throughputRatio: 0.947, cpuPerTurnRatio: 1.18 })]), 'new.json');
    const text = formatResultsComparison(compareResults(before, after));
    expect(text).toContain('  before: old.json (started 2026-12-04T10:00:00.000Z; postgres+redis; workers 1, durationS 10 s, chunks 20, intervalMs 5 ms)');
    expect(text).toMatch(/^100 {2}llmchat {2}turns\/s +850\.0 +900\.0 +\+5\.9%$/m);
    expect(text).toMatch(/^100 {2}llmchat {2}server CPU per turn \(ms\) +1\.00 +0\.80 +-20\.0%$/m);
    expect(text).toMatch(/^100 {2}LLMChat throughput of the floor +- +94\.7% +-$/m);
    expect(text).toContain('note: level 100: no ratios to the floor before (the floor did not run, or the file predates those ratios)');
  });

  it('says when no level and target is in both', () => {
    const before = parseBenchResult(file([savedRun(10, 'llmchat', 90)], []), 'old.json');
    const after = parseBenchResult(file([savedRun(100, 'llmchat', 900)], []), 'new.json');
    const text = formatResultsComparison(compareResults(before, after));
    expect(text).toContain('No level and target is in both results.');
    expect(text).toContain('note: level 10: only before');
    expect(text).toContain('note: level 100: only after');
  });
});

describe('parseBenchResult', () => {
  const fails = (json: unknown): string => {
    try {
      parseBenchResult(json, 'x.json');
    } catch (error) {
      expect(error).toBeInstanceOf(BenchResultError);
      return (error as Error).message;
    }
    throw new Error('parseBenchResult accepted it');
  };

  it('refuses what is not a bench result, saying why', () => {
    expect(fails([1, 2])).toBe('x.json is not a result of npm run bench: expected a JSON object, got [1,2]');
    expect(fails({ name: 'llmchat' })).toBe('x.json is not a result of npm run bench: it has no "runs" list');
    expect(fails({ runs: [] })).toBe('x.json is not a result of npm run bench: it has no "comparisons" list');
  });

  it("refuses a long-answer result, which has levels of another shape", () => {
    expect(fails({ startedAt: 'x', reports: [], options: {} })).toMatch(/^x\.json is a result of npm run bench -- --long or --open-loop; --compare reads the short levels' results/);
  });

  it('names the field that has the wrong shape', () => {
    expect(fails(file([{ ...savedRun(100, 'llmchat', 900), turnsPerS: 'fast' }], []))).toBe('x.json: runs[0].turnsPerS must be a number or null, got "fast"');
    expect(fails(file([savedRun(100, 'llmchat', 900), { ...savedRun(100, 'floor', 900), ttftMs: undefined }], []))).toBe(
      'x.json: runs[1].ttftMs must be an object, got nothing',
    );
    expect(fails(file([], [{ level: 100 }]))).toBe('x.json: comparisons[0].throughputRatio must be a number or null, got nothing');
    expect(fails(file([{ ...savedRun(100, 'llmchat', 900), level: -1 }], []))).toBe('x.json: runs[0].level must be a non-negative integer, got -1');
  });

  it('takes null figures (NaN when written) and absent CPU and RSS as no figure', () => {
    const r = parseBenchResult(file([{ ...savedRun(100, 'llmchat', 0), turnsPerS: null, ttftMs: { p50: null, p99: null } }], []), 'x.json');
    expect(r.runs[0]).toMatchObject({ turnsPerS: null, ttftMs: { p50: null, p99: null }, cpuPercent: { server: null }, serverRssMiB: null });
  });
});

describe('readBenchResult', () => {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'compare-runs-'));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('reads a saved result', () => {
    const saved = path.join(dir, 'bench.json');
    writeFileSync(saved, JSON.stringify(file(level100(850, 85), [])));
    expect(readBenchResult(saved).runs).toHaveLength(3);
  });

  it('says when the file is missing or not JSON', () => {
    expect(() => readBenchResult(path.join(dir, 'absent.json'))).toThrow(/^cannot read .*absent\.json: ENOENT/);
    const notJson = path.join(dir, 'notes.txt');
    writeFileSync(notJson, 'hello');
    expect(() => readBenchResult(notJson)).toThrow(/notes\.txt is not a result of npm run bench: not JSON/);
  });
});
