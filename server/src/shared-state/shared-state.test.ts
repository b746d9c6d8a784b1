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
