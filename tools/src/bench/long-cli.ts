/** The bench's flags for the long-answer and open-loop levels, and `--server-env`. */

import type { LongBenchOptions } from './long-bench.js';

/** Flags whose value may be left out, and the value they then take. */
export const OPTIONAL_VALUES: Record<string, string> = { '--long': '1000,5000,10000', '--open-loop': '1000' };

/** Options for node:util's parseArgs. */
export const LONG_OPTIONS = {
  long: { type: 'string' },
  ramp: { type: 'string', default: '10' },
  burst: { type: 'string' },
  'answer-chunks': { type: 'string', default: '30' },
  'answer-interval': { type: 'string', default: '2000' },
  'long-drain': { type: 'string', default: '60' },
  'open-loop': { type: 'string' },
  'open-loop-duration': { type: 'string', default: '60' },
  think: { type: 'string', default: '20' },
  'answer-range': { type: 'string', default: '10-30' },
  'open-loop-chunks': { type: 'string', default: '20' },
  seed: { type: 'string', default: '1' },
  'upstream-tls': { type: 'boolean', default: false },
  'server-env': { type: 'string', multiple: true },
  'server-memory-limit': { type: 'string' },
} as const;

export const LONG_USAGE = [
  'long answers (instead of the short levels; each level on a fresh server, database and Redis prefix):',
  '  --long [1000,5000,10000]  concurrent long turns per level, arrivals ramped',
  '  --ramp 10                 seconds over which a level\'s arrivals are spread',
  '  --burst N                 also run N turns all at once (default: the first --long level; 0: no burst)',
  '  --answer-chunks 30        chunks per long answer',
  '  --answer-interval 2000    ms to the first chunk and between chunks (30 × 2000: a 60 s answer)',
  '  --long-drain 60           seconds a level waits for its turns beyond the answer\'s own length',
  '  --open-loop [1000]        users of the open-loop level (Poisson arrivals)',
  '  --open-loop-duration 60   seconds during which turns start (then the running ones finish)',
  '  --think 20                mean seconds between two turns of one user',
  '  --answer-range 10-30      seconds an open-loop answer lasts (uniform)',
  '  --open-loop-chunks 20     chunks per open-loop answer',
  '  --seed 1                  seed of the open-loop schedule (same seed, same arrivals)',
  '  --upstream-tls            serve the mock over HTTPS (HTTP/2 by ALPN, a self-signed certificate the server trusts',
  '                            through UPSTREAM_CA_FILE), as hosted providers are reached: a few upstream sockets',
  '                            instead of one per stream',
  'any mode:',
  '  --server-env KEY=VALUE    set a server environment variable (repeatable), e.g. UPSTREAM_CONNECTIONS=2000',
  '  --server-memory-limit 1G  run the server in a memory cgroup of this size, as in a container with a limit (Node sizes',
  '                            V8\'s heap from it, the young generation too); needs root or a delegated cgroup',
];

/** Gives `--long` and `--open-loop` their default value when they stand without one (last, or before another flag). */
export function withOptionalValues(argv: readonly string[], defaults: Record<string, string> = OPTIONAL_VALUES): string[] {
  const out: string[] = [];
  argv.forEach((arg, i) => {
    out.push(arg);
    const fallback = defaults[arg];
    const next = argv[i + 1];
    if (fallback !== undefined && (next === undefined || next.startsWith('--'))) out.push(fallback);
  });
  return out;
}

/** `KEY=VALUE` pairs into an environment; later pairs win. */
export function parseServerEnv(pairs: readonly string[] | undefined): Record<string, string> {
  const env: Record<string, string> = {};
  for (const pair of pairs ?? []) {
    const eq = pair.indexOf('=');
    const key = eq === -1 ? pair : pair.slice(0, eq);
    if (eq === -1 || !/^[A-Za-z_][A-Za-z0-9_]*$/.test(key)) throw new Error(`--server-env needs KEY=VALUE, got "${pair}"`);
    env[key] = pair.slice(eq + 1);
  }
  return env;
}

function number(name: string, raw: string, { integer, min, max }: { integer: boolean; min: number; max: number }): number {
  const value = Number(raw);
  if (raw.trim() === '' || !Number.isFinite(value) || (integer && !Number.isInteger(value)) || value < min || value > max) {
    throw new Error(`--${name} must be ${integer ? 'an integer' : 'a number'} within ${min}..${max}, got "${raw}"`);
  }
  return value;
}

export type LongCliValues = {
  long?: string | undefined;
  ramp: string;
  burst?: string | undefined;
  'answer-chunks': string;
  'answer-interval': string;
  'long-drain': string;
  'open-loop'?: string | undefined;
  'open-loop-duration': string;
  think: string;
  'answer-range': string;
  'open-loop-chunks': string;
  seed: string;
  'upstream-tls'?: boolean | undefined;
};

/** The long-answer run the flags ask for; undefined when neither `--long` nor `--open-loop` is given. */
export function parseLongCli(values: LongCliValues, common: Pick<LongBenchOptions, 'embedded' | 'workers' | 'serverEnv' | 'serverMemoryLimit'>): LongBenchOptions | undefined {
  if (values.long === undefined && values['open-loop'] === undefined) return undefined;
  const levels = values.long === undefined ? [] : values.long.split(',').map((s) => number('long', s, { integer: true, min: 1, max: 50_000 }));
  const burstRaw = values.burst === undefined ? levels[0] : number('burst', values.burst, { integer: true, min: 0, max: 50_000 });
  const range = /^\s*([\d.]+)\s*-\s*([\d.]+)\s*$/.exec(values['answer-range']);
  if (range === null) throw new Error(`--answer-range must look like 10-30, got "${values['answer-range']}"`);
  const answerMinS = number('answer-range', range[1] ?? '', { integer: false, min: 0.1, max: 3600 });
  const answerMaxS = number('answer-range', range[2] ?? '', { integer: false, min: answerMinS, max: 3600 });
  const intervalMs = number('answer-interval', values['answer-interval'], { integer: true, min: 0, max: 600_000 });
  return {
    levels,
    rampS: number('ramp', values.ramp, { integer: false, min: 0, max: 3600 }),
    burst: burstRaw === undefined || burstRaw === 0 ? undefined : burstRaw,
    answer: { chunks: number('answer-chunks', values['answer-chunks'], { integer: true, min: 1, max: 10_000 }), firstTokenMs: intervalMs, intervalMs },
    drainS: number('long-drain', values['long-drain'], { integer: false, min: 0, max: 3600 }),
    openLoop:
      values['open-loop'] === undefined ? undefined : (
        {
          users: number('open-loop', values['open-loop'], { integer: true, min: 1, max: 100_000 }),
          durationS: number('open-loop-duration', values['open-loop-duration'], { integer: false, min: 1, max: 3600 }),
          meanGapS: number('think', values.think, { integer: false, min: 0.1, max: 3600 }),
          answerMinS,
          answerMaxS,
          chunks: number('open-loop-chunks', values['open-loop-chunks'], { integer: true, min: 1, max: 10_000 }),
          seed: number('seed', values.seed, { integer: true, min: 0, max: 2 ** 32 - 1 }),
        }
      ),
    upstreamTls: values['upstream-tls'] === true,
    ...common,
  };
}
