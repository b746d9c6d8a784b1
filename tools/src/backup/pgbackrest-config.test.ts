import { chownSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { PGBACKREST_TEMPLATE, renderPgbackrestConfig, renderShippedPgbackrestConfig } from './pgbackrest-config.js';
import { databaseOsUser, pgbackrestPath, runPgbackrest, stanzaInfo } from './pgbackrest.js';

const values = { pgData: '/var/lib/postgresql/15/main', repoPath: '/var/lib/pgbackrest' };

describe('the shipped pgbackrest.conf template', () => {
  it('is filled in whole: every placeholder replaced, the defaults those of a Debian host', () => {
    const text = renderShippedPgbackrestConfig(values);
    expect(text).not.toMatch(/\$\{LLMCHAT_[A-Z_]+\}/);
    expect(text).toMatch(/^\[llmchat\]$/m);
    expect(text).toMatch(/^pg1-path=\/var\/lib\/postgresql\/15\/main$/m);
    expect(text).toMatch(/^pg1-port=5432$/m);
    expect(text).toMatch(/^pg1-socket-path=\/var\/run\/postgresql$/m);
    expect(text).toMatch(/^repo1-path=\/var\/lib\/pgbackrest$/m);
    expect(text).toMatch(/^repo1-retention-full=2$/m);
  });

  it('refuses a placeholder it has no value for, and a value that would add a line', () => {
    expect(() => renderPgbackrestConfig('x=${LLMCHAT_SOMETHING_NEW}', values)).toThrow(/no value for placeholder \$\{LLMCHAT_SOMETHING_NEW\}/);
    expect(() => renderPgbackrestConfig(readFileSync(PGBACKREST_TEMPLATE, 'utf8'), { ...values, repoPath: '/x\nrepo1-cipher-type=none' })).toThrow(/one line/);
  });
});

describe.skipIf(pgbackrestPath() === undefined && process.env.LLMCHAT_REQUIRE_SERVICES !== '1')('the shipped pgbackrest.conf, read by pgBackRest', () => {
  const work = mkdtempSync(path.join(tmpdir(), 'llmchat-pgbackrest-conf-'));
  afterAll(() => rmSync(work, { recursive: true, force: true }));

  it('parses without a warning (an option it does not know would be one) and names an empty repository', async () => {
    const osUser = databaseOsUser();
    for (const dir of ['repo', 'log', 'lock']) mkdirSync(path.join(work, dir));
    if (osUser) for (const dir of ['.', 'repo', 'log', 'lock']) chownSync(path.join(work, dir), osUser.uid, osUser.gid);
    const configPath = path.join(work, 'pgbackrest.conf');
    writeFileSync(configPath, renderShippedPgbackrestConfig({ ...values, repoPath: path.join(work, 'repo'), logPath: path.join(work, 'log'), lockPath: path.join(work, 'lock') }));
    const target = { stanza: 'llmchat', configPath, ...(osUser ? { osUser } : {}) };

    const text = await runPgbackrest(target, 'info', [], { timeoutMs: 30_000 });
    expect(text.stderr).toBe('');
    expect(text.stdout).toMatch(/stanza: llmchat\s+status: error \(missing stanza path\)/);
    const info = await stanzaInfo(target, 30_000);
    expect(info?.backup).toEqual([]);
  });
});
