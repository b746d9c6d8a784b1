import { parseArgs } from 'node:util';
import { HeapSnapshot } from './analyze.js';

/**
 * `node tools/dist/heap-snapshot/cli.js FILE [--per 2000] [--top 40] [--retained ServerResponse,Generation]`
 *
 * What a heap snapshot holds: the largest classes by their objects' own
 * size, and for each `--retained` class what its instances retain (the
 * dominator tree) and through which edges (a function by its name with
 * `()`, e.g. `onResFinished()`). `--per N` divides every figure
 * by N, e.g. the streams in flight when the snapshot was taken
 * (`npm run bench -- --long 2000 --server-env
 * NODE_OPTIONS=--heapsnapshot-signal=SIGUSR2`, then `kill -USR2` the server).
 */
const { values, positionals } = parseArgs({
  allowPositionals: true,
  options: {
    per: { type: 'string', default: '1' },
    top: { type: 'string', default: '40' },
    retained: { type: 'string', default: '' },
  },
});
const file = positionals[0];
const per = Number(values.per);
const top = Number(values.top);
if (file === undefined || !(per > 0) || !(top > 0)) {
  console.error('usage: heap-snapshot FILE [--per N] [--top 40] [--retained Class,Class]');
  process.exit(2);
}
const snapshot = HeapSnapshot.read(file);
const kib = (bytes: number): string => (bytes / 1024).toFixed(0).padStart(8);
const each = (value: number): string => (value / per).toFixed(per === 1 ? 0 : 2).padStart(9);
console.log(`${file}: ${snapshot.nodeCount} nodes, ${(snapshot.totalBytes / 1048576).toFixed(1)} MiB${per === 1 ? '' : `; figures per ${per} also given`}`);
console.log(`\n     KiB    count  count/N  bytes/N  class (own size)`);
for (const row of snapshot.sizesByClass().slice(0, top)) {
  console.log(`${kib(row.selfBytes)} ${String(row.count).padStart(8)} ${each(row.count)} ${each(row.selfBytes)}  ${row.key}`);
}
for (const name of values.retained.split(',').filter((n) => n !== '')) {
  const found = snapshot.retainedBy(name);
  console.log(`\n${name}: ${found.instances} instances retain ${kib(found.retainedBytes).trim()} KiB (${each(found.retainedBytes).trim()} bytes per N)`);
  for (const child of found.children.slice(0, 15)) console.log(`  ${each(child.bytes)} bytes per N  ${child.edge}`);
}
