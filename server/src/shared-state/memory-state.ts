import { EventEmitter } from 'node:events';
import { acquireBreaker, closedBreaker, recordBreaker, type BreakerDecision, type BreakerOutcome, type BreakerSettings, type BreakerSnapshot } from './breaker.js';
import { MemoryInstanceRegistry, type InstanceBeat } from './instance-registry.js';
import { MAX_EVENTS_PER_TURN, type SharedState, type TurnEvent, type TurnLimitsRequest, type TurnLimitsResult, type Unsubscribe } from './shared-state.js';
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
  private readonly instances = new MemoryInstanceRegistry();
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

  private counterValue(key: string, now: number): number {
    const entry = this.counters.get(key);
    return entry && entry.expiresAt > now ? entry.value : 0;
  }

  /** Synchronous, so atomic: no other turn's admission can interleave. */
  admitTurn(request: TurnLimitsRequest): Promise<TurnLimitsResult> {
    const now = Date.now();
    let admitted = true;
    const counts = request.counters.map((c) => {
      const current = this.counters.get(c.key);
      let n: number;
      if (!current || current.expiresAt <= now) {
        this.counters.set(c.key, { value: 1, expiresAt: now + c.windowSeconds * 1000 });
        n = 1;
      } else {
        n = ++current.value;
      }
      if (n > c.limit) admitted = false;
      return n;
    });
    const used = request.buckets.map((b) => {
      const n = this.counterValue(b.key, now);
      if (n >= b.limit) admitted = false;
      return n;
    });
    if (admitted && request.buckets.length > 0) {
      for (const b of request.buckets) {
        const current = this.counters.get(b.key);
        if (!current || current.expiresAt <= now) this.counters.set(b.key, { value: request.reserve, expiresAt: now + b.ttlSeconds * 1000 });
        else current.value += request.reserve;
      }
      const record = JSON.stringify({ keys: request.buckets.map((b) => b.key), reserved: request.reserve });
      this.values.set(`reservation:${request.reservationId}`, { value: record, expiresAt: now + request.reservationTtlSeconds * 1000 });
    }
    return Promise.resolve({ counts, used, admitted });
  }

  settleTurn(reservationId: string, tokens: number): Promise<boolean> {
    const now = Date.now();
    const key = `reservation:${reservationId}`;
    const entry = this.values.get(key);
    this.values.delete(key);
    if (!entry || entry.expiresAt <= now) return Promise.resolve(false);
    const record = JSON.parse(entry.value) as { keys: string[]; reserved: number };
    const delta = tokens - record.reserved;
    for (const k of record.keys) {
      const current = this.counters.get(k);
      if (current && current.expiresAt > now) current.value += delta;
    }
    return Promise.resolve(true);
  }

  readCounters(keys: readonly string[]): Promise<number[]> {
    const now = Date.now();
    return Promise.resolve(keys.map((k) => this.counterValue(k, now)));
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

  deleteEvents(turnId: string): Promise<void> {
    this.buffers.delete(turnId);
    return Promise.resolve();
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

  beatInstance(instanceId: string, leaseMs: number, judgeWithinMs: number, rejoinMs = 0): Promise<InstanceBeat> {
    return Promise.resolve(this.instances.beat(instanceId, leaseMs, judgeWithinMs, rejoinMs));
  }

  instancesAlive(instanceIds: readonly string[], leaseMs: number): Promise<boolean[]> {
    return Promise.resolve(this.instances.alive(instanceIds, leaseMs));
  }

  expireInstance(instanceId: string): Promise<void> {
    this.instances.expire(instanceId);
    return Promise.resolve();
  }

  markInstanceTaken(instanceId: string): Promise<void> {
    this.instances.markTaken(instanceId);
    return Promise.resolve();
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
