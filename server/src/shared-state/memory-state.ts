import { EventEmitter } from 'node:events';
import { acquireBreaker, closedBreaker, recordBreaker, type BreakerDecision, type BreakerOutcome, type BreakerSettings, type BreakerSnapshot } from './breaker.js';
import { MAX_EVENTS_PER_TURN, type SharedState, type TurnEvent, type Unsubscribe } from './shared-state.js';

interface Expiring<T> {
  value: T;
  expiresAt: number;
}

/** In-process SharedState for the embedded single-node default and for tests. */
export class MemoryState implements SharedState {
  readonly kind = 'memory' as const;
  private readonly values = new Map<string, Expiring<string>>();
  private readonly counters = new Map<string, Expiring<number>>();
  private readonly buffers = new Map<string, Expiring<TurnEvent[]>>();
  private readonly breakers = new Map<string, BreakerSnapshot>();
  private readonly bus = new EventEmitter();
  private readonly sweeper: NodeJS.Timeout;

  constructor() {
    this.bus.setMaxListeners(0);
    this.sweeper = setInterval(() => this.sweep(), 30_000);
    this.sweeper.unref();
  }

  hit(key: string, windowSeconds: number, by = 1): Promise<number> {
    const now = Date.now();
    const current = this.counters.get(key);
    if (!current || current.expiresAt <= now) {
      this.counters.set(key, { value: by, expiresAt: now + windowSeconds * 1000 });
      return Promise.resolve(by);
    }
    current.value += by;
    return Promise.resolve(current.value);
  }

  get(key: string): Promise<string | null> {
    const entry = this.values.get(key);
    if (!entry || entry.expiresAt <= Date.now()) return Promise.resolve(null);
    return Promise.resolve(entry.value);
  }

  set(key: string, value: string, ttlSeconds: number): Promise<void> {
    this.values.set(key, { value, expiresAt: Date.now() + ttlSeconds * 1000 });
    return Promise.resolve();
  }

  del(key: string): Promise<void> {
    this.values.delete(key);
    this.counters.delete(key);
    return Promise.resolve();
  }

  publish(channel: string, message: string): Promise<void> {
    // Deliver asynchronously, as Redis would.
    setImmediate(() => this.bus.emit(channel, message));
    return Promise.resolve();
  }

  subscribe(channel: string, onMessage: (message: string) => void): Promise<Unsubscribe> {
    this.bus.on(channel, onMessage);
    return Promise.resolve(() => {
      this.bus.off(channel, onMessage);
      return Promise.resolve();
    });
  }

  appendEvents(turnId: string, events: readonly TurnEvent[], ttlSeconds: number, refreshTtl = true): Promise<void> {
    const expiresAt = Date.now() + ttlSeconds * 1000;
    let entry = this.buffers.get(turnId);
    if (!entry) {
      entry = { value: [], expiresAt };
      this.buffers.set(turnId, entry);
    }
    if (refreshTtl) entry.expiresAt = expiresAt;
    for (const e of events) entry.value.push({ id: e.id, event: e.event, data: e.data });
    if (entry.value.length > MAX_EVENTS_PER_TURN) entry.value.splice(0, entry.value.length - MAX_EVENTS_PER_TURN);
    return Promise.resolve();
  }

  readEvents(turnId: string, afterId: number): Promise<TurnEvent[]> {
    const entry = this.buffers.get(turnId);
    if (!entry || entry.expiresAt <= Date.now()) return Promise.resolve([]);
    return Promise.resolve(entry.value.filter((e) => e.id > afterId));
  }

  breakerAcquire(endpointId: string, nowMs: number, probeLeaseMs: number): Promise<{ decision: BreakerDecision; snapshot: BreakerSnapshot }> {
    const s = this.breakers.get(endpointId) ?? closedBreaker();
    const decision = acquireBreaker(s, nowMs, probeLeaseMs);
    if (s.state !== 'closed' || this.breakers.has(endpointId)) this.breakers.set(endpointId, s);
    return Promise.resolve({ decision, snapshot: { ...s } });
  }

  breakerRecord(endpointId: string, outcome: BreakerOutcome, nowMs: number, settings: BreakerSettings): Promise<BreakerSnapshot> {
    const s = this.breakers.get(endpointId) ?? closedBreaker();
    recordBreaker(s, outcome, nowMs, settings);
    this.breakers.set(endpointId, s);
    return Promise.resolve({ ...s });
  }

  breakerRead(endpointIds: readonly string[]): Promise<BreakerSnapshot[]> {
    return Promise.resolve(endpointIds.map((id) => ({ ...(this.breakers.get(id) ?? closedBreaker()) })));
  }

  ping(): Promise<number> {
    return Promise.resolve(0);
  }

  close(): Promise<void> {
    clearInterval(this.sweeper);
    this.bus.removeAllListeners();
    return Promise.resolve();
  }

  private sweep(): void {
    const now = Date.now();
    for (const map of [this.values, this.counters, this.buffers] as Map<string, Expiring<unknown>>[]) {
      for (const [key, entry] of map) if (entry.expiresAt <= now) map.delete(key);
    }
  }
}
