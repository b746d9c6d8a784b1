import type { TurnEvent } from './shared-state.js';

/**
 * Following a turn's event buffer (SharedState.followEvents): the bookkeeping
 * both backends share. MemoryState feeds it from its appends; RedisState
 * from one blocking XREAD per instance over every followed buffer
 * (redis-follower.ts).
 */

/**
 * Why a follow stopped by itself: `end` (the turn's `end` event was
 * delivered), `absent` (the buffer does not exist: expired, never written, or
 * lost), `unavailable` (shared state cannot be reached; the caller should
 * let its client reconnect later), `closed` (the shared state is closing).
 */
export type FollowEndReason = 'end' | 'absent' | 'unavailable' | 'closed';

export interface TurnFollowHandler {
  /** Events after the last one delivered (after `afterId` at first), in id order; never an id twice. */
  onEvents(events: readonly TurnEvent[]): void;
  /** The follow stopped by itself; not called after the caller's own stop. */
  onClose(reason: FollowEndReason): void;
}

/** Stops a follow: no callback comes after it. Idempotent. */
export type StopFollowing = () => void;

export interface FollowTimings {
  /** A followed buffer without an event for this long is checked for existence; absent → `absent`. */
  absentAfterMs: number;
}

export const DEFAULT_FOLLOW_TIMINGS: FollowTimings = { absentAfterMs: 10_000 };

export class Follow {
  /** Id of the last event delivered (or the `afterId` it started after). */
  last: number;
  /** False until the events already buffered were delivered; live deliveries wait for it (no gap). */
  caughtUp = false;
  open = true;

  constructor(
    readonly turnId: string,
    afterId: number,
    readonly handler: TurnFollowHandler,
  ) {
    this.last = afterId;
  }
}

interface FollowedTurn {
  follows: Set<Follow>;
  /** When the turn last had an event, or last got a new follow (ms since epoch). */
  activeAt: number;
}

/** Every follow of one instance, by turn. */
export class TurnFollows {
  private readonly turns = new Map<string, FollowedTurn>();
  private count = 0;

  constructor(private readonly now: () => number = Date.now) {}

  /** Number of open follows. */
  get size(): number {
    return this.count;
  }

  get turnIds(): IterableIterator<string> {
    return this.turns.keys();
  }

  add(turnId: string, afterId: number, handler: TurnFollowHandler): Follow {
    const follow = new Follow(turnId, afterId, handler);
    let turn = this.turns.get(turnId);
    if (!turn) {
      turn = { follows: new Set(), activeAt: this.now() };
      this.turns.set(turnId, turn);
    }
    turn.follows.add(follow);
    turn.activeAt = this.now();
    this.count++;
    return follow;
  }

  /** Forgets a follow; no callback reaches it afterwards. */
  remove(follow: Follow): void {
    if (!follow.open) return;
    follow.open = false;
    this.count--;
    const turn = this.turns.get(follow.turnId);
    if (!turn) return;
    turn.follows.delete(follow);
    if (turn.follows.size === 0) this.turns.delete(follow.turnId);
  }

  /** Whether anything follows this turn. */
  has(turnId: string): boolean {
    return this.turns.has(turnId);
  }

  /** Where a read of the turn's buffer must start to serve every follow: the lowest last id. */
  cursor(turnId: string): number | undefined {
    const turn = this.turns.get(turnId);
    if (!turn) return undefined;
    let min = Number.POSITIVE_INFINITY;
    for (const follow of turn.follows) if (follow.last < min) min = follow.last;
    return min;
  }

  /** Turns without an event or a new follow since `since` (ms since epoch). */
  idleSince(since: number): string[] {
    const idle: string[] = [];
    for (const [turnId, turn] of this.turns) if (turn.activeAt <= since) idle.push(turnId);
    return idle;
  }

  /**
   * Delivers a turn's events (in id order) to its follows that have caught
   * up: each gets those after its last id. A follow that got `end` is done.
   */
  deliver(turnId: string, events: readonly TurnEvent[]): void {
    const turn = this.turns.get(turnId);
    if (!turn || events.length === 0) return;
    turn.activeAt = this.now();
    for (const follow of [...turn.follows]) if (follow.caughtUp) this.deliverTo(follow, events);
  }

  /** Delivers to one follow what it has not had of `events`, then marks it caught up. */
  deliverTo(follow: Follow, events: readonly TurnEvent[]): void {
    follow.caughtUp = true;
    if (!follow.open) return;
    const fresh = events.filter((e) => e.id > follow.last);
    const last = fresh.at(-1);
    if (!last) return;
    follow.last = last.id;
    try {
      follow.handler.onEvents(fresh);
    } catch {
      // A handler that throws is dropped; the other follows go on.
      this.remove(follow);
      return;
    }
    if (fresh.some((e) => e.event === 'end')) this.close(follow, 'end');
  }

  /** Stops a follow by itself, telling its handler why. */
  close(follow: Follow, reason: FollowEndReason): void {
    if (!follow.open) return;
    this.remove(follow);
    follow.handler.onClose(reason);
  }

  closeTurn(turnId: string, reason: FollowEndReason): void {
    const turn = this.turns.get(turnId);
    if (!turn) return;
    for (const follow of [...turn.follows]) this.close(follow, reason);
  }

  closeAll(reason: FollowEndReason): void {
    for (const turnId of [...this.turns.keys()]) this.closeTurn(turnId, reason);
  }
}
