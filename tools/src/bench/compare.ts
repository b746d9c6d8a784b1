/**
 * LLMChat against the mock called directly, per level: the targets
 * checked on the median of one or more rounds. On a shared two-core machine
 * one round can land 15% above or below the next; with `--repeat` the
 * verdict rests on the middle round, and every round is shown.
 */

import { formatMs, formatPercent } from './stats.js';

/** What a comparison needs of one target's run. */
export interface RunFigures {
  turnsPerS: number;
  ttftP99Ms: number;
  ok: number;
  errors: number;
  turns: number;
}

export interface RoundComparison {
  /** llmchat turns/s divided by direct turns/s. */
  throughputRatio: number;
  /** llmchat TTFT p99 minus direct TTFT p99, ms. */
  ttftP99OverheadMs: number;
}

export interface TargetCheck {
  name: string;
  pass: boolean;
  actual: string;
}

export interface LevelComparison extends RoundComparison {
  level: number;
  /** Every round, in the order run; the figures above are their medians. */
  rounds: RoundComparison[];
  /** The floor (a bare streaming proxy) against direct, median of the rounds that ran it; no targets. */
  floor: RoundComparison | undefined;
  checks: TargetCheck[];
  /** Reasons to doubt the comparison. */
  notes: string[];
}

/** The middle value (the mean of the two middle ones for an even count); NaN for none. */
export function median(values: readonly number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  if (sorted.length === 0) return Number.NaN;
  const mid = Math.floor(sorted.length / 2);
  return sorted.length % 2 === 1 ? (sorted[mid] as number) : ((sorted[mid - 1] as number) + (sorted[mid] as number)) / 2;
}

const against = (direct: RunFigures, other: RunFigures): RoundComparison => ({
  throughputRatio: other.turnsPerS / direct.turnsPerS,
  ttftP99OverheadMs: other.ttftP99Ms - direct.ttftP99Ms,
});

const medianOf = (rounds: readonly RoundComparison[]): RoundComparison => ({
  throughputRatio: median(rounds.map((r) => r.throughputRatio)),
  ttftP99OverheadMs: median(rounds.map((r) => r.ttftP99OverheadMs)),
});

/** Compares the rounds of one level and checks the targets for it (100 and 1000 have targets). */
export function compareLevel(
  level: number,
  rounds: readonly { direct: RunFigures; llmchat: RunFigures; floor?: RunFigures }[],
): LevelComparison {
  const each = rounds.map(({ direct, llmchat }) => against(direct, llmchat));
  const { throughputRatio, ttftP99OverheadMs } = medianOf(each);
  const floorRounds = rounds.flatMap(({ direct, floor }) => (floor === undefined ? [] : [against(direct, floor)]));
  const errors = rounds.reduce((sum, r) => sum + r.llmchat.errors, 0);
  const turns = rounds.reduce((sum, r) => sum + r.llmchat.turns, 0);
  const ok = rounds.reduce((sum, r) => sum + r.llmchat.ok, 0);
  const checks: TargetCheck[] = [];
  if (level === 100) {
    checks.push({ name: 'TTFT p99 overhead <= 25 ms', pass: ttftP99OverheadMs <= 25, actual: `${formatMs(ttftP99OverheadMs)} ms` });
    checks.push({ name: 'throughput >= 90% of direct', pass: throughputRatio >= 0.9, actual: formatPercent(throughputRatio) });
  } else if (level === 1000) {
    checks.push({ name: 'zero errors', pass: errors === 0 && ok > 0, actual: `${errors} errors in ${turns} turns` });
    checks.push({ name: 'throughput >= 50% of direct', pass: throughputRatio >= 0.5, actual: formatPercent(throughputRatio) });
  }
  const notes: string[] = [];
  const directErrors = rounds.reduce((sum, r) => sum + r.direct.errors, 0);
  if (directErrors > 0) notes.push(`the direct runs had ${directErrors} errors: the baseline itself is suspect`);
  if (ok === 0) notes.push('no LLMChat turn succeeded in the window');
  const floor = floorRounds.length === 0 ? undefined : medianOf(floorRounds);
  return { level, throughputRatio, ttftP99OverheadMs, rounds: each, floor, checks, notes };
}
