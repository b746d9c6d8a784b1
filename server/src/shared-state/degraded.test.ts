import pino from 'pino';
import { describe, expect, it } from 'vitest';
import { DegradedNotice } from './degraded.js';

/** A logger whose lines the test reads. */
function recordingLogger() {
  const lines: { level: number; msg: string; failuresSinceFirst?: number }[] = [];
  const logger = pino({ level: 'info' }, { write: (line: string) => void lines.push(JSON.parse(line) as (typeof lines)[number]) });
  return { logger, lines };
}

describe('a degraded notice', () => {
  it('logs one warning when failures start and one line when they end, counting those in between', () => {
    const { logger, lines } = recordingLogger();
    let clock = 1_000;
    const notice = new DegradedNotice(logger, 'saving partial answers', () => clock, 'the database');
    notice.succeeded();
    for (let i = 0; i < 1000; i++) notice.failed(new Error('connect EMFILE'));
    expect(notice.degraded).toBe(true);
    clock += 5_000;
    notice.succeeded();
    notice.succeeded();
    expect(lines.map((l) => [l.level, l.msg])).toEqual([
      [40, 'the database unavailable: saving partial answers degraded until it returns'],
      [30, 'the database back: saving partial answers restored'],
    ]);
    expect(lines[1]?.failuresSinceFirst).toBe(999);
    expect(notice.degraded).toBe(false);
  });

  it('names shared state when no dependency is given', () => {
    const { logger, lines } = recordingLogger();
    new DegradedNotice(logger, 'rate limits').failed(new Error('down'));
    expect(lines.map((l) => l.msg)).toEqual(['shared state unavailable: rate limits degraded until it returns']);
  });
});
