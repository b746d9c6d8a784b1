import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { backendNames, createBackend, type Backend } from '../test/backends.js';
import { eventually } from '../test/sse.js';

describe.each(await backendNames())('shared state on %s', (name) => {
  let backend: Backend;
  beforeAll(async () => {
    backend = await createBackend(name);
  });
  afterAll(async () => {
    await backend.dispose();
  });

  it('counts hits in a window', async () => {
    expect(await backend.state.hit('w1', 60)).toBe(1);
    expect(await backend.state.hit('w1', 60)).toBe(2);
    expect(await backend.state.hit('w1', 60, 10)).toBe(12);
    expect(await backend.state.hit('w2', 60)).toBe(1);
  });

  it('admits a turn against counters and token buckets atomically, reserving only when everything has room', async () => {
    const bucket = (key: string, limit: number) => ({ key, ttlSeconds: 600, limit });
    const counter = { key: 'adm:c', windowSeconds: 60, limit: 2 };
    const first = await backend.state.admitTurn({ counters: [counter], buckets: [bucket('adm:b1', 100), bucket('adm:b2', 1000)], reserve: 60, reservationId: 't1', reservationTtlSeconds: 600 });
    expect(first).toEqual({ counts: [1], used: [0, 0], admitted: true });
    expect(await backend.state.readCounters(['adm:b1', 'adm:b2', 'adm:absent'])).toEqual([60, 60, 0]);
    // b1 has room (60 < 100): admitted, and it may go past the limit by this one reservation.
    const second = await backend.state.admitTurn({ counters: [counter], buckets: [bucket('adm:b1', 100), bucket('adm:b2', 1000)], reserve: 60, reservationId: 't2', reservationTtlSeconds: 600 });
    expect(second).toEqual({ counts: [2], used: [60, 60], admitted: true });
    // b1 is full (120 >= 100): refused, and nothing is reserved anywhere.
    const third = await backend.state.admitTurn({ counters: [], buckets: [bucket('adm:b1', 100), bucket('adm:b2', 1000)], reserve: 60, reservationId: 't3', reservationTtlSeconds: 600 });
    expect(third).toEqual({ counts: [], used: [120, 120], admitted: false });
    expect(await backend.state.readCounters(['adm:b1', 'adm:b2'])).toEqual([120, 120]);
    expect(await backend.state.settleTurn('t3', 5)).toBe(false);
    // A counter over its limit refuses too, before any bucket is touched.
    const fourth = await backend.state.admitTurn({ counters: [counter], buckets: [bucket('adm:b2', 1000)], reserve: 60, reservationId: 't4', reservationTtlSeconds: 600 });
    expect(fourth.admitted).toBe(false);
    expect(await backend.state.readCounters(['adm:b2'])).toEqual([120]);
  });

  it('settles a reservation once, to the tokens used, in the buckets it was made in', async () => {
    const buckets = [{ key: 'set:b', ttlSeconds: 600, limit: 1000 }];
    await backend.state.admitTurn({ counters: [], buckets, reserve: 100, reservationId: 's1', reservationTtlSeconds: 600 });
    await backend.state.admitTurn({ counters: [], buckets, reserve: 100, reservationId: 's2', reservationTtlSeconds: 600 });
    expect(await backend.state.settleTurn('s1', 30)).toBe(true);
    expect(await backend.state.readCounters(['set:b'])).toEqual([130]);
    // A second settlement of the same turn (another instance, a retry) changes nothing.
    expect(await backend.state.settleTurn('s1', 30)).toBe(false);
    expect(await backend.state.settleTurn('s2', 0)).toBe(true);
    expect(await backend.state.readCounters(['set:b'])).toEqual([30]);
    expect(await backend.state.settleTurn('never-reserved', 50)).toBe(false);
    expect(await backend.state.readCounters(['set:b'])).toEqual([30]);
  });

  it('stores values with a lifetime', async () => {
    await backend.state.set('k', 'v', 60);
    expect(await backend.state.get('k')).toBe('v');
    await backend.state.del('k');
    expect(await backend.state.get('k')).toBeNull();
  });

  it('delivers published messages to subscribers until they unsubscribe', async () => {
    const got: string[] = [];
    const unsubscribe = await backend.state.subscribe('chan', (m) => got.push(m));
    await backend.state.publish('chan', 'one');
    await eventually(async () => got.includes('one'), 'the first message');
    await unsubscribe();
    await backend.state.publish('chan', 'two');
    await backend.state.publish('other', 'x');
    // A message published after unsubscribing is not delivered; a later subscriber proves the bus still works.
    const later: string[] = [];
    const un2 = await backend.state.subscribe('chan', (m) => later.push(m));
    await backend.state.publish('chan', 'three');
    await eventually(async () => later.includes('three'), 'the third message');
    expect(got).toEqual(['one']);
    await un2();
  });

  it('keeps a turn buffer in id order and reads after an id', async () => {
    await backend.state.appendEvents('t1', [{ id: 1, event: 'start', data: '{}' }, { id: 2, event: 'chunk', data: '{"content":"a"}' }], 60);
    await backend.state.appendEvents('t1', [{ id: 3, event: 'end', data: '{}' }], 60);
    expect((await backend.state.readEvents('t1', 0)).map((e) => e.id)).toEqual([1, 2, 3]);
    expect(await backend.state.readEvents('t1', 1)).toEqual([
      { id: 2, event: 'chunk', data: '{"content":"a"}' },
      { id: 3, event: 'end', data: '{}' },
    ]);
    expect(await backend.state.readEvents('t1', 3)).toEqual([]);
    expect(await backend.state.readEvents('unknown', 0)).toEqual([]);
  });

  it('answers a ping', async () => {
    expect(await backend.state.ping()).toBeGreaterThanOrEqual(0);
  });
});
