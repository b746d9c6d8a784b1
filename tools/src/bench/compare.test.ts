import { describe, expect, it } from 'vitest';
import { compareLevel, median } from './compare.js';

const run = (turnsPerS: number, ttftP99Ms: number, errors = 0) => ({ turnsPerS, ttftP99Ms, ok: 100, errors, turns: 100 + errors });

describe('median', () => {
  it('takes the middle value, or the mean of the two middle ones', () => {
    expect(median([3, 1, 2])).toBe(2);
    expect(median([4, 1, 3, 2])).toBe(2.5);
    expect(median([])).toBeNaN();
  });
});

describe('compareLevel', () => {
  it('checks level 100 on the median round and keeps every round', () => {
    const c = compareLevel(100, [
      { direct: run(1000, 10), llmchat: run(950, 30) },
      { direct: run(1000, 10), llmchat: run(600, 90) },
      { direct: run(1000, 10), llmchat: run(920, 34) },
    ]);
    expect(c.throughputRatio).toBeCloseTo(0.92);
    expect(c.ttftP99OverheadMs).toBe(24);
    expect(c.rounds.map((r) => r.throughputRatio)).toEqual([0.95, 0.6, 0.92]);
    expect(c.checks.map((k) => [k.name, k.pass])).toEqual([
      ['TTFT p99 overhead <= 25 ms', true],
      ['throughput >= 90% of direct', true],
    ]);
    expect(c.checks[1]?.actual).toBe('92.0%');
    expect(c.floor).toBeUndefined();
  });

  it('reports the floor on the median of the rounds that ran it, without targets of its own', () => {
    const c = compareLevel(100, [
      { direct: run(1000, 10), llmchat: run(500, 90), floor: run(850, 50) },
      { direct: run(1000, 10), llmchat: run(480, 95), floor: run(800, 40) },
      { direct: run(1000, 10), llmchat: run(520, 85), floor: run(830, 45) },
    ]);
    expect(c.floor?.throughputRatio).toBeCloseTo(0.83);
    expect(c.floor?.ttftP99OverheadMs).toBe(35);
    expect(c.throughputRatio).toBeCloseTo(0.5);
    expect(c.checks.map((k) => k.pass)).toEqual([false, false]);
  });

  it('fails level 1000 on an error in any round, and on a median below half of direct', () => {
    const c = compareLevel(1000, [
      { direct: run(4000, 200), llmchat: run(2100, 400) },
      { direct: run(4000, 200), llmchat: run(1900, 400, 1) },
    ]);
    expect(c.throughputRatio).toBeCloseTo(0.5);
    expect(c.checks).toEqual([
      { name: 'zero errors', pass: false, actual: '1 errors in 201 turns' },
      { name: 'throughput >= 50% of direct', pass: true, actual: '50.0%' },
    ]);
  });

  it('has no targets for other levels, and says when the baseline itself failed', () => {
    const c = compareLevel(10, [{ direct: run(100, 5, 2), llmchat: run(90, 9) }]);
    expect(c.checks).toEqual([]);
    expect(c.notes).toEqual(['the direct runs had 2 errors: the baseline itself is suspect']);
  });
});
