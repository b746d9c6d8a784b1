import { describe, expect, it } from 'vitest';
import { distribution, formatMs, formatPercent, formatRate, formatTable, percentile } from './stats.js';

describe('percentile', () => {
  const hundred = Array.from({ length: 100 }, (_, i) => i + 1);

  it('uses the nearest rank: p50 of 1..100 is 50 and p99 is 99', () => {
    expect(percentile(hundred, 50)).toBe(50);
    expect(percentile(hundred, 95)).toBe(95);
    expect(percentile(hundred, 99)).toBe(99);
  });

  it('gives the smallest value at p0 and the largest at p100', () => {
    expect(percentile(hundred, 0)).toBe(1);
    expect(percentile(hundred, 100)).toBe(100);
  });

  it('gives the only value of a one-element array at any percentile', () => {
    expect(percentile([7], 1)).toBe(7);
    expect(percentile([7], 99)).toBe(7);
  });

  it('rounds the rank up: p50 of four values is the second', () => {
    expect(percentile([10, 20, 30, 40], 50)).toBe(20);
    expect(percentile([10, 20, 30, 40], 51)).toBe(30);
  });

  it('is NaN for no values', () => {
    expect(percentile([], 50)).toBeNaN();
  });

  it('rejects a percentile outside 0..100', () => {
    expect(() => percentile([1], 101)).toThrow(RangeError);
    expect(() => percentile([1], -1)).toThrow(RangeError);
    expect(() => percentile([1], Number.NaN)).toThrow(RangeError);
  });
});

describe('distribution', () => {
  it('sorts numerically before taking percentiles (not as strings)', () => {
    const d = distribution([100, 9, 20, 3]);
    expect(d.min).toBe(3);
    expect(d.max).toBe(100);
    expect(d.p50).toBe(9);
  });

  it('computes count and mean', () => {
    const d = distribution([1, 2, 3, 4]);
    expect(d.count).toBe(4);
    expect(d.mean).toBe(2.5);
  });

  it('does not reorder its input', () => {
    const input = [3, 1, 2];
    distribution(input);
    expect(input).toEqual([3, 1, 2]);
  });

  it('has count 0 and NaN figures for no values', () => {
    const d = distribution([]);
    expect(d.count).toBe(0);
    expect(d.p99).toBeNaN();
    expect(d.mean).toBeNaN();
    expect(d.min).toBeNaN();
  });
});

describe('formatting', () => {
  it('formats milliseconds with precision by magnitude', () => {
    expect(formatMs(1234.56)).toBe('1235');
    expect(formatMs(12.345)).toBe('12.3');
    expect(formatMs(1.2345)).toBe('1.23');
    expect(formatMs(-3.5)).toBe('-3.50');
  });

  it('shows a dash for a missing figure', () => {
    expect(formatMs(Number.NaN)).toBe('-');
    expect(formatRate(Number.POSITIVE_INFINITY)).toBe('-');
    expect(formatPercent(Number.NaN)).toBe('-');
  });

  it('formats rates and ratios', () => {
    expect(formatRate(123.456)).toBe('123.5');
    expect(formatPercent(0.9123)).toBe('91.2%');
  });

  it('aligns a table: first column left, the others right, a rule under the header', () => {
    const table = formatTable([
      ['name', 'value'],
      ['a', '1'],
      ['longer', '100'],
    ]);
    expect(table.split('\n')).toEqual(['name    value', '------  -----', 'a           1', 'longer    100']);
  });
});
