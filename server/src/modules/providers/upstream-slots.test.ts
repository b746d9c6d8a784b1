import { describe, expect, it } from 'vitest';
import { UpstreamError } from './upstream-error.js';
import { Admission, OriginSlots } from './upstream-slots.js';

const settledState = async (promise: Promise<unknown>): Promise<'pending' | 'resolved' | 'rejected'> => {
  let state: 'pending' | 'resolved' | 'rejected' = 'pending';
  promise.then(
    () => (state = 'resolved'),
    () => (state = 'rejected'),
  );
  await new Promise((resolve) => setImmediate(resolve));
  return state;
};

describe('slots to one upstream origin', () => {
  it('hands out free slots at once, then queues callers and grants freed slots in arrival order', async () => {
    const slots = new OriginSlots('http://u', 2);
    expect(slots.tryTake()).toBe(true);
    expect(slots.tryTake()).toBe(true);
    expect(slots.tryTake()).toBe(false);
    const order: string[] = [];
    const first = slots.take(60_000, undefined).then(() => order.push('first'));
    const second = slots.take(60_000, undefined).then(() => order.push('second'));
    expect(slots.waiting).toBe(2);
    // Nobody jumps the queue while others wait, even for a slot that is free for an instant.
    slots.give();
    expect(slots.tryTake()).toBe(false);
    await first;
    slots.give();
    await second;
    expect(order).toEqual(['first', 'second']);
    expect(slots.used).toBe(2);
    expect(slots.waiting).toBe(0);
    slots.give();
    slots.give();
    expect(slots.used).toBe(0);
  });

  it('fails a caller that waited past the bound with `busy`, which no retry or breaker counts', async () => {
    const slots = new OriginSlots('http://u', 1);
    expect(slots.tryTake()).toBe(true);
    const err = await slots.take(20, undefined).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(UpstreamError);
    expect(err).toMatchObject({ kind: 'busy', category: 'busy', retryable: false });
    expect(slots.waiting).toBe(0);
    // The slot it never got goes to nobody: the holder gives it back, and it is free.
    slots.give();
    expect(slots.used).toBe(0);
    expect(slots.tryTake()).toBe(true);
  });

  it('drops a caller whose signal aborts while it waits; the next one in line gets the slot', async () => {
    const slots = new OriginSlots('http://u', 1);
    slots.tryTake();
    const abort = new AbortController();
    const leaving = slots.take(60_000, abort.signal);
    const staying = slots.take(60_000, undefined);
    abort.abort();
    await expect(leaving).rejects.toMatchObject({ kind: 'aborted' });
    slots.give();
    expect(await settledState(staying)).toBe('resolved');
    expect(slots.used).toBe(1);
  });

  it('fails every waiter when the pools close', async () => {
    const slots = new OriginSlots('http://u', 1);
    slots.tryTake();
    const waiting = slots.take(60_000, undefined);
    slots.failAll(new UpstreamError('aborted', 'closed', { retryable: false }));
    await expect(waiting).rejects.toMatchObject({ kind: 'aborted' });
  });
});

describe("a turn's admission", () => {
  it('holds its slot until released once, and is found by the signal it was bound to until then', () => {
    const slots = new OriginSlots('http://u', 1);
    const bySignal = new WeakMap<AbortSignal, Admission>();
    expect(slots.tryTake()).toBe(true);
    const admission = new Admission(slots, bySignal);
    const signal = new AbortController().signal;
    admission.bind(signal);
    expect(bySignal.get(signal)).toBe(admission);
    expect(slots.tryTake()).toBe(false);
    admission.release();
    admission.release();
    expect(bySignal.has(signal)).toBe(false);
    expect(slots.used).toBe(0);
  });
});
