import { spawnSync } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';

/**
 * tools/scripts/build-if-stale.mjs (what `npm start` runs first), in a scratch
 * checkout whose `npm run build` only counts its runs and writes the outputs.
 */
const script = fileURLToPath(new URL('../../scripts/build-if-stale.mjs', import.meta.url));
const root = mkdtempSync(path.join(tmpdir(), 'llmchat-build-if-stale-'));
afterAll(() => rmSync(root, { recursive: true, force: true }));

const build = [
  "const fs = require('node:fs');",
  "fs.appendFileSync('builds', 'x');",
  "for (const f of ['tools/dist/mock-upstream/index.js', 'server/dist/main.js', 'web/dist/index.html']) { fs.mkdirSync(require('node:path').dirname(f), { recursive: true }); fs.writeFileSync(f, ''); }",
].join(' ');
mkdirSync(path.join(root, 'tools/scripts'), { recursive: true });
copyFileSync(script, path.join(root, 'tools/scripts/build-if-stale.mjs'));
writeFileSync(path.join(root, 'build.cjs'), build);
writeFileSync(path.join(root, 'package.json'), JSON.stringify({ name: 'scratch', private: true, scripts: { build: 'node build.cjs && node tools/scripts/build-if-stale.mjs --record' } }));
mkdirSync(path.join(root, 'server/src'), { recursive: true });
writeFileSync(path.join(root, 'server/src/main.ts'), 'export const a = 1;\n');

function start(): { builds: number; output: string } {
  const run = spawnSync(process.execPath, ['tools/scripts/build-if-stale.mjs'], { cwd: root, encoding: 'utf8' });
  expect(run.status, run.stderr).toBe(0);
  return { builds: existsSync(path.join(root, 'builds')) ? readFileSync(path.join(root, 'builds'), 'utf8').length : 0, output: run.stdout };
}

describe('tools/scripts/build-if-stale.mjs', () => {
  it('builds the first time, then not while the sources are unchanged', () => {
    expect(start().builds).toBe(1);
    const again = start();
    expect(again.builds).toBe(1);
    expect(again.output).toContain('build is current');
  });

  it('builds again when a source changes, but not when only its mtime does', () => {
    writeFileSync(path.join(root, 'server/src/main.ts'), 'export const a = 1;\n');
    expect(start().builds).toBe(1);
    writeFileSync(path.join(root, 'server/src/main.ts'), 'export const a = 2;\n');
    expect(start().builds).toBe(2);
    expect(start().builds).toBe(2);
  });

  it('builds again when a new source appears or an output is missing', () => {
    writeFileSync(path.join(root, 'server/src/extra.ts'), 'export const b = 1;\n');
    expect(start().builds).toBe(3);
    rmSync(path.join(root, 'web/dist/index.html'));
    expect(start().builds).toBe(4);
    expect(start().builds).toBe(4);
  });
});
