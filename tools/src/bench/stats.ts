/** Percentiles over plain sorted arrays, and the text formatting of bench figures. */

export interface Distribution {
  count: number;
  min: number;
  mean: number;
  p50: number;
  p95: number;
  p99: number;
  max: number;
}

/**
 * Nearest-rank percentile of an ascending array: the smallest value with at
 * least `p` percent of the values at or below it. NaN for an empty array.
 */
export function percentile(sorted: readonly number[], p: number): number {
  if (!(p >= 0 && p <= 100)) throw new RangeError(`percentile must be within 0..100, got ${p}`);
  if (sorted.length === 0) return Number.NaN;
  const rank = Math.max(1, Math.ceil((p / 100) * sorted.length));
  return sorted[rank - 1] as number;
}

/** Count, min, mean, p50/p95/p99 and max; every figure NaN (count 0) for no values. */
export function distribution(values: readonly number[]): Distribution {
  const sorted = Float64Array.from(values).sort();
  const list = Array.from(sorted);
  let sum = 0;
  for (const v of list) sum += v;
  return {
    count: list.length,
    min: list.length === 0 ? Number.NaN : (list[0] as number),
    mean: list.length === 0 ? Number.NaN : sum / list.length,
    p50: percentile(list, 50),
    p95: percentile(list, 95),
    p99: percentile(list, 99),
    max: list.length === 0 ? Number.NaN : (list[list.length - 1] as number),
  };
}

/** Milliseconds with a precision that suits their size; '-' when there is no figure. */
export function formatMs(ms: number): string {
  if (!Number.isFinite(ms)) return '-';
  if (Math.abs(ms) >= 100) return ms.toFixed(0);
  if (Math.abs(ms) >= 10) return ms.toFixed(1);
  return ms.toFixed(2);
}

/** A rate (per second) rounded to one decimal; '-' when there is no figure. */
export function formatRate(perSecond: number): string {
  return Number.isFinite(perSecond) ? perSecond.toFixed(1) : '-';
}

/** A ratio as a percentage with one decimal; '-' when there is no figure. */
export function formatPercent(ratio: number): string {
  return Number.isFinite(ratio) ? `${(ratio * 100).toFixed(1)}%` : '-';
}

/** Bytes as GiB with one decimal. */
export function formatGiB(bytes: number): string {
  return `${(bytes / 1024 ** 3).toFixed(1)} GiB`;
}

/**
 * Aligns rows into columns: the first row is the header, followed by a rule.
 * Columns after the first are right-aligned, as they hold figures.
 */
export function formatTable(rows: readonly (readonly string[])[]): string {
  const columns = Math.max(0, ...rows.map((r) => r.length));
  const widths: number[] = [];
  for (let c = 0; c < columns; c++) widths.push(Math.max(0, ...rows.map((r) => (r[c] ?? '').length)));
  const line = (row: readonly string[]): string =>
    widths
      .map((w, c) => {
        const cell = row[c] ?? '';
        return c === 0 ? cell.padEnd(w) : cell.padStart(w);
      })
      .join('  ')
      .trimEnd();
  const out: string[] = [];
  rows.forEach((row, i) => {
    out.push(line(row));
    if (i === 0) out.push(widths.map((w) => '-'.repeat(w)).join('  '));
  });
  return out.join('\n');
}
