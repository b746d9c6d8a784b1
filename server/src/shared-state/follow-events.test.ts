import crypto from 'node:crypto';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { backendNames, createBackend, type Backend } from '../test/backends.js';
import { eventually } from '../test/sse.js';
import { MemoryState } from './memory-state.js';
import { RedisState } from './redis-state.js';
import type { FollowEndReason, SharedState, TurnEvent } from './shared-state.js';
import type { RedisFollowTimings } from './redis-follower.js';

const event = (id: number, name = 'chunk'): TurnEvent => ({ id, event: name, data: JSON.stringify({ n: id }) });
const range = (from: number, to: number, name = 'chunk') => Array.from({ length: to - from + 1 }, (_, i) => event(from + i, name));

/** What one follow received, and how it ended. */
class Recorder {
  readonly ids: number[] = [];
  readonly batches: number[][] = [];
  closed: FollowEndReason | undefined;
  readonly handler = {
    onEvents: (events: readonly TurnEvent[]) => {
      this.batches.push(events.map((e) => e.id));
      this.ids.push(...events.map((e) => e.id));
    },
    onClose: (reason: FollowEndReason) => {
      this.closed = reason;
    },
  };
  has(id: number): boolean {
    return this.ids.includes(id);
  }
}

/**
 * SharedState.followEvents on both backends. The writer appends as a
 * generation on another instance would (with Redis: another client on the
 * same key prefix); the follower is the instance that waits.
 */
