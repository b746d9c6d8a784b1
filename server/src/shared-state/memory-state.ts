import { EventEmitter } from 'node:events';
import { acquireBreaker, closedBreaker, recordBreaker, type BreakerDecision, type BreakerOutcome, type BreakerSettings, type BreakerSnapshot } from './breaker.js';
import { MAX_EVENTS_PER_TURN, type SharedState, type TurnEvent, type Unsubscribe } from './shared-state.js';
import { DEFAULT_FOLLOW_TIMINGS, TurnFollows, type FollowTimings, type StopFollowing, type TurnFollowHandler } from './turn-follow.js';

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
  private readonly follows = new TurnFollows();
  private readonly followTimings: FollowTimings;
  private absentWatch: NodeJS.Timeout | undefined;

  constructor(options: { follow?: Partial<FollowTimings> } = {}) {
    this.followTimings = { ...DEFAULT_FOLLOW_TIMINGS, ...options.follow };
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
    const from = entry.value.length;
    for (const e of events) entry.value.push({ id: e.id, event: e.event, data: e.data });
    // Waiting follows hear of the append after it returns, as they would from Redis; an unfollowed turn (the usual case) pays nothing.
    if (this.follows.has(turnId)) {
      const added = entry.value.slice(from);
      queueMicrotask(() => this.follows.deliver(turnId, added));
    }
    if (entry.value.length > MAX_EVENTS_PER_TURN) entry.value.splice(0, entry.value.length - MAX_EVENTS_PER_TURN);
    return Promise.resolve();
  }

  readEvents(turnId: string, afterId: number): Promise<TurnEvent[]> {
    return Promise.resolve((this.liveBuffer(turnId) ?? []).filter((e) => e.id > afterId));
  }

  /** A waiter per follow, told on each append; absent buffers are looked for on a timer while anything is followed. */
  followEvents(turnId: string, afterId: number, handler: TurnFollowHandler): StopFollowing {
    const follow = this.follows.add(turnId, afterId, handler);
    // What is buffered already goes first; appends until then wait for it (follow.caughtUp), so none is skipped.
    queueMicrotask(() => this.follows.deliverTo(follow, this.liveBuffer(turnId) ?? []));
    this.absentWatch ??= setInterval(() => this.closeAbsent(), this.followTimings.absentAfterMs);
    this.absentWatch.unref();
    return () => this.follows.remove(follow);
  }

  get followCount(): number {
    return this.follows.size;
  }

  private liveBuffer(turnId: string): TurnEvent[] | undefined {
    const entry = this.buffers.get(turnId);
    return entry && entry.expiresAt > Date.now() ? entry.value : undefined;
  }

  private closeAbsent(): void {
    for (const turnId of this.follows.idleSince(Date.now() - this.followTimings.absentAfterMs)) {
      if (!this.liveBuffer(turnId)) this.follows.closeTurn(turnId, 'absent');
    }
    if (this.follows.size === 0) {
      clearInterval(this.absentWatch);
      this.absentWatch = undefined;
    }
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
    clearInterval(this.absentWatch);
    this.absentWatch = undefined;
    this.follows.closeAll('closed');
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
