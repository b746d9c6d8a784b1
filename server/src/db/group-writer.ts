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
export function createGroupWriter<I, O>(write: (items: I[]) => Promise<O[]>, maxBatch: number): (item: I) => Promise<O> {
  interface Pending {
    item: I;
    resolve: (out: O) => void;
    reject: (err: unknown) => void;
  }
  let queue: Pending[] = [];
  let writing = false;

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
      await settle(batch);
    }
    writing = false;
  }

  return (item: I) =>
    new Promise<O>((resolve, reject) => {
      queue.push({ item, resolve, reject });
      if (!writing) void drain();
    });
}
