import { UpstreamError } from './upstream-error.js';

/**
 * Local queueing for upstream calls. Each upstream origin has a number of
 * slots (UPSTREAM_CONNECTIONS: requests in flight at once; over HTTP/1.1
 * one connection each). A call takes a slot before it is dispatched, so
 * undici's pool never queues it: time spent waiting here is our own, it is
 * bounded by UPSTREAM_QUEUE_TIMEOUT_MS and not by the upstream's deadlines,
 * and running out of it is `busy`, never an upstream failure.
 *
 * A turn takes its slot before it is acknowledged (`admit`): when none
 * frees up in time the turn is refused with 503 UPSTREAM_BUSY and nothing is
 * written. Its calls then use that slot (one at a time: a turn's attempts
 * are sequential), so a turn that was let in never waits here for its first
 * call.
 */

/** A slot waited for longer than the queue's bound. */
export function upstreamBusyError(origin: string, waitedMs: number): UpstreamError {
  return new UpstreamError('busy', `every slot to ${origin} stayed taken for ${waitedMs} ms (UPSTREAM_CONNECTIONS)`, { retryable: false });
}

interface Waiter {
  /** Granted, timed out or aborted: `give()` skips it. */
  done: boolean;
  grant: () => void;
  fail: (err: Error) => void;
}

/** One origin's slots: `used` of `capacity` taken, the rest of the callers wait in arrival order. */
export class OriginSlots {
  private inUse = 0;
  /** FIFO from `head`; entries that left early stay, marked done, until they reach the front. */
  private waiters: Waiter[] = [];
  private head = 0;
  private queued = 0;

  constructor(
    readonly origin: string,
    readonly capacity: number,
  ) {}

  get used(): number {
    return this.inUse;
  }

  get waiting(): number {
    return this.queued;
  }

  /** Takes a slot now if one is free and nobody waits before us. */
  tryTake(): boolean {
    if (this.inUse >= this.capacity || this.queued > 0) return false;
    this.inUse++;
    return true;
  }

  /** Waits (in arrival order) for a slot, at most `timeoutMs`; fails with `busy`, or `aborted` when the signal aborts. */
  take(timeoutMs: number, signal: AbortSignal | undefined): Promise<void> {
    if (this.tryTake()) return Promise.resolve();
    if (signal?.aborted) return Promise.reject(abortedWhileQueued());
    return new Promise<void>((resolve, reject) => {
      const started = performance.now();
      const waiter: Waiter = {
        done: false,
        grant: () => {
          settle();
          resolve();
        },
        fail: (err) => {
          settle();
          reject(err);
        },
      };
      const settle = () => {
        waiter.done = true;
        this.queued--;
        if (this.queued === 0) {
          this.waiters = [];
          this.head = 0;
        }
        clearTimeout(timer);
        signal?.removeEventListener('abort', onAbort);
      };
      const onAbort = () => waiter.fail(abortedWhileQueued());
      const timer = setTimeout(() => waiter.fail(upstreamBusyError(this.origin, Math.round(performance.now() - started))), timeoutMs);
      signal?.addEventListener('abort', onAbort, { once: true });
      this.waiters.push(waiter);
      this.queued++;
    });
  }

  /** Gives a slot back: the longest waiter gets it, else it is free. */
  give(): void {
    while (this.head < this.waiters.length) {
      const waiter = this.waiters[this.head++] as Waiter;
      if (this.head > 1024 && this.head * 2 > this.waiters.length) {
        this.waiters = this.waiters.slice(this.head);
        this.head = 0;
      }
      if (!waiter.done) {
        waiter.grant();
        return;
      }
    }
    this.waiters = [];
    this.head = 0;
    this.inUse = Math.max(0, this.inUse - 1);
  }

  /** Every waiter fails with `err` (the pools are closing). */
  failAll(err: Error): void {
    const waiting = this.waiters.slice(this.head);
    this.waiters = [];
    this.head = 0;
    for (const waiter of waiting) if (!waiter.done) waiter.fail(err);
  }
}

function abortedWhileQueued(): UpstreamError {
  return new UpstreamError('aborted', 'upstream request aborted while queued for a slot', { retryable: false });
}

/**
 * A turn's slot on one origin, held from admission until the turn settles.
 * While no call of the turn uses it, a call made with the turn's signal to
 * that origin takes it instead of queueing.
 */
export class Admission {
  private released = false;
  private signal: AbortSignal | undefined;
  /** A call of the turn holds the slot now. */
  inCall = false;

  constructor(
    readonly slots: OriginSlots,
    private readonly bySignal: WeakMap<AbortSignal, Admission>,
  ) {}

  get origin(): string {
    return this.slots.origin;
  }

  get active(): boolean {
    return !this.released;
  }

  /** Calls that carry `signal` (the turn's) use this slot. */
  bind(signal: AbortSignal): void {
    if (this.released) return;
    this.signal = signal;
    this.bySignal.set(signal, this);
  }

  /** Gives the slot back (idempotent). */
  release(): void {
    if (this.released) return;
    this.released = true;
    if (this.signal !== undefined) this.bySignal.delete(this.signal);
    this.slots.give();
  }
}
