import { describe, expect, it } from 'vitest';
import { longestGapMs, turnWrites } from './outage.js';
import type { TurnTrace } from './turn-client.js';

describe('write outage', () => {
  it('is the longest gap between successive successes that reaches into the window', () => {
    // Steady writes, a 4 s hole after the failure at 10 000, steady again.
    const successes = [9_000, 9_500, 10_000, 14_000, 14_100, 14_200];
    expect(longestGapMs(successes, 10_000, 20_000)).toBe(4_000);
    // Order does not matter.
    expect(longestGapMs([...successes].reverse(), 10_000, 20_000)).toBe(4_000);
  });

  it('leaves out gaps wholly before or after the window, counts one that straddles its start', () => {
    expect(longestGapMs([0, 5_000, 10_100, 10_200], 10_000, 11_000)).toBe(5_100);
    expect(longestGapMs([0, 5_000, 10_100, 10_200], 10_150, 11_000)).toBe(100);
    expect(longestGapMs([10_000, 10_100, 30_000], 10_000, 10_050)).toBe(100);
  });

  it('is 0 with fewer than two successes', () => {
    expect(longestGapMs([], 0, 1_000)).toBe(0);
    expect(longestGapMs([500], 0, 1_000)).toBe(0);
  });

  it('counts a turn as written when its client was told so', () => {
    const trace = (acknowledgedAt: number | undefined) => ({ acknowledgedAt }) as TurnTrace;
    expect(turnWrites([trace(5), trace(undefined), trace(7)])).toEqual([5, 7]);
  });
});
