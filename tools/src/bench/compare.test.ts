import { describe, expect, it } from 'vitest';
import type { RunFigures, TargetCheck } from './compare.js';
import { compareLevel, describeLevel, median, medianOfFigures, serverCpuMsPerTurn } from './compare.js';

const run = (turnsPerS: number, ttftP99Ms: number, extra: Partial<RunFigures> = {}): RunFigures => ({
  turnsPerS,
  ttftP99Ms,
  ok: 100,
  errors: 0,
  turns: 100,
  serverCpuMsPerTurn: undefined,
  serverRssMiB: undefined,
  ...extra,
});
/** A serving process's run: CPU per turn in ms and RSS in MiB. */
const served = (turnsPerS: number, ttftP99Ms: number, cpuMs: number, rssMiB = 200, errors = 0): RunFigures =>
  run(turnsPerS, ttftP99Ms, { serverCpuMsPerTurn: cpuMs, serverRssMiB: rssMiB, errors, turns: 100 + errors });
const direct = (turnsPerS: number, ttftP99Ms = 10, errors = 0): RunFigures => run(turnsPerS, ttftP99Ms, { errors, turns: 100 + errors });

const verdicts = (checks: readonly TargetCheck[]): [string, string][] => checks.map((k) => [k.name, k.verdict]);
const check = (checks: readonly TargetCheck[], name: string): TargetCheck | undefined => checks.find((k) => k.name === name);

describe('median', () => {
  it('takes the middle value, or the mean of the two middle ones', () => {
    expect(median([3, 1, 2])).toBe(2);
    expect(median([4, 1, 3, 2])).toBe(2.5);
    expect(median([])).toBeNaN();
  });

  it('medianOfFigures leaves out what is not a figure', () => {
    expect(medianOfFigures([3, undefined, Number.NaN, null, 1, 2])).toBe(2);
    expect(medianOfFigures([undefined, Number.NaN])).toBeNaN();
  });
});

describe('serverCpuMsPerTurn', () => {
  it("divides the serving process's share of a core by the rate: 85% at 850 turns/s is 1 ms per turn", () => {
    expect(serverCpuMsPerTurn({ target: 'llmchat', turnsPerS: 850, cpuPercent: { server: 85 } })).toBeCloseTo(1);
    expect(serverCpuMsPerTurn({ target: 'floor', turnsPerS: 1000, cpuPercent: { server: 68 } })).toBeCloseTo(0.68);
  });

  it('has no figure for direct, without a CPU share, or without a completed turn', () => {
    expect(serverCpuMsPerTurn({ target: 'direct', turnsPerS: 1000, cpuPercent: { server: 2 } })).toBeUndefined();
    expect(serverCpuMsPerTurn({ target: 'llmchat', turnsPerS: 1000, cpuPercent: { server: undefined } })).toBeUndefined();
    expect(serverCpuMsPerTurn({ target: 'llmchat', turnsPerS: 1000, cpuPercent: { server: null } })).toBeUndefined();
    expect(serverCpuMsPerTurn({ target: 'llmchat', turnsPerS: 0, cpuPercent: { server: 50 } })).toBeUndefined();
    expect(serverCpuMsPerTurn({ target: 'llmchat', turnsPerS: null, cpuPercent: { server: 50 } })).toBeUndefined();
  });
});

