import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { fillResolved, lockfileProblems, registryTarball } from './check-lockfile.js';

const here = path.dirname(fileURLToPath(import.meta.url));
const repo = path.resolve(here, '../../..');
const INTEGRITY = `sha512-${'A'.repeat(86)}==`;

function lockWith(entries: Record<string, Record<string, unknown>>): { name: string; lockfileVersion: number; packages: Record<string, Record<string, unknown>> } {
  return { name: 'x', lockfileVersion: 3, packages: { '': { name: 'x', workspaces: ['server'] }, server: { name: '@x/server' }, 'node_modules/@x/server': { resolved: 'server', link: true }, ...entries } };
}

describe('the lockfile check', () => {
  it("passes this repository's package-lock.json", () => {
    const lock = JSON.parse(fs.readFileSync(path.join(repo, 'package-lock.json'), 'utf8')) as unknown;
    const manifest = JSON.parse(fs.readFileSync(path.join(repo, 'package.json'), 'utf8')) as { workspaces: string[] };
    expect(lockfileProblems(lock, manifest.workspaces)).toEqual([]);
  });

  it('accepts registry tarballs with sha512, aliases and nested copies included', () => {
    expect(
      lockfileProblems(
        lockWith({
          'node_modules/pg': { version: '8.1.0', resolved: registryTarball('pg', '8.1.0'), integrity: INTEGRITY },
          'node_modules/@types/node': { version: '24.0.0', resolved: 'https://registry.npmjs.org/@types/node/-/node-24.0.0.tgz', integrity: INTEGRITY },
          'node_modules/@typescript/native': { name: 'typescript', version: '7.0.2', resolved: 'https://registry.npmjs.org/typescript/-/typescript-7.0.2.tgz', integrity: INTEGRITY },
          'node_modules/a/node_modules/b': { version: '1.0.0', resolved: 'https://registry.npmjs.org/b/-/b-1.0.0.tgz', integrity: INTEGRITY },
        }),
        ['server'],
      ),
    ).toEqual([]);
  });

  it('names every entry that could install something other than the registry package it claims', () => {
    const problems = lockfileProblems(
      lockWith({
        'node_modules/no-integrity': { version: '1.0.0', resolved: registryTarball('no-integrity', '1.0.0') },
        'node_modules/sha1': { version: '1.0.0', resolved: registryTarball('sha1', '1.0.0'), integrity: 'sha1-2jmj7l5rSw0yVb/vlWAYkK/YBwk=' },
        'node_modules/no-resolved': { version: '1.0.0', integrity: INTEGRITY },
        'node_modules/git': { version: '1.0.0', resolved: 'git+ssh://git@github.com/evil/git.git#abc', integrity: INTEGRITY },
        'node_modules/other-host': { version: '1.0.0', resolved: 'https://registry.evil.example/other-host/-/other-host-1.0.0.tgz', integrity: INTEGRITY },
        'node_modules/plain-http': { version: '1.0.0', resolved: 'http://registry.npmjs.org/plain-http/-/plain-http-1.0.0.tgz', integrity: INTEGRITY },
        'node_modules/swapped': { version: '1.0.0', resolved: registryTarball('evil-twin', '1.0.0'), integrity: INTEGRITY },
        'node_modules/file': { version: '1.0.0', resolved: 'file:../vendor/file.tgz', integrity: INTEGRITY },
        'node_modules/sneaky-link': { resolved: '../../outside', link: true },
      }),
      ['server'],
    );
    const named = problems.map((p) => p.split(':')[0]);
    expect(named).toEqual([
      'node_modules/no-integrity',
      'node_modules/sha1',
      'node_modules/no-resolved',
      'node_modules/git',
      'node_modules/other-host',
      'node_modules/plain-http',
      'node_modules/swapped',
      'node_modules/file',
      'node_modules/sneaky-link',
    ]);
    expect(problems[0]).toContain('integrity is missing');
    expect(problems[1]).toContain('not a sha512 hash');
    expect(problems[6]).toContain('expected https://registry.npmjs.org/swapped/-/swapped-1.0.0.tgz');
  });

  it('fills a missing resolved with the registry URL of the same package, and only where the integrity is sha512', () => {
    const lock = lockWith({
      'node_modules/@scope/pkg': { version: '2.0.0', integrity: INTEGRITY, dev: true },
      'node_modules/weak': { version: '1.0.0', integrity: 'sha1-2jmj7l5rSw0yVb/vlWAYkK/YBwk=' },
    });
    expect(fillResolved(lock, ['server'])).toBe(1);
    const filled = lock.packages['node_modules/@scope/pkg'] ?? {};
    expect(Object.keys(filled)).toEqual(['version', 'resolved', 'integrity', 'dev']);
    expect(filled.resolved).toBe('https://registry.npmjs.org/@scope/pkg/-/pkg-2.0.0.tgz');
    expect(lockfileProblems(lock, ['server'])).toEqual([
      'node_modules/weak: integrity is not a sha512 hash (sha1-2jmj7l5rSw0yVb/…)',
      'node_modules/weak: resolved is missing (expected https://registry.npmjs.org/weak/-/weak-1.0.0.tgz)',
    ]);
  });

  it('fails the command (exit 1) on a tampered lockfile and names the entry', () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'lockfile-check-'));
    try {
      fs.writeFileSync(path.join(dir, 'package.json'), JSON.stringify({ name: 'x', workspaces: ['server'] }));
      fs.writeFileSync(path.join(dir, 'package-lock.json'), JSON.stringify(lockWith({ 'node_modules/pg': { version: '8.1.0', resolved: 'https://evil.example/pg.tgz', integrity: INTEGRITY } })));
      const run = spawnSync(process.execPath, ['--import', 'tsx', path.join(here, 'cli.ts'), dir], { encoding: 'utf8' });
      expect(run.status).toBe(1);
      expect(run.stderr).toContain('node_modules/pg: resolved is https://evil.example/pg.tgz');
      const clean = spawnSync(process.execPath, ['--import', 'tsx', path.join(here, 'cli.ts'), repo], { encoding: 'utf8' });
      expect(clean.status, clean.stderr).toBe(0);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});
