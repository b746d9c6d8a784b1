import fs from 'node:fs';
import path from 'node:path';
import { fillResolved, lockfileProblems } from './check-lockfile.js';

/**
 * `npm run lockfile:check` (part of `npm test`): checks the repository's
 * package-lock.json and exits 1 with one line per bad entry.
 * `-- --fill-resolved` first writes the registry URL into entries that lack one.
 */
const root = process.argv.slice(2).find((a) => !a.startsWith('--')) ?? process.cwd();
const lockPath = path.join(root, 'package-lock.json');
const manifest = JSON.parse(fs.readFileSync(path.join(root, 'package.json'), 'utf8')) as { workspaces?: string[] };
const workspaces = manifest.workspaces ?? [];
const lock = JSON.parse(fs.readFileSync(lockPath, 'utf8')) as Parameters<typeof fillResolved>[0];
if (process.argv.includes('--fill-resolved')) {
  const filled = fillResolved(lock, workspaces);
  fs.writeFileSync(lockPath, `${JSON.stringify(lock, null, 2)}\n`);
  console.log(`filled resolved in ${filled} entries`);
}
const problems = lockfileProblems(lock, workspaces);
const entries = Object.keys(lock.packages ?? {}).length - 1;
if (problems.length > 0) {
  console.error(`${lockPath}: ${problems.length} of ${entries} entries are not pinned to ${'https://registry.npmjs.org/'} with a sha512 integrity:`);
  for (const p of problems.slice(0, 50)) console.error(`  ${p}`);
  if (problems.length > 50) console.error(`  … and ${problems.length - 50} more`);
  process.exitCode = 1;
} else {
  console.log(`${lockPath}: all ${entries} entries come from https://registry.npmjs.org/ with a sha512 integrity`);
}
