import type { Logger } from 'pino';
import { DegradedNotice } from '../../shared-state/degraded.js';
import type { SharedState, TurnEvent } from '../../shared-state/shared-state.js';

export interface TurnEventBufferOptions {
  state: SharedState;
  logger: Logger;
  /** How long a turn's buffer outlives its last refresh. */
  ttlSeconds: number;
  /** Events wait at most this long before they are appended. */
  intervalMs: number;
}

interface TurnBuffer {
  pending: TurnEvent[];
  /** The previous append of this turn, so appends stay in id order whatever the backend does. */
  inFlight: Promise<void> | undefined;
  /** When the buffer's expiry was last set (ms since epoch); 0 = never. */
  ttlSetAt: number;
}

/**
 * Copies every turn's events into the shared event buffer so any instance
 * can replay them. One timer serves all running turns: each tick appends
 * every turn's pending events in the same event-loop turn, so with Redis
 * they leave in one pipelined write instead of one write per turn per tick.
 * A turn's expiry is set on its first append, refreshed when a quarter of
 * the TTL has passed, and set again at its end: one command per append
 * rather than two.
 */
export class TurnEventBuffer {
  private readonly turns = new Map<string, TurnBuffer>();
  private readonly dirty = new Set<string>();
  private timer: NodeJS.Timeout | undefined;
  private readonly notice: DegradedNotice;

  constructor(private readonly options: TurnEventBufferOptions) {
    this.notice = new DegradedNotice(options.logger, 'resuming answers from the event buffer');
  }

  /** Queues one event; it reaches the shared buffer within `intervalMs`. */
  append(turnId: string, event: TurnEvent): void {
    let turn = this.turns.get(turnId);
    if (!turn) {
      turn = { pending: [], inFlight: undefined, ttlSetAt: 0 };
      this.turns.set(turnId, turn);
    }
    turn.pending.push(event);
    this.dirty.add(turnId);
    this.timer ??= setTimeout(() => this.tick(), this.options.intervalMs);
  }

  /** Appends what the turn still has pending, now, and forgets the turn. Resolves when it is stored. */
  finish(turnId: string): Promise<void> {
    const turn = this.turns.get(turnId);
    if (!turn) return Promise.resolve();
    this.dirty.delete(turnId);
    this.turns.delete(turnId);
    return this.write(turnId, turn, true);
  }

  /** Appends everything pending (shutdown). */
  async flushAll(): Promise<void> {
    const ids = [...this.turns.keys()];
    await Promise.all(ids.map((id) => this.finish(id)));
  }

  private tick(): void {
    this.timer = undefined;
    for (const turnId of this.dirty) {
      const turn = this.turns.get(turnId);
      if (turn) void this.write(turnId, turn, false);
    }
    this.dirty.clear();
  }

  private write(turnId: string, turn: TurnBuffer, last: boolean): Promise<void> {
    const batch = turn.pending;
    if (batch.length === 0) return turn.inFlight ?? Promise.resolve();
    turn.pending = [];
    const now = Date.now();
    const refreshTtl = last || turn.ttlSetAt === 0 || now - turn.ttlSetAt > (this.options.ttlSeconds * 1000) / 4;
    if (refreshTtl) turn.ttlSetAt = now;
    const append = (): Promise<void> =>
      this.options.state.appendEvents(turnId, batch, this.options.ttlSeconds, refreshTtl).then(
        () => this.notice.succeeded(),
        (err: unknown) => this.notice.failed(err),
      );
    // A turn's appends go one after another, so its buffer stays in id order.
    const done: Promise<void> = (turn.inFlight ? turn.inFlight.then(append) : append()).then(() => {
      if (turn.inFlight === done) turn.inFlight = undefined;
    });
    turn.inFlight = done;
    return done;
  }
}
