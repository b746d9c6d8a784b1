// Prints every built chunk with its gzipped size, and the chat page's initial
// JavaScript: the entry chunk plus every chunk it imports statically (what a
// first visit to the chat must download before it runs). Fails the build
// when that passes the budget. Writes dist/bundle-sizes.json for the README.
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import zlib from 'node:zlib';

const BUDGET_KB = 200;
const dist = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../dist');
const manifest = JSON.parse(fs.readFileSync(path.join(dist, '.vite/manifest.json'), 'utf8'));

const gzipKb = (file) => zlib.gzipSync(fs.readFileSync(path.join(dist, file)), { level: 9 }).length / 1024;
const kb = (n) => `${n.toFixed(1)} KB`;

const entryKey = Object.keys(manifest).find((k) => manifest[k].isEntry);
if (!entryKey) throw new Error('no entry chunk in the Vite manifest');
const initial = new Set();
const visit = (key) => {
  const chunk = manifest[key];
  if (!chunk || initial.has(chunk.file)) return;
  initial.add(chunk.file);
  for (const dep of chunk.imports ?? []) visit(dep);
};
visit(entryKey);

const files = fs.readdirSync(path.join(dist, 'assets')).map((f) => `assets/${f}`).sort();
const rows = files.map((file) => ({ file, raw: fs.statSync(path.join(dist, file)).size / 1024, gzip: gzipKb(file), initial: initial.has(file) }));
const initialJs = rows.filter((r) => r.initial && r.file.endsWith('.js')).reduce((s, r) => s + r.gzip, 0);
const initialCss = rows.filter((r) => r.file.endsWith('.css')).reduce((s, r) => s + r.gzip, 0);

const width = Math.max(...rows.map((r) => r.file.length));
process.stdout.write(`\n${'chunk'.padEnd(width)}  ${'raw'.padStart(10)}  ${'gzip'.padStart(10)}\n`);
for (const r of rows) process.stdout.write(`${r.file.padEnd(width)}  ${kb(r.raw).padStart(10)}  ${kb(r.gzip).padStart(10)}${r.initial ? '  (initial)' : ''}\n`);
process.stdout.write(`\nchat page initial JavaScript: ${kb(initialJs)} gzipped (budget ${BUDGET_KB} KB); CSS ${kb(initialCss)} gzipped\n`);
fs.writeFileSync(
  path.join(dist, 'bundle-sizes.json'),
  JSON.stringify({ initialJsGzipKb: Number(initialJs.toFixed(1)), initialCssGzipKb: Number(initialCss.toFixed(1)), budgetKb: BUDGET_KB, chunks: rows }, null, 2),
);
if (initialJs > BUDGET_KB) {
  process.stderr.write(`the chat page's initial JavaScript (${kb(initialJs)}) is over the ${BUDGET_KB} KB budget\n`);
  process.exit(1);
}
