import { describe, expect, it } from 'vitest';
import { createGroupWriter, GroupWriterStats } from './group-writer.js';

describe('group writer figures (metrics)', () => {
  it('counts batches and items, and keeps the largest batch and the longest wait until they are taken', async () => {
    let release!: () => void;
    const gate = new Promise<void>((resolve) => (release = resolve));
    const stats = new GroupWriterStats('test');
    const write = createGroupWriter(async (items: number[]) => {
      if (items[0] === 0) await gate;
      return items.map((i) => i * 2);
    }, 10, stats);
    const first = write(0);
    // Queued while the first write is in flight: they go together in the next one.
    const rest = [1, 2, 3, 4].map((i) => write(i));
    await new Promise((resolve) => setTimeout(resolve, 5));
    release();
    expect(await Promise.all([first, ...rest])).toEqual([0, 2, 4, 6, 8]);
    const taken = stats.take();
    expect(taken).toMatchObject({ writer: 'test', batches: 2, items: 5, maxBatch: 4 });
    // The second batch waited for the first write (held open for a few ms).
    expect(taken.maxWaitSeconds).toBeGreaterThan(0);
    expect(stats.take()).toMatchObject({ batches: 2, items: 5, maxBatch: 0, maxWaitSeconds: 0 });
  });
});
