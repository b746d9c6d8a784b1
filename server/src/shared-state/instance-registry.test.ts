import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { backendNames, createBackend, type Backend } from '../test/backends.js';
import { MemoryInstanceRegistry } from './instance-registry.js';

/** The lease every instance holds (takeover.ts), on each kind of shared state. */
describe.each(await backendNames())('the registry of live instances on %s', (name) => {
  let backend: Backend;
  beforeAll(async () => {
    backend = await createBackend(name);
  });
  afterAll(async () => {
    await backend.dispose();
  });
  const LEASE = 300;
  /** A beat, with `gone` narrowed to the instances of the test at hand (the registry outlives each test). */
  const beat = async (id: string, judgeWithinMs = 10_000, among?: string[], rejoinMs?: number) => {
    const seen = await backend.state.beatInstance(id, LEASE, judgeWithinMs, rejoinMs);
    return among === undefined ? seen : { ...seen, gone: seen.gone.filter((g) => among.includes(g)) };
  };

  it('tells one beating instance, once, which instance missed its lease; that one learns it at its next beat', async () => {
    // First beats: nothing to compare with, nothing judged.
    expect(await beat('a')).toEqual({ steady: false, lost: false, gone: [] });
    await beat('b');
    await beat('victim');
    expect(await backend.state.instancesAlive(['a', 'victim', 'never'], LEASE)).toEqual([true, true, false]);
    expect(await beat('a')).toEqual({ steady: true, lost: false, gone: [] });
    await sleep(LEASE + 50);
    expect(await backend.state.instancesAlive(['victim'], LEASE)).toEqual([false]);
    const seen = [await beat('a'), await beat('b')];
    // a and b missed their own lease too, but each judges from its own steady view: a saw b and the victim gone first.
    expect(seen[0]).toMatchObject({ steady: true, lost: false });
    expect(seen[0]?.gone.sort()).toEqual(['b', 'victim']);
    // b was judged gone by a: it learns so, and judges nothing this time (its previous beat left the registry).
    expect(seen[1]).toEqual({ steady: false, lost: true, gone: [] });
    expect(await beat('victim')).toEqual({ steady: false, lost: true, gone: [] });
    // Told once: the next beats report nothing more.
    expect(await beat('victim')).toEqual({ steady: true, lost: false, gone: [] });
    expect((await beat('a')).gone).toEqual([]);
  });

  it('judges nothing on a beat that follows a stall of its own: after a pause or a slow registry, everyone looks late', async () => {
    await beat('watcher');
    await beat('late');
    await sleep(LEASE + 50);
    // The watcher's own last beat is older than it allows (judgeWithinMs 100): it judges no one this time.
    expect(await beat('watcher', 100)).toEqual({ steady: false, lost: false, gone: [] });
    expect(await backend.state.instancesAlive(['late'], LEASE)).toEqual([false]);
    // The next, steady beat does.
    expect(await beat('watcher', 100, ['late'])).toEqual({ steady: true, lost: false, gone: ['late'] });
  });

  it('after a gap in the registry itself (Redis down, failed over or emptied), the first instance back judges nobody until the others had time to rejoin', async () => {
    const among = ['first-back', 'reconnecting'];
    const REJOIN = 1_000;
    await beat('first-back', 200, among, REJOIN);
    await beat('reconnecting', 200, among, REJOIN);
    // Nobody beats for longer than judgeWithinMs: the registry itself had a gap, as when Redis fails over.
    await sleep(LEASE + 100);
    expect(await beat('first-back', 200, among, REJOIN)).toEqual({ steady: false, lost: false, gone: [] });
    // Steady again, and the other one's lease has run out, yet it is not judged: the registry came back a moment ago.
    expect(await backend.state.instancesAlive(['reconnecting'], LEASE)).toEqual([false]);
    expect(await beat('first-back', 200, among, REJOIN)).toEqual({ steady: true, lost: false, gone: [] });
    // It reconnects and beats: nothing was taken from it.
    expect(await beat('reconnecting', 200, among, REJOIN)).toEqual({ steady: false, lost: false, gone: [] });
    // Once the registry has run REJOIN without a gap, a lease that runs out is judged again (bounded by count, not time).
    let judged: string[] = [];
    for (let i = 0; i < 60 && judged.length === 0; i++) {
      await sleep(100);
      judged = (await beat('first-back', 200, among, REJOIN)).gone;
    }
    expect(judged).toEqual(['reconnecting']);
  });

  it('an instance that ends its lease (shutdown) is judged gone at the next beat; one whose answers were taken by the scan learns it', async () => {
    await beat('stays');
    await beat('leaves');
    await backend.state.expireInstance('leaves');
    expect(await backend.state.instancesAlive(['leaves'], LEASE)).toEqual([false]);
    expect((await beat('stays', 10_000, ['leaves'])).gone).toEqual(['leaves']);
    // Ending a lease the registry does not hold adds nothing.
    await backend.state.expireInstance('never-registered');
    expect((await beat('stays', 10_000, ['never-registered'])).gone).toEqual([]);
    await backend.state.markInstanceTaken('stays');
    expect(await beat('stays')).toMatchObject({ lost: true });
  });
});

describe('the in-memory registry', () => {
  it('stamps beats with its own clock', () => {
    let now = 1_000;
    const registry = new MemoryInstanceRegistry(() => now);
    registry.beat('a', 500, 200);
    registry.beat('b', 500, 200);
    now += 150;
    registry.beat('a', 500, 200);
    now += 150;
    registry.beat('a', 500, 200);
    now += 150;
    // b last beat 450 ms ago: inside its lease.
    expect(registry.beat('a', 500, 200).gone).toEqual([]);
    now += 100;
    expect(registry.beat('a', 500, 200)).toEqual({ steady: true, lost: false, gone: ['b'] });
    expect(registry.alive(['a', 'b'], 500)).toEqual([true, false]);
  });

  it('a new (or emptied) registry holds no old beats: it judges a lapsed lease without waiting rejoinMs', () => {
    let now = 1_000;
    const registry = new MemoryInstanceRegistry(() => now);
    registry.beat('a', 500, 200, 5_000);
    registry.beat('b', 500, 200, 5_000);
    for (let i = 0; i < 3; i++) {
      now += 150;
      expect(registry.beat('a', 500, 200, 5_000).gone).toEqual([]);
    }
    now += 150;
    expect(registry.beat('a', 500, 200, 5_000).gone).toEqual(['b']);
  });

  it('judges nobody for rejoinMs after a gap in which no instance beat', () => {
    let now = 1_000;
    const registry = new MemoryInstanceRegistry(() => now);
    registry.beat('a', 500, 200, 1_000);
    registry.beat('b', 500, 200, 1_000);
    now += 600;
    expect(registry.beat('a', 500, 200, 1_000)).toEqual({ steady: false, lost: false, gone: [] });
    now += 150;
    expect(registry.beat('a', 500, 200, 1_000)).toEqual({ steady: true, lost: false, gone: [] });
    for (let i = 0; i < 5; i++) {
      now += 150;
      expect(registry.beat('a', 500, 200, 1_000).gone).toEqual([]);
    }
    now += 150;
    // 1050 ms since the registry came back: b, last seen 1650 ms ago, is judged.
    expect(registry.beat('a', 500, 200, 1_000).gone).toEqual(['b']);
  });
});
