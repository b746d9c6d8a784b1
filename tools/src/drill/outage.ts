/**
 * How long writes stopped during a drill row: the longest stretch of time,
 * touching the failure, in which no write succeeded. For PostgreSQL the
 * writes are the load's own turns (a turn is written when its client is
 * told so: the `start` event, or a non-streaming answer); for Redis a probe
 * writes every 100 ms through the Sentinels with a client configured as the
 * instances configure theirs. A write that failed and one that hung count
 * alike: both leave a gap.
 */

import { Redis } from 'ioredis';
import type { TurnTrace } from './turn-client.js';

/**
 * The longest gap between successive successes, among the gaps that reach
 * into [from, to]; 0 without one. (Writes that never came back leave no
 * closing success: the row's recovery check catches that.)
 */
export function longestGapMs(successes: readonly number[], from: number, to: number): number {
  return longestGap(successes, from, to).ms;
}

/** The longest gap as `longestGapMs` measures it, with the two successes around it (epoch ms; 0 when none). */
export function longestGap(successes: readonly number[], from: number, to: number): { ms: number; after: number; until: number } {
  const times = [...successes].sort((a, b) => a - b);
  let gap = { ms: 0, after: 0, until: 0 };
  for (let i = 1; i < times.length; i++) {
    const previous = times[i - 1] ?? 0;
    const at = times[i] ?? 0;
    if (at >= from && previous <= to && at - previous > gap.ms) gap = { ms: at - previous, after: previous, until: at };
  }
  return gap;
}

/** When each turn of the load was written (acknowledged to its client). */
export function turnWrites(traces: readonly TurnTrace[]): number[] {
  return traces.flatMap((t) => (t.acknowledgedAt === undefined ? [] : [t.acknowledgedAt]));
}

export interface RedisProbe {
  /** When each probe write succeeded. */
  readonly successes: readonly number[];
  readonly failures: number;
  stop(): Promise<void>;
}

const PROBE_INTERVAL_MS = 100;

/** Where the probe writes: a plain Redis (the small deployment) or the master the Sentinels name (the topology). */
export type RedisProbeTarget = { url: string } | { sentinels: readonly string[]; masterName: string; password: string };

/**
 * Writes to Redis every 100 ms with the instances' client settings
 * (server/src/shared-state: one retry per command, a 2 s connect deadline,
 * and through Sentinel its failover detector and a resend after READONLY),
 * and records when each write succeeded.
 */
export function startRedisProbe(target: RedisProbeTarget): RedisProbe {
  const common = {
    maxRetriesPerRequest: 1,
    connectTimeout: 2_000,
    commandTimeout: 2_000,
    retryStrategy: (times: number) => Math.min(100 * 2 ** Math.min(times, 5), 2_000),
  };
  const client =
    'url' in target
      ? new Redis(target.url, common)
      : new Redis({
          ...common,
          sentinels: target.sentinels.map((s) => ({ host: s.split(':')[0] ?? '127.0.0.1', port: Number(s.split(':')[1]) })),
          name: target.masterName,
          password: target.password,
          failoverDetector: true,
          reconnectOnError: (err: Error) => (err.message.startsWith('READONLY') ? 2 : false),
        });
  client.on('error', () => undefined);
  const successes: number[] = [];
  let failures = 0;
  let stopped = false;
  let n = 0;
  const loop = (async () => {
    while (!stopped) {
      const started = Date.now();
      try {
        await client.set('llmchat-drill:probe', String(++n), 'PX', 60_000);
        successes.push(Date.now());
      } catch {
        failures++;
      }
      await new Promise((resolve) => setTimeout(resolve, Math.max(0, PROBE_INTERVAL_MS - (Date.now() - started))));
    }
  })();
  return {
    successes,
    get failures() {
      return failures;
    },
    async stop() {
      stopped = true;
      await loop;
      client.disconnect();
    },
  };
}
