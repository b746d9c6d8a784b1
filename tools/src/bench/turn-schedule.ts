/**
 * When each turn of a long-answer or open-loop level starts, and what
 * answer the mock gives it. The mock shapes each answer from a `[[mock …]]`
 * directive in the question (chunks, the delay to the first chunk and the
 * interval between chunks), so one mock serves answers of any length.
 */

import { composeAnswer, splitText } from '../mock-upstream/answer.js';

/** The mock's answer to one turn: `chunks` text chunks, the first `firstTokenMs` after its headers, then one every `intervalMs`. */
export interface AnswerShape {
  chunks: number;
  firstTokenMs: number;
  intervalMs: number;
}

export interface PlannedTurn {
  /** When to send it, ms after the level starts. */
  atMs: number;
  answer: AnswerShape;
}

/** At most this many turns in one level: a bound on the schedule whatever the flags say. */
export const MAX_PLANNED_TURNS = 200_000;

/** How long the mock takes from its headers to its last chunk. */
export function answerMs(shape: AnswerShape): number {
  return shape.firstTokenMs + Math.max(0, shape.chunks - 1) * shape.intervalMs;
}

/** The directive that makes the mock answer with `shape`. */
export function mockDirective(shape: AnswerShape): string {
  return `[[mock chunks=${shape.chunks} interval=${shape.intervalMs} firstTokenDelay=${shape.firstTokenMs}]]`;
}

/** The whole answer text the mock streams for `question` (directives removed) in `chunks` chunks: what must be stored. */
export function expectedAnswerText(question: string, chunks: number): string {
  return composeAnswer(question, false, chunks);
}

/** The first and last chunk of that answer, as a client sees them. */
export function expectedChunks(question: string, chunks: number): { chunks: number; first: string; last: string } {
  const pieces = splitText(expectedAnswerText(question, chunks), chunks);
  return { chunks: pieces.length, first: pieces[0] ?? '', last: pieces[pieces.length - 1] ?? '' };
}

/** `n` turns spread evenly over `rampMs` (all at 0 when `rampMs` is 0: a burst). */
export function rampedArrivals(n: number, rampMs: number, answer: AnswerShape): PlannedTurn[] {
  if (!Number.isInteger(n) || n < 1 || n > MAX_PLANNED_TURNS) throw new RangeError(`turns must be an integer within 1..${MAX_PLANNED_TURNS}, got ${n}`);
  if (!(rampMs >= 0)) throw new RangeError(`ramp must be >= 0 ms, got ${rampMs}`);
  return Array.from({ length: n }, (_, i) => ({ atMs: (i * rampMs) / n, answer }));
}

/** A seeded generator of uniform numbers in [0, 1) (mulberry32): the same seed gives the same schedule run after run. */
export function seededRandom(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4_294_967_296;
  };
}

export interface OpenLoopSpec {
  users: number;
  /** Mean time between two turns of one user (exponential gaps: each user is a Poisson process). */
  meanGapMs: number;
  /** Turns start within [0, durationMs). */
  durationMs: number;
  /** Each answer lasts a uniform random time within this range, its chunks evenly spread over it. */
  answerMinMs: number;
  answerMaxMs: number;
  chunks: number;
  random: () => number;
}

/**
 * Open-loop arrivals: every user sends a turn after an exponentially
 * distributed gap, whatever its earlier turns are doing, until the duration
 * is over. Each answer's first chunk comes one interval after the headers,
 * so the answer lasts `chunks × interval`.
 */
export function poissonArrivals(spec: OpenLoopSpec): PlannedTurn[] {
  const { users, meanGapMs, durationMs, answerMinMs, answerMaxMs, chunks, random } = spec;
  if (!Number.isInteger(users) || users < 1) throw new RangeError(`users must be a positive integer, got ${users}`);
  if (!(meanGapMs > 0) || !(durationMs > 0)) throw new RangeError('the mean gap and the duration must be positive');
  if (!(answerMinMs > 0) || !(answerMaxMs >= answerMinMs)) throw new RangeError('the answer range must be positive and ordered');
  if (!Number.isInteger(chunks) || chunks < 1) throw new RangeError(`chunks must be a positive integer, got ${chunks}`);
  // Three times the expected count is far beyond any plausible draw; the bound keeps a typo from planning millions.
  if ((users * durationMs) / meanGapMs > MAX_PLANNED_TURNS / 3) {
    throw new RangeError(`${users} users every ${meanGapMs} ms for ${durationMs} ms plans more than ${MAX_PLANNED_TURNS / 3} turns`);
  }
  const turns: PlannedTurn[] = [];
  const gap = (): number => -meanGapMs * Math.log(1 - random());
  for (let user = 0; user < users; user++) {
    for (let at = gap(); at < durationMs && turns.length < MAX_PLANNED_TURNS; at += gap()) {
      const lengthMs = answerMinMs + random() * (answerMaxMs - answerMinMs);
      const intervalMs = Math.max(1, Math.round(lengthMs / chunks));
      turns.push({ atMs: at, answer: { chunks, firstTokenMs: intervalMs, intervalMs } });
    }
  }
  return turns.sort((a, b) => a.atMs - b.atMs);
}
