// `npm start` (and the other npm scripts that run the built server) build
// first only when the build is stale: a hash over the build's inputs (sources,
// tsconfigs, the web app's assets, the lockfile) is kept beside the output, and
// an unchanged hash with every output present skips `npm run build`. Content,
// not mtimes: a git checkout or a copy touches mtimes without changing code.
// Plain JavaScript: it runs before anything is compiled.
import { createHash } from 'node:crypto';
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync, readdirSync, statSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const inputs = [
  'package.json', 'package-lock.json', 'tsconfig.base.json',
  'tools/package.json', 'tools/tsconfig.json', 'tools/src',
  'server/package.json', 'server/tsconfig.json', 'server/src',
  'web/package.json', 'web/tsconfig.json', 'web/tsconfig.node.json', 'web/vite.config.ts', 'web/index.html', 'web/public', 'web/src', 'web/scripts',
];
const outputs = ['tools/dist/mock-upstream/index.js', 'server/dist/main.js', 'web/dist/index.html'];
const stampFile = path.join(root, 'server/dist/.build-inputs');

/** Every file under `entry`, sorted, so the hash does not depend on directory order. */
function files(entry) {
  const full = path.join(root, entry);
  if (!existsSync(full)) return [];
  if (!statSync(full).isDirectory()) return [entry];
  return readdirSync(full, { withFileTypes: true })
    .map((d) => d.name)
    .sort()
    .flatMap((name) => (name === 'node_modules' || name === 'dist' ? [] : files(path.join(entry, name))));
}

function inputsHash() {
  const hash = createHash('sha256');
  for (const file of inputs.flatMap(files)) {
    hash.update(file).update('\0').update(readFileSync(path.join(root, file))).update('\0');
  }
  return hash.digest('hex');
}

const current = inputsHash();
if (process.argv.includes('--record')) {
  // The end of `npm run build`: whatever ran the build, the next start knows it is current.
  writeFileSync(stampFile, `${current}\n`);
  process.exit(0);
}
const built = existsSync(stampFile) ? readFileSync(stampFile, 'utf8').trim() : '';
if (built === current && outputs.every((o) => existsSync(path.join(root, o)))) {
  if (!process.argv.includes('--quiet')) process.stdout.write('build is current: not rebuilding\n');
} else {
  const result = spawnSync('npm', ['run', 'build'], { cwd: root, stdio: 'inherit' });
  if (result.status !== 0) process.exit(result.status ?? 1);
}