describe('compareLevel at 100 streams', () => {
  it('checks the median round against the floor and direct, and keeps every round', () => {
    const c = compareLevel(100, [
      { direct: direct(1000), floor: served(1000, 20, 0.8), llmchat: served(960, 30, 1.0) },
      { direct: direct(1000), floor: served(1000, 20, 0.8), llmchat: served(600, 90, 1.6) },
      { direct: direct(1000), floor: served(1000, 20, 0.8), llmchat: served(950, 34, 0.96) },
    ]);
    expect(c.ofFloor?.throughputRatio).toBeCloseTo(0.95);
    expect(c.ofFloor?.cpuPerTurnRatio).toBeCloseTo(1.25);
    expect(c.throughputRatio).toBeCloseTo(0.95);
    expect(c.ttftP99OverheadMs).toBe(24);
    expect(c.serverCpuMsPerTurn).toBe(1.0);
    expect(c.floorCpuMsPerTurn).toBe(0.8);
    expect(c.rounds.map((r) => r.ofFloor?.throughputRatio)).toEqual([0.96, 0.6, 0.95]);
    expect(verdicts(c.checks)).toEqual([
      ['throughput >= 95% of the floor', 'pass'],
      ['TTFT p99 overhead <= 25 ms', 'pass'],
      ["server CPU per turn <= 1.3x the floor's", 'pass'],
    ]);
    expect(c.checks.map((k) => k.actual)).toEqual(['95.0%', '+24.0 ms', '1.25x: 1.00 against 0.80 ms']);
  });

  it('fails each target on its own figure', () => {
    const slow = compareLevel(100, [{ direct: direct(1000), floor: served(1000, 20, 1), llmchat: served(940, 30, 1) }]);
    expect(verdicts(slow.checks)).toEqual([
      ['throughput >= 95% of the floor', 'fail'],
      ['TTFT p99 overhead <= 25 ms', 'pass'],
      ["server CPU per turn <= 1.3x the floor's", 'pass'],
    ]);
    const late = compareLevel(100, [{ direct: direct(1000), floor: served(1000, 20, 1), llmchat: served(1000, 35.1, 1) }]);
    expect(check(late.checks, 'TTFT p99 overhead <= 25 ms')).toEqual({ name: 'TTFT p99 overhead <= 25 ms', verdict: 'fail', actual: '+25.1 ms' });
    const costly = compareLevel(100, [{ direct: direct(1000), floor: served(1000, 20, 0.5), llmchat: served(1000, 30, 0.66) }]);
    expect(check(costly.checks, "server CPU per turn <= 1.3x the floor's")?.verdict).toBe('fail');
    expect(check(costly.checks, "server CPU per turn <= 1.3x the floor's")?.actual).toBe('1.32x: 0.66 against 0.50 ms');
  });

  it('without the floor, reports its targets as not checked and still checks TTFT against direct', () => {
    const c = compareLevel(100, [{ direct: direct(1000), llmchat: served(500, 90, 1) }]);
    expect(c.floor).toBeUndefined();
    expect(c.ofFloor).toBeUndefined();
    expect(c.checks).toEqual([
      { name: 'throughput >= 95% of the floor', verdict: 'not checked', actual: 'the floor did not run: --no-floor' },
      { name: 'TTFT p99 overhead <= 25 ms', verdict: 'fail', actual: '+80.0 ms' },
      { name: "server CPU per turn <= 1.3x the floor's", verdict: 'not checked', actual: 'the floor did not run: --no-floor' },
    ]);
  });

  it('does not check CPU against the floor when either has no CPU figure', () => {
    const c = compareLevel(100, [{ direct: direct(1000), floor: run(1000, 20), llmchat: served(990, 20, 1) }]);
    expect(check(c.checks, "server CPU per turn <= 1.3x the floor's")).toEqual({
      name: "server CPU per turn <= 1.3x the floor's",
      verdict: 'not checked',
      actual: 'no CPU figure for the server or the floor proxy',
    });
    expect(check(c.checks, 'throughput >= 95% of the floor')?.verdict).toBe('pass');
  });

  it('reports the floor against direct on the median of the rounds that ran it', () => {
    const c = compareLevel(100, [
      { direct: direct(1000), llmchat: served(500, 90, 1), floor: served(850, 50, 0.5) },
      { direct: direct(1000), llmchat: served(480, 95, 1), floor: served(800, 40, 0.5) },
      { direct: direct(1000), llmchat: served(520, 85, 1), floor: served(830, 45, 0.5) },
    ]);
    expect(c.floor?.throughputRatio).toBeCloseTo(0.83);
    expect(c.floor?.ttftP99OverheadMs).toBe(35);
  });
});

