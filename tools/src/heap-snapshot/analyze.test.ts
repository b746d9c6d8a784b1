import { spawnSync } from 'node:child_process';
import { mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { HeapSnapshot } from './analyze.js';

/**
 * A real snapshot of a small process with a known shape: 300 `Holder`s, each
 * owning 1000 small objects of its own, and all sharing one `Shared` with a
 * large array. A Holder retains its own objects but not the Shared one.
 */
const program = `
class Item { constructor(i) { this.i = i; } }
class Shared { constructor() { this.big = new Array(200000).fill(0).map((_, i) => ({ i })); } }
class Holder { constructor(shared) { this.own = Array.from({ length: 1000 }, (_, i) => new Item(i)); this.shared = shared; } }
const shared = new Shared();
globalThis.holders = Array.from({ length: 300 }, () => new Holder(shared));
require('node:v8').writeHeapSnapshot(require('node:path').join(process.argv[1], 'test.heapsnapshot'));
`;

let dir: string;
let snapshot: HeapSnapshot;

beforeAll(() => {
  dir = mkdtempSync(path.join(tmpdir(), 'llmchat-heap-'));
  const run = spawnSync(process.execPath, ['-e', program, dir], { encoding: 'utf8' });
  expect(run.status, run.stderr).toBe(0);
  const file = readdirSync(dir).find((f) => f.endsWith('.heapsnapshot'));
  expect(file).toBeDefined();
  snapshot = HeapSnapshot.read(path.join(dir, file ?? ''));
}, 60_000);

afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('heap snapshot analysis', () => {
  it('counts objects by class', () => {
    const byClass = new Map(snapshot.sizesByClass().map((row) => [row.key, row]));
    expect(byClass.get('Holder')?.count).toBe(300);
    expect(byClass.get('Shared')?.count).toBe(1);
    expect(byClass.get('Item')?.count).toBe(300 * 1000);
    expect(snapshot.totalBytes).toBeGreaterThan(0);
  });

  it('gives each Holder what it alone keeps alive, and the shared object to nobody but its owner', () => {
    const holders = snapshot.retainedBy('Holder');
    const items = snapshot.sizesByClass().find((row) => row.key === 'Item');
    expect(holders.instances).toBe(300);
    // Every Item is owned by exactly one Holder: their sizes are inside the Holders' retained size.
    expect(holders.retainedBytes).toBeGreaterThan(items?.selfBytes ?? Number.POSITIVE_INFINITY);
    expect(holders.children[0]?.edge).toBe('own -> Array');
    // The Shared array is reachable through every Holder, so no Holder retains it…
    const shared = snapshot.retainedBy('Shared');
    expect(shared.instances).toBe(1);
    expect(holders.children.some((child) => child.edge.startsWith('shared'))).toBe(false);
    // …and the Shared object retains its 200,000 entries.
    expect(shared.retainedBytes).toBeGreaterThan(200_000 * 12);
    expect(shared.children[0]?.edge).toBe('big -> Array');
  });
});
