/**
 * Shared short-lived state: what every instance must see (rate-limit
 * counters, turn event buffers, stop signals, config-change notices).
 * Redis in production; an in-process implementation for a single node.
 */

import type { BreakerDecision, BreakerOutcome, BreakerSettings, BreakerSnapshot } from './breaker.js';
import type { InstanceBeat } from './instance-registry.js';
import type { StopFollowing, TurnFollowHandler } from './turn-follow.js';

export type { InstanceBeat } from './instance-registry.js';
export type { FollowEndReason, StopFollowing, TurnFollowHandler } from './turn-follow.js';

/** One event of a turn as it went to the client; `data` is the JSON text. */
export interface TurnEvent {
  id: number;
  event: string;
  data: string;
}

export type Unsubscribe = () => Promise<void>;

/** Shared state cannot be reached right now (Redis down); thrown at once rather than after reconnect attempts. */
export class SharedStateUnavailable extends Error {
  override readonly name = 'SharedStateUnavailable';
}

/** A fixed-window count of chat turns (a rate limit): each admission adds one. */
export interface TurnCounter {
  key: string;
  windowSeconds: number;
  limit: number;
}

/** A token budget: a turn is admitted while `used < limit`, and then reserves its estimate in it. */
export interface TokenBucket {
  key: string;
  /** The key's lifetime from its first write: until its window ends, plus time for late settlements. */
  ttlSeconds: number;
  limit: number;
}

export interface TurnLimitsRequest {
  counters: readonly TurnCounter[];
  buckets: readonly TokenBucket[];
  /** Tokens reserved in every bucket when the turn is admitted. */
  reserve: number;
  /** Names the reservation (the turn id) so whichever instance finishes the turn can settle it. */
  reservationId: string;
  reservationTtlSeconds: number;
}

export interface TurnLimitsResult {
  /** Each counter's count in its window, this turn included. */
  counts: number[];
  /** Each bucket's tokens (used and reserved) before this turn. */
  used: number[];
  /** Every counter and bucket had room: the counters counted the turn and the buckets hold its reservation. */
  admitted: boolean;
}

export interface SharedState {
  readonly kind: 'memory' | 'redis';
  /** Fixed-window counter: adds `by` to `key` and returns the window's total. */
  hit(key: string, windowSeconds: number, by?: number): Promise<number>;
  get(key: string): Promise<string | null>;
  set(key: string, value: string, ttlSeconds: number): Promise<void>;
  del(key: string): Promise<void>;
  publish(channel: string, message: string): Promise<void>;
  subscribe(channel: string, onMessage: (message: string) => void): Promise<Unsubscribe>;
  /**
   * Appends to a turn's bounded event buffer (ids strictly increasing). The
   * buffer expires `ttlSeconds` after the last append that set `refreshTtl`
   * (default true); a buffer's first append must set it.
   */
  appendEvents(turnId: string, events: readonly TurnEvent[], ttlSeconds: number, refreshTtl?: boolean): Promise<void>;
  /** Events with id > afterId, oldest first. */
  readEvents(turnId: string, afterId: number): Promise<TurnEvent[]>;
  /** Drops a turn's buffer (an answer run again from where it stopped starts a new one, past the old ids). */
  deleteEvents(turnId: string): Promise<void>;
  /**
   * Follows a turn's buffer without polling: the handler gets the events
   * with id > afterId already there, then each append as it lands, in id
   * order and each id once, on whichever instance appended it. The follow
   * ends by itself after the turn's `end` event, when the buffer stays
   * absent (expired or never written), when shared state becomes
   * unreachable, or at close(); the returned function ends it earlier.
   */
  followEvents(turnId: string, afterId: number, handler: TurnFollowHandler): StopFollowing;
  /** Open follows on this instance (diagnostics, tests). */
  readonly followCount: number;
  /** Circuit breakers of upstream endpoints (breaker.ts): may a call go now? Atomic across instances. */
  breakerAcquire(endpointId: string, nowMs: number, probeLeaseMs: number): Promise<{ decision: BreakerDecision; snapshot: BreakerSnapshot }>;
  /** Applies a call's outcome to an endpoint's breaker; returns the new state. */
  breakerRecord(endpointId: string, outcome: BreakerOutcome, nowMs: number, settings: BreakerSettings): Promise<BreakerSnapshot>;
  /** Current breaker states, in the order asked (closed for unknown endpoints). */
  breakerRead(endpointIds: readonly string[]): Promise<BreakerSnapshot[]>;
  /**
   * Admits a chat turn against its rate limits and token budgets in one
   * atomic step (one round trip): counts it in every counter; then, if no
   * counter is over its limit and every bucket has room, reserves `reserve`
   * tokens in every bucket and records the reservation under its id.
   */
  admitTurn(request: TurnLimitsRequest): Promise<TurnLimitsResult>;
  /**
   * Replaces a reservation with the tokens the turn really used, in the
   * buckets it was made in, and forgets it. False when there is none (never
   * made, settled already, expired): then nothing changes, so a turn is
   * settled at most once whichever instance finishes it.
   */
  settleTurn(reservationId: string, tokens: number): Promise<boolean>;
  /** Current values of counters and buckets (0 when absent), in the order asked. */
  readCounters(keys: readonly string[]): Promise<number[]>;
  /**
   * Renews this instance's lease in the registry of live instances and, in
   * the same round trip, takes out of it the instances whose lease ran out
   * (instance-registry.ts). Times are the registry's own clock. After a gap
   * in the registry (no beat by anyone within `judgeWithinMs`), nobody is
   * judged until it has run `rejoinMs` without one.
   */
  beatInstance(instanceId: string, leaseMs: number, judgeWithinMs: number, rejoinMs?: number): Promise<InstanceBeat>;
  /** Whether each instance holds a lease now, in the order asked. */
  instancesAlive(instanceIds: readonly string[], leaseMs: number): Promise<boolean[]>;
  /** Ends an instance's lease at once (it shuts down): the next beat of another instance judges it gone. */
  expireInstance(instanceId: string): Promise<void>;
  /** Records that an instance's answers were taken over, so it learns it at its next beat if it still lives. */
  markInstanceTaken(instanceId: string): Promise<void>;
  /** Round-trip time in ms; throws when unreachable. */
  ping(): Promise<number>;
  close(): Promise<void>;
}

/** Channels used across instances. */
export const Channels = {
  agentsChanged: 'agents-changed',
  usersChanged: 'users-changed',
  stopGeneration: 'stop-generation',
  /** An endpoint's breaker changed state (its id): instances drop their cached copy. */
  breakerChanged: 'breaker-changed',
} as const;

/** Upper bound on events kept per turn. */
export const MAX_EVENTS_PER_TURN = 20_000;
