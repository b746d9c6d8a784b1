import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import crypto from 'node:crypto';
import { MemoryState } from '../../shared-state/memory-state.js';
import { RedisState } from '../../shared-state/redis-state.js';
import type { SharedState } from '../../shared-state/shared-state.js';
import { backendNames, TEST_REDIS_URL } from '../../test/backends.js';
import { createFirstTokenStats, p95Of, FIRST_TOKEN_BUCKETS_MS } from './first-token-stats.js';

describe('p95Of', () => {
  const counts = (entries: Record<number, number>) => Array.from({ length: FIRST_TOKEN_BUCKETS_MS.length + 1 }, (_, i) => entries[i] ?? 0);

  it('is the upper bound of the bucket that holds the 95th percentile', () => {
    // 19 calls within 500 ms, one of 3 s: the 95th percentile (rank 19 of 20) is within 500 ms.
    expect(p95Of(counts({ 1: 19, 6: 1 }), 20)).toBe(500);
    // 18 and 2: rank 19 lands in the slow bucket.
    expect(p95Of(counts({ 1: 18, 6: 2 }), 20)).toBe(3_000);
  });

  it('is undefined with too few observations, or beyond the last bucket', () => {
    expect(p95Of(counts({ 1: 19 }), 20)).toBeUndefined();
    expect(p95Of(counts({ [FIRST_TOKEN_BUCKETS_MS.length]: 30 }), 20)).toBeUndefined();
  });
});

describe.each(await backendNames())('first-token stats in shared state on %s', (backendName) => {
  let state: SharedState;

  beforeAll(() => {
    state = backendName === 'postgres+redis' ? new RedisState(TEST_REDIS_URL, `llmchat-test:${crypto.randomUUID()}:`) : new MemoryState();
  });

  afterAll(async () => {
    await state?.close();
  });

  it('every instance reads what the others observed, once the read cache expires', async () => {
    let clock = 1_000_000_000;
    const writer = createFirstTokenStats({ state: state, now: () => clock, minSamples: 20 });
    const reader = createFirstTokenStats({ state: state, now: () => clock, minSamples: 20, cacheMs: 1_000 });
    const id = `endpoint-${backendName}`;
    expect(await reader.p95(id)).toBeUndefined();
    for (let i = 0; i < 19; i++) writer.observe(id, 400);
    writer.observe(id, 2_500);
    // Cached: the read a moment ago still stands.
    expect(await reader.p95(id)).toBeUndefined();
    clock += 1_001;
    await expect.poll(() => reader.p95(id).finally(() => (clock += 1_001))).toBe(500);
    // The next window still counts the last one's observations.
    clock += 300_000;
    expect(await reader.p95(id)).toBe(500);
    // Two windows on, they are gone.
    clock += 600_000;
    expect(await reader.p95(id)).toBeUndefined();
  });
});