describe('compareLevel at 1000 streams', () => {
  const round = (llmchat: RunFigures) => ({ direct: direct(4000, 200), floor: served(3000, 300, 0.4, 330), llmchat });

  it('passes throughput, CPU, errors and RSS on the median round', () => {
    const c = compareLevel(1000, [round(served(2100, 400, 0.6, 290)), round(served(1500, 500, 0.7, 320)), round(served(2200, 400, 0.58, 280))]);
    expect(c.serverRssMiB).toBe(290);
    expect(c.checks).toEqual([
      { name: 'throughput >= 70% of the floor', verdict: 'pass', actual: '70.0%' },
      { name: "server CPU per turn <= 1.5x the floor's", verdict: 'pass', actual: '1.50x: 0.60 against 0.40 ms' },
      { name: 'zero errors', verdict: 'pass', actual: '0 errors in 300 turns' },
      { name: 'server RSS <= 300 MiB', verdict: 'pass', actual: '290 MiB' },
    ]);
  });

  it('fails each target on its own figure', () => {
    const c = compareLevel(1000, [round(served(2090, 400, 0.61, 301))]);
    expect(verdicts(c.checks)).toEqual([
      ['throughput >= 70% of the floor', 'fail'],
      ["server CPU per turn <= 1.5x the floor's", 'fail'],
      ['zero errors', 'pass'],
      ['server RSS <= 300 MiB', 'fail'],
    ]);
    const failing = compareLevel(1000, [round(served(2100, 400, 0.6, 290)), round(served(2100, 400, 0.6, 290, 1))]);
    expect(check(failing.checks, 'zero errors')).toEqual({ name: 'zero errors', verdict: 'fail', actual: '1 errors in 201 turns' });
  });

  it('without the floor, reports its targets as not checked and still checks errors and RSS', () => {
    const c = compareLevel(1000, [{ direct: direct(4000, 200), llmchat: served(1500, 500, 0.6, 350) }]);
    expect(c.checks).toEqual([
      { name: 'throughput >= 70% of the floor', verdict: 'not checked', actual: 'the floor did not run: --no-floor' },
      { name: "server CPU per turn <= 1.5x the floor's", verdict: 'not checked', actual: 'the floor did not run: --no-floor' },
      { name: 'zero errors', verdict: 'pass', actual: '0 errors in 100 turns' },
      { name: 'server RSS <= 300 MiB', verdict: 'fail', actual: '350 MiB' },
    ]);
  });

  it('does not check RSS without a figure', () => {
    const c = compareLevel(1000, [round(run(2100, 400, { serverCpuMsPerTurn: 0.6 }))]);
    expect(check(c.checks, 'server RSS <= 300 MiB')).toEqual({ name: 'server RSS <= 300 MiB', verdict: 'not checked', actual: 'no RSS figure for the server' });
  });
});

describe('compareLevel at other levels', () => {
  it('has no targets, and says when the baseline or the floor itself failed', () => {
    const c = compareLevel(10, [{ direct: direct(100, 5, 2), floor: served(95, 6, 1, 200, 3), llmchat: served(90, 9, 1) }]);
    expect(c.checks).toEqual([]);
    expect(c.notes).toEqual([
      'the direct runs had 2 errors: the baseline itself is suspect',
      'the floor runs had 3 errors: the targets against it are suspect',
    ]);
  });
});

describe('describeLevel', () => {
  it('shows throughput of the floor and of direct, CPU against the floor, every round and each verdict', () => {
    const c = compareLevel(100, [
      { direct: direct(1000), floor: served(1000, 20, 0.8), llmchat: served(900, 40, 1.2, 404) },
      { direct: direct(1000), floor: served(1000, 20, 0.8), llmchat: served(960, 30, 1.0, 400) },
    ]);
    expect(describeLevel(c)).toEqual([
      "  level 100 (median of 2 rounds): throughput 93.0% of the floor, 93.0% of direct; TTFT p99 +25.0 ms over direct; server CPU 1.10 ms/turn, 1.38x the floor's 0.80 ms; server RSS 402 MiB",
      '    rounds: 90.0% of floor, 90.0% of direct, +30.0 ms, CPU 1.50x; 96.0% of floor, 96.0% of direct, +20.0 ms, CPU 1.25x',
      '    floor (bare proxy: no auth, storage or event buffer): 100.0% of direct, TTFT p99 +10.0 ms over direct',
      '    FAIL  throughput >= 95% of the floor (93.0%)',
      '    PASS  TTFT p99 overhead <= 25 ms (+25.0 ms)',
      "    FAIL  server CPU per turn <= 1.3x the floor's (1.38x: 1.10 against 0.80 ms)",
    ]);
  });

  it('says the floor did not run, and marks its targets not checked', () => {
    const c = compareLevel(100, [{ direct: direct(1000), llmchat: served(900, 20, 1.2) }]);
    expect(describeLevel(c)).toEqual([
      '  level 100: throughput 90.0% of direct (no floor run); TTFT p99 +10.0 ms over direct; server CPU 1.20 ms/turn; server RSS 200 MiB',
      '    not checked  throughput >= 95% of the floor (the floor did not run: --no-floor)',
      '    PASS  TTFT p99 overhead <= 25 ms (+10.0 ms)',
      "    not checked  server CPU per turn <= 1.3x the floor's (the floor did not run: --no-floor)",
    ]);
  });
});
