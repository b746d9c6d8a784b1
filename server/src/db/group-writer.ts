import { isDatabaseUnavailable } from './unavailable.js';

/**
 * Group commit for hot-path writes. A lone item is written at once; items
 * that arrive while a write is in flight go together in the next one. Under
 * load the database sees one statement for many items, and nobody waits on a
 * timer. If a batch of several fails, each item is tried alone, so one bad
 * item cannot fail the others; but not when the database is unavailable: that
 * is no item's fault, and a batch whose commit was made only locally
 * (UnconfirmedCommitError) would be half-done already, so trying its items
 * again would only hide that from their callers.
 */
/**
 * What a group writer did, for metrics: totals, and the largest batch and
 * longest wait since the last read (`take`). Costs one clock read per batch,
 * none per item: a batch's wait runs from when its first item found the
 * queue empty (or from the previous batch's start, for what was left over).
 */
export class GroupWriterStats {
  batches = 0;
  items = 0;
  private maxBatch = 0;
  private maxWaitMs = 0;

  constructor(readonly writer: string) {}

  record(size: number, waitMs: number): void {
    this.batches++;
    this.items += size;
    if (size > this.maxBatch) this.maxBatch = size;
    if (waitMs > this.maxWaitMs) this.maxWaitMs = waitMs;
  }

  /** The figures, the maxima starting over. */
  take(): { writer: string; batches: number; items: number; maxBatch: number; maxWaitSeconds: number } {
    const out = { writer: this.writer, batches: this.batches, items: this.items, maxBatch: this.maxBatch, maxWaitSeconds: this.maxWaitMs / 1000 };
    this.maxBatch = 0;
    this.maxWaitMs = 0;
    return out;
  }
}

export function createGroupWriter<I, O>(write: (items: I[]) => Promise<O[]>, maxBatch: number, stats?: GroupWriterStats): (item: I) => Promise<O> {
  interface Pending {
    item: I;
    resolve: (out: O) => void;
    reject: (err: unknown) => void;
  }
  let queue: Pending[] = [];
  let writing = false;
  /** When the oldest queued item was queued (performance.now()). */
  let queuedSince = 0;

  async function settle(batch: Pending[]): Promise<void> {
    try {
      const results = await write(batch.map((p) => p.item));
      batch.forEach((p, i) => p.resolve(results[i] as O));
    } catch (err) {
      if (batch.length === 1 || isDatabaseUnavailable(err)) {
        for (const one of batch) one.reject(err);
        return;
      }
      for (const one of batch) await settle([one]);
    }
  }

  async function drain(): Promise<void> {
    writing = true;
    while (queue.length > 0) {
      const batch = queue.slice(0, maxBatch);
      queue = queue.slice(batch.length);
      if (stats) {
        const now = performance.now();
        stats.record(batch.length, now - queuedSince);
        queuedSince = now;
      }
      await settle(batch);
    }
    writing = false;
  }

  return (item: I) =>
    new Promise<O>((resolve, reject) => {
      if (stats && queue.length === 0) queuedSince = performance.now();
      queue.push({ item, resolve, reject });
      if (!writing) void drain();
    });
}