describe.each(await backendNames())('following turn buffers on %s', (name) => {
  let backend: Backend;
  const opened: SharedState[] = [];

  beforeAll(async () => {
    backend = await createBackend(name);
  });
  afterEach(async () => {
    for (const state of opened.splice(0)) await state.close();
  });
  afterAll(async () => {
    await backend.dispose();
  });

  /** A follower instance with its own timings and the state another instance writes through. */
  function instances(timings: Partial<RedisFollowTimings> = {}): { follower: SharedState; writer: SharedState } {
    if (name === 'pglite+memory') {
      const state = new MemoryState({ follow: timings });
      opened.push(state);
      return { follower: state, writer: state };
    }
    const follower = new RedisState(backend.redisUrl ?? '', backend.redisPrefix ?? '', undefined, { follow: timings });
    opened.push(follower);
    return { follower, writer: backend.state };
  }

  const turn = () => crypto.randomUUID();

  it('delivers what is buffered after the id, then each append, in order and once; ends after `end`', async () => {
    const { follower, writer } = instances();
    const t = turn();
    await writer.appendEvents(t, range(1, 3), 60);
    const got = new Recorder();
    follower.followEvents(t, 1, got.handler);
    await eventually(async () => got.has(3), 'the buffered events');
    await writer.appendEvents(t, range(4, 5), 60);
    await eventually(async () => got.has(5), 'the appended events');
    await writer.appendEvents(t, [event(6), event(7, 'end')], 60);
    await eventually(async () => got.closed, 'the follow to end');
    expect(got.ids).toEqual([2, 3, 4, 5, 6, 7]);
    expect(got.closed).toBe('end');
    expect(follower.followCount).toBe(0);
  });

  it('serves many turns and several follows per turn, each its own events once', async () => {
    const { follower, writer } = instances();
    const turns = Array.from({ length: 40 }, turn);
    const follows = new Map<string, Recorder[]>();
    for (const t of turns) {
      await writer.appendEvents(t, range(1, 2), 60);
      const recorders = [0, 1, 2].map(() => new Recorder());
      // Three clients per turn, each at another place.
      recorders.forEach((r, i) => follower.followEvents(t, i, r.handler));
      follows.set(t, recorders);
    }
    expect(follower.followCount).toBe(120);
    // Appends to every turn interleaved, in several batches each, the last with `end`.
    for (let batch = 0; batch < 4; batch++) {
      await Promise.all(turns.map((t) => writer.appendEvents(t, range(3 + batch * 3, 5 + batch * 3), 60)));
    }
    await Promise.all(turns.map((t) => writer.appendEvents(t, [event(15, 'end')], 60)));
    await eventually(async () => follower.followCount === 0, 'every follow to end');
    for (const t of turns) {
      const [a, b, c] = follows.get(t) ?? [];
      expect(a?.ids).toEqual(range(1, 15).map((e) => e.id));
      expect(b?.ids).toEqual(range(2, 15).map((e) => e.id));
      expect(c?.ids).toEqual(range(3, 15).map((e) => e.id));
      expect([a?.closed, b?.closed, c?.closed]).toEqual(['end', 'end', 'end']);
    }
  });

  it('takes in a follow added while the read is blocked and leaves out one that stopped', async () => {
    // A read blocks for ten minutes: only a wake-up can bring a new follow in within the test's bounds.
    const { follower, writer } = instances({ blockMs: 600_000, absentAfterMs: 600_000 });
    const a = turn();
    const b = turn();
    const first = new Recorder();
    const stopFirst = follower.followEvents(a, 0, first.handler);
    await writer.appendEvents(a, [event(1)], 60);
    await eventually(async () => first.has(1), 'the first follow to get event 1');

    // A new turn, and a second client of turn a from the start (behind the cursor of the read in flight),
    // with an append to turn a that may well reach the read in flight before the wake-up does.
    const second = new Recorder();
    const behind = new Recorder();
    follower.followEvents(b, 0, second.handler);
    follower.followEvents(a, 0, behind.handler);
    await writer.appendEvents(a, [event(2)], 60);
    await eventually(async () => behind.has(2), 'the late follow of turn a to get event 2');
    await writer.appendEvents(b, [event(1)], 60);
    await eventually(async () => second.has(1), 'the follow of turn b to get event 1');

    // The first client leaves; turn a goes on and turn b after it.
    stopFirst();
    await writer.appendEvents(a, [event(3)], 60);
    await writer.appendEvents(b, [event(2)], 60);
    await eventually(async () => second.has(2) && behind.has(3), 'the remaining follows to get the last events');
    expect(first.ids).toEqual([1, 2]);
    expect(first.closed).toBeUndefined();
    expect(behind.ids).toEqual([1, 2, 3]);
    expect(second.ids).toEqual([1, 2]);
    expect(follower.followCount).toBe(2);
  });

  it('ends follows of a buffer that was never written or has expired (`absent`)', async () => {
    const { follower, writer } = instances({ blockMs: 100, absentAfterMs: 200 });
    const never = new Recorder();
    follower.followEvents(turn(), 0, never.handler);
    const t = turn();
    await writer.appendEvents(t, range(1, 2), 1);
    const expiring = new Recorder();
    follower.followEvents(t, 2, expiring.handler);
    // A buffer that exists is not absent, however long its follow waits.
    const lively = turn();
    const live = new Recorder();
    await writer.appendEvents(lively, [event(1)], 60);
    follower.followEvents(lively, 1, live.handler);
    await eventually(async () => never.closed, 'the follow of a missing buffer to end');
    expect(never.closed).toBe('absent');
    await eventually(async () => expiring.closed, 'the follow of an expiring buffer to end');
    expect(expiring.closed).toBe('absent');
    expect(expiring.ids).toEqual([]);
    expect(live.closed).toBeUndefined();
    expect(follower.followCount).toBe(1);
  });

  it('keeps a takeover’s block of ids: a client past the buffer gets the new block, one behind gets the rest first', async () => {
    const { follower, writer } = instances();
    const t = turn();
    await writer.appendEvents(t, range(1, 4), 60);
    // This client saw events 5 and 6 from the instance that died; they never reached the buffer.
    const ahead = new Recorder();
    const behind = new Recorder();
    follower.followEvents(t, 6, ahead.handler);
    follower.followEvents(t, 2, behind.handler);
    await eventually(async () => behind.has(4), 'the client behind to catch up');
    await writer.appendEvents(t, [event(1_000_001, 'reset'), event(1_000_002)], 60);
    await writer.appendEvents(t, [event(1_000_003, 'end')], 60);
    await eventually(async () => ahead.closed && behind.closed, 'both follows to end');
    expect(ahead.ids).toEqual([1_000_001, 1_000_002, 1_000_003]);
    expect(behind.ids).toEqual([3, 4, 1_000_001, 1_000_002, 1_000_003]);
  });

  it('ends every follow when the shared state closes, and calls nothing after a stop', async () => {
    const { follower, writer } = instances();
    const t = turn();
    const open = new Recorder();
    const stopped = new Recorder();
    follower.followEvents(t, 0, open.handler);
    follower.followEvents(t, 0, stopped.handler)();
    await writer.appendEvents(t, [event(1)], 60);
    await eventually(async () => open.has(1), 'the open follow to get event 1');
    await follower.close();
    expect(open.closed).toBe('closed');
    expect(stopped.ids).toEqual([]);
    expect(stopped.closed).toBeUndefined();
    expect(follower.followCount).toBe(0);
  });
});
