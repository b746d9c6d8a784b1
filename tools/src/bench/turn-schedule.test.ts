import { Client } from 'undici';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { MockUpstream } from '../mock-upstream/index.js';
import { createMockUpstream } from '../mock-upstream/index.js';
import { peakConcurrency } from './long-answers.js';
import { runTurn } from './sse-load.js';
import { answerMs, expectedChunks, mockDirective, poissonArrivals, rampedArrivals, seededRandom } from './turn-schedule.js';

const LONG = { chunks: 30, firstTokenMs: 2000, intervalMs: 2000 };

describe('answer shapes', () => {
  it('a 30-chunk answer 2 s apart, the first chunk 2 s after the headers, lasts 60 s', () => {
    expect(answerMs(LONG)).toBe(60_000);
    expect(mockDirective(LONG)).toBe('[[mock chunks=30 interval=2000 firstTokenDelay=2000]]');
  });

  describe('against the real mock', () => {
    let mock: MockUpstream;
    beforeAll(async () => {
      mock = await createMockUpstream({ defaultChunks: 3, defaultIntervalMs: 50 });
    });
    afterAll(async () => {
      await mock.close();
    });

    it('the directive gives the shape asked for and the answer expectedChunks predicts', async () => {
      const shape = { chunks: 7, firstTokenMs: 0, intervalMs: 1 };
      const question = 'long-abc 17';
      const client = new Client(mock.url);
      const expected = expectedChunks(question, shape.chunks);
      const outcome = await runTurn(client, {
        name: 'direct',
        origin: mock.url,
        path: '/v1/chat/completions',
        headers: { authorization: 'Bearer bench-key' },
        body: JSON.stringify({ model: 'mock-model', messages: [{ role: 'user', content: `${question} ${mockDirective(shape)}` }], stream: true }),
        protocol: 'openai',
        expected,
      }).finally(() => client.close());
      expect(outcome.error).toBeUndefined();
      expect(outcome.chunks).toBe(7);
      expect(outcome.firstChunk).toBe(expected.first);
      expect(outcome.lastChunk).toBe(expected.last);
      expect(mock.requests.at(-1)?.fault).toEqual({ chunks: 7, interval: 1, firstTokenDelay: 0 });
    });
  });
});

describe('rampedArrivals', () => {
  it('spreads the turns evenly over the ramp, the first at 0', () => {
    const turns = rampedArrivals(4, 10_000, LONG);
    expect(turns.map((t) => t.atMs)).toEqual([0, 2500, 5000, 7500]);
    expect(turns.every((t) => t.answer === LONG)).toBe(true);
  });

  it('a ramp of 0 is a burst: all at once', () => {
    expect(new Set(rampedArrivals(1000, 0, LONG).map((t) => t.atMs))).toEqual(new Set([0]));
  });

  it('refuses a count out of bounds', () => {
    expect(() => rampedArrivals(0, 10, LONG)).toThrow(RangeError);
    expect(() => rampedArrivals(1.5, 10, LONG)).toThrow(RangeError);
  });
});

describe('poissonArrivals', () => {
  const spec = { users: 1000, meanGapMs: 20_000, durationMs: 60_000, answerMinMs: 10_000, answerMaxMs: 30_000, chunks: 20 };

  it('sends about users × duration / gap turns, in order, all within the duration', () => {
    const turns = poissonArrivals({ ...spec, random: seededRandom(1) });
    // 3000 expected; a Poisson count with mean 3000 has a standard deviation of about 55.
    expect(turns.length).toBeGreaterThan(2700);
    expect(turns.length).toBeLessThan(3300);
    expect(turns.every((t, i) => i === 0 || (turns[i - 1] as { atMs: number }).atMs <= t.atMs)).toBe(true);
    expect(turns.every((t) => t.atMs >= 0 && t.atMs < spec.durationMs)).toBe(true);
  });

  it('answers last between the bounds, their chunks spread evenly with the first one interval in', () => {
    const turns = poissonArrivals({ ...spec, random: seededRandom(2) });
    for (const t of turns) {
      expect(t.answer.chunks).toBe(20);
      expect(t.answer.firstTokenMs).toBe(t.answer.intervalMs);
      expect(t.answer.chunks * t.answer.intervalMs).toBeGreaterThanOrEqual(spec.answerMinMs - 20);
      expect(t.answer.chunks * t.answer.intervalMs).toBeLessThanOrEqual(spec.answerMaxMs + 20);
    }
  });

  it('the same seed gives the same schedule; another seed another', () => {
    const a = poissonArrivals({ ...spec, users: 20, random: seededRandom(7) });
    expect(poissonArrivals({ ...spec, users: 20, random: seededRandom(7) })).toEqual(a);
    expect(poissonArrivals({ ...spec, users: 20, random: seededRandom(8) })).not.toEqual(a);
  });

  it('gaps between one user\'s turns average the mean gap', () => {
    // One user over a long time: the mean of exponential gaps converges on the mean.
    const turns = poissonArrivals({ ...spec, users: 1, durationMs: 20_000 * 5_000, random: seededRandom(3) });
    const meanGap = (turns.at(-1)?.atMs ?? 0) / turns.length;
    expect(meanGap).toBeGreaterThan(19_000);
    expect(meanGap).toBeLessThan(21_000);
  });

  it('refuses a plan of absurd size', () => {
    expect(() => poissonArrivals({ ...spec, users: 10_000_000, random: seededRandom(1) })).toThrow(/plans more than/);
  });
});

describe('peakConcurrency', () => {
  it('ramped 60 s answers over 10 s: all are open at once', () => {
    expect(peakConcurrency(rampedArrivals(1000, 10_000, LONG))).toBe(1000);
  });

  it('answers that end before the next starts never overlap', () => {
    const short = { chunks: 1, firstTokenMs: 100, intervalMs: 0 };
    expect(peakConcurrency(rampedArrivals(10, 10_000, short))).toBe(1);
  });
});
