import pino from 'pino';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it, vi } from 'vitest';
import { MemoryState } from '../../shared-state/memory-state.js';
import type { TurnEvent } from '../../shared-state/shared-state.js';
import { backendNames, createBackend, type Backend } from '../../test/backends.js';
import { TurnEventBuffer } from './event-buffer.js';

const logger = pino({ level: 'silent' });
const event = (id: number, name = 'chunk'): TurnEvent => ({ id, event: name, data: `{"n":${id}}` });

interface Call {
  turnId: string;
  ids: number[];
  refreshTtl: boolean | undefined;
}

/** A shared state that records appends; `hold` makes them wait until released. */
class RecordingState extends MemoryState {
  readonly calls: Call[] = [];
  hold: Promise<void> | undefined;
  failNext = false;

  override async appendEvents(turnId: string, events: readonly TurnEvent[], ttlSeconds: number, refreshTtl?: boolean): Promise<void> {
    this.calls.push({ turnId, ids: events.map((e) => e.id), refreshTtl });
    if (this.failNext) {
      this.failNext = false;
      throw new Error('redis down');
    }
    if (this.hold) await this.hold;
    return super.appendEvents(turnId, events, ttlSeconds, refreshTtl);
  }
}

describe('TurnEventBuffer', () => {
  beforeEach(() => {
    vi.useFakeTimers();
  });
  afterEach(() => {
    vi.useRealTimers();
  });

  it('appends every turn pending at a tick together, once per turn', async () => {
    const state = new RecordingState();
    const buffer = new TurnEventBuffer({ state, logger, ttlSeconds: 600, intervalMs: 40 });
    buffer.append('a', event(1));
    buffer.append('b', event(1));
    buffer.append('a', event(2));
    expect(state.calls).toEqual([]);
    await vi.advanceTimersByTimeAsync(40);
    expect(state.calls).toEqual([
      { turnId: 'a', ids: [1, 2], refreshTtl: true },
      { turnId: 'b', ids: [1], refreshTtl: true },
    ]);
    expect((await state.readEvents('a', 0)).map((e) => e.id)).toEqual([1, 2]);
  });

  it('sets the expiry on the first append, after a quarter of the TTL, and at the end', async () => {
    const state = new RecordingState();
    const buffer = new TurnEventBuffer({ state, logger, ttlSeconds: 4, intervalMs: 40 });
    buffer.append('a', event(1));
    await vi.advanceTimersByTimeAsync(40);
    buffer.append('a', event(2));
    await vi.advanceTimersByTimeAsync(40);
    await vi.advanceTimersByTimeAsync(1_000);
    buffer.append('a', event(3));
    await vi.advanceTimersByTimeAsync(40);
    buffer.append('a', event(4, 'end'));
    await buffer.finish('a');
    expect(state.calls.map((c) => [c.ids, c.refreshTtl])).toEqual([
      [[1], true],
      [[2], false],
      [[3], true],
      [[4], true],
    ]);
  });

  it('finish appends what is pending at once and keeps id order behind a slow append', async () => {
    const state = new RecordingState();
    const buffer = new TurnEventBuffer({ state, logger, ttlSeconds: 600, intervalMs: 40 });
    let release!: () => void;
    state.hold = new Promise((resolve) => (release = resolve));
    buffer.append('a', event(1));
    await vi.advanceTimersByTimeAsync(40);
    buffer.append('a', event(2, 'end'));
    const finished = buffer.finish('a');
    // The second append waits for the first.
    expect(state.calls.map((c) => c.ids)).toEqual([[1]]);
    state.hold = undefined;
    release();
    await finished;
    expect(state.calls.map((c) => c.ids)).toEqual([[1], [2]]);
    expect((await state.readEvents('a', 0)).map((e) => e.id)).toEqual([1, 2]);
  });

  it('survives failed appends, warning once per outage: later events of the turn still arrive', async () => {
    const state = new RecordingState();
    const warn = vi.fn();
    const info = vi.fn();
    const buffer = new TurnEventBuffer({ state, logger: { warn, info } as unknown as typeof logger, ttlSeconds: 600, intervalMs: 40 });
    state.failNext = true;
    buffer.append('a', event(1));
    await vi.advanceTimersByTimeAsync(40);
    state.failNext = true;
    buffer.append('a', event(2));
    await vi.advanceTimersByTimeAsync(40);
    expect(warn).toHaveBeenCalledTimes(1);
    expect(info).not.toHaveBeenCalled();
    buffer.append('a', event(3));
    await buffer.finish('a');
    expect(info).toHaveBeenCalledTimes(1);
    expect((await state.readEvents('a', 0)).map((e) => e.id)).toEqual([3]);
  });

  it('flushAll appends every pending turn (shutdown)', async () => {
    const state = new RecordingState();
    const buffer = new TurnEventBuffer({ state, logger, ttlSeconds: 600, intervalMs: 40 });
    buffer.append('a', event(1));
    buffer.append('b', event(1));
    await buffer.flushAll();
    expect(state.calls.map((c) => c.turnId).sort()).toEqual(['a', 'b']);
    // Nothing is left for the timer.
    await vi.advanceTimersByTimeAsync(100);
    expect(state.calls).toHaveLength(2);
  });
});

describe.each(await backendNames())('TurnEventBuffer on %s', (name) => {
  let backend: Backend;
  beforeAll(async () => {
    backend = await createBackend(name);
  });
  afterAll(async () => {
    await backend.dispose();
  });

  it('leaves every event of several interleaved turns readable in order', async () => {
    const buffer = new TurnEventBuffer({ state: backend.state, logger, ttlSeconds: 600, intervalMs: 5 });
    for (let id = 1; id <= 30; id++) {
      buffer.append('x', event(id));
      if (id % 2 === 0) buffer.append('y', event(id / 2));
      if (id % 7 === 0) await new Promise((resolve) => setTimeout(resolve, 6));
    }
    await Promise.all([buffer.finish('x'), buffer.finish('y')]);
    expect((await backend.state.readEvents('x', 0)).map((e) => e.id)).toEqual(Array.from({ length: 30 }, (_, i) => i + 1));
    expect((await backend.state.readEvents('y', 10)).map((e) => e.id)).toEqual([11, 12, 13, 14, 15]);
  });
});
