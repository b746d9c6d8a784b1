import type { SharedState } from '../../shared-state/shared-state.js';

/**
 * Endpoints' observed times to first token, for hedging at `'p95'`
 * (hedge.ts). A small histogram per endpoint in shared state, so every
 * instance hedges on what all of them saw: one counter per bucket and
 * five-minute window, kept for two windows (the current one and the last
 * one are read together, so the estimate never starts from nothing at a
 * window's turn). Writing is one counter increment per hedged turn, sent
 * without waiting; reading is one MGET per endpoint at most every
 * `cacheMs` per instance. Only agents that hedge at `'p95'` write or read.
 */
export interface FirstTokenStats {
  /**
   * A call's first token came `ms` after it started. `censored`: it had
   * none yet when it was cancelled (a lower bound, counted in its bucket).
   */
  observe(endpointId: string, ms: number, censored?: boolean): void;
  /** The endpoint's 95th percentile (a bucket's upper bound), or undefined with fewer than `minSamples` observations or beyond the last bucket. */
  p95(endpointId: string): Promise<number | undefined>;
}

/** Bucket upper bounds in ms; a last, open bucket takes the rest. */
export const FIRST_TOKEN_BUCKETS_MS = [250, 500, 750, 1_000, 1_500, 2_000, 3_000, 4_000, 6_000, 8_000, 12_000, 16_000, 24_000, 32_000, 48_000, 64_000] as const;

const WINDOW_MS = 300_000;

export interface FirstTokenStatsOptions {
  state: SharedState;
  now?: () => number;
  /** How long a read histogram is used before it is read again. */
  cacheMs?: number;
  /** Observations needed before a p95 is trusted. */
  minSamples?: number;
  /** Most endpoints whose histogram this instance keeps in memory. */
  maxCached?: number;
}

function bucketOf(ms: number): number {
  const i = FIRST_TOKEN_BUCKETS_MS.findIndex((bound) => ms <= bound);
  return i === -1 ? FIRST_TOKEN_BUCKETS_MS.length : i;
}

/** The upper bound of the bucket that holds the 95th percentile of `counts`, or undefined. */
export function p95Of(counts: readonly number[], minSamples: number): number | undefined {
  const total = counts.reduce((a, b) => a + b, 0);
  if (total < minSamples || total === 0) return undefined;
  const rank = Math.ceil(total * 0.95);
  let seen = 0;
  for (let i = 0; i < counts.length; i++) {
    seen += counts[i] ?? 0;
    if (seen >= rank) return FIRST_TOKEN_BUCKETS_MS[i];
  }
  return undefined;
}

export function createFirstTokenStats(options: FirstTokenStatsOptions): FirstTokenStats {
  const { state } = options;
  const now = options.now ?? Date.now;
  const cacheMs = options.cacheMs ?? 5_000;
  const minSamples = options.minSamples ?? 20;
  const maxCached = options.maxCached ?? 10_000;
  const cache = new Map<string, { p95: number | undefined; readAt: number }>();
  const buckets = FIRST_TOKEN_BUCKETS_MS.length + 1;
  const key = (endpointId: string, window: number, bucket: number) => `ttft:${endpointId}:${window}:${bucket}`;

  return {
    observe(endpointId, ms) {
      const window = Math.floor(now() / WINDOW_MS);
      // Kept two windows: the next window still reads this one.
      state.hit(key(endpointId, window, bucketOf(ms)), Math.ceil((2 * WINDOW_MS) / 1000)).catch(() => undefined);
    },

    async p95(endpointId) {
      const cached = cache.get(endpointId);
      if (cached && now() - cached.readAt < cacheMs) return cached.p95;
      const window = Math.floor(now() / WINDOW_MS);
      const keys: string[] = [];
      for (const w of [window, window - 1]) for (let b = 0; b < buckets; b++) keys.push(key(endpointId, w, b));
      let p95: number | undefined;
      try {
        const values = await state.readCounters(keys);
        const counts = Array.from({ length: buckets }, (_, b) => (values[b] ?? 0) + (values[buckets + b] ?? 0));
        p95 = p95Of(counts, minSamples);
      } catch {
        // Shared state unreachable: no estimate, so no hedge this turn (the call runs as without hedging).
        p95 = cached?.p95;
      }
      if (cache.size >= maxCached && !cache.has(endpointId)) cache.clear();
      cache.set(endpointId, { p95, readAt: now() });
      return p95;
    },
  };
}
