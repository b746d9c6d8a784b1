import { parseArgs } from 'node:util';
import { describe, expect, it } from 'vitest';
import { LONG_OPTIONS, parseLongCli, parseServerEnv, withOptionalValues } from './long-cli.js';

const common = { embedded: false, workers: 1, serverEnv: {} };
const parse = (argv: string[]) => parseLongCli(parseArgs({ args: withOptionalValues(argv), options: LONG_OPTIONS }).values, common);

describe('withOptionalValues', () => {
  it('gives --long and --open-loop their defaults when they stand alone, last or before another flag', () => {
    expect(withOptionalValues(['--long'])).toEqual(['--long', '1000,5000,10000']);
    expect(withOptionalValues(['--long', '--ramp', '5', '--open-loop'])).toEqual(['--long', '1000,5000,10000', '--ramp', '5', '--open-loop', '1000']);
  });

  it('keeps a value that is given', () => {
    expect(withOptionalValues(['--long', '2000', '--open-loop', '50'])).toEqual(['--long', '2000', '--open-loop', '50']);
  });
});

describe('parseServerEnv', () => {
  it('reads KEY=VALUE pairs, values may hold = signs, later pairs win', () => {
    expect(parseServerEnv(['UPSTREAM_CONNECTIONS=2000', 'X=a=b', 'UPSTREAM_CONNECTIONS=10000'])).toEqual({ UPSTREAM_CONNECTIONS: '10000', X: 'a=b' });
    expect(parseServerEnv(undefined)).toEqual({});
  });

  it('refuses a pair without = or with a bad name', () => {
    expect(() => parseServerEnv(['UPSTREAM_CONNECTIONS'])).toThrow(/KEY=VALUE/);
    expect(() => parseServerEnv(['1X=2'])).toThrow(/KEY=VALUE/);
  });
});

describe('parseLongCli', () => {
  it('without --long or --open-loop there is no long run', () => {
    expect(parse([])).toBeUndefined();
  });

  it('--long alone: 1000, 5000 and 10000 ramped over 10 s, a burst at 1000, 60 s answers of 30 chunks 2 s apart', () => {
    expect(parse(['--long'])).toMatchObject({
      levels: [1000, 5000, 10_000],
      rampS: 10,
      burst: 1000,
      answer: { chunks: 30, firstTokenMs: 2000, intervalMs: 2000 },
      openLoop: undefined,
    });
  });

  it('--upstream-tls asks for the mock over HTTPS (HTTP/2); plain HTTP/1.1 without it', () => {
    expect(parse(['--long', '2000', '--upstream-tls'])?.upstreamTls).toBe(true);
    expect(parse(['--long', '2000'])?.upstreamTls).toBe(false);
  });

  it('--burst 0 runs no burst; --burst N runs it at N', () => {
    expect(parse(['--long', '5000', '--burst', '0'])?.burst).toBeUndefined();
    expect(parse(['--long', '1000', '--burst', '5000'])?.burst).toBe(5000);
  });

  it('--open-loop alone: 1000 users every 20 s for 60 s, answers of 10 to 30 s, no long level', () => {
    expect(parse(['--open-loop'])).toMatchObject({
      levels: [],
      burst: undefined,
      openLoop: { users: 1000, durationS: 60, meanGapS: 20, answerMinS: 10, answerMaxS: 30, chunks: 20, seed: 1 },
    });
  });

  it('refuses values out of range', () => {
    expect(() => parse(['--long', '0'])).toThrow(/--long/);
    expect(() => parse(['--open-loop', '--answer-range', '30-10'])).toThrow(/--answer-range/);
    expect(() => parse(['--open-loop', '--answer-range', 'ten'])).toThrow(/--answer-range/);
  });
});
