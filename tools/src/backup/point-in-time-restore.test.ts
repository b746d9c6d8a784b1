import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { chownSync, existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { promisify } from 'node:util';
import { afterAll, describe, expect, it } from 'vitest';
import { freePort } from '../bench/processes.js';
import { runTurn, type TurnTrace } from '../drill/turn-client.js';
import { storedTurns, streamingLeft } from '../drill/verify.js';
import { queryRows } from '../local-cluster/sql.js';
import { llmchatInstance, REPO_ROOT, SERVER_MAIN, type LlmchatInstance } from '../local-cluster/instance.js';
import { postgresBinDir, startPostgres, type DisposableService } from '../local-cluster/services.js';
import { archiveSettings, DEFAULT_ARCHIVE_TIMEOUT_SECONDS, postgresqlConfLines } from './archive-settings.js';
import { renderShippedPgbackrestConfig } from './pgbackrest-config.js';
import { databaseOsUser, pgbackrestPath } from './pgbackrest.js';
import type { RestoredCluster } from './restore.js';

/**
 * Issue 12, point 4: LLMChat's chat turns written through the real server
 * into a PostgreSQL that archives its WAL with pgBackRest (the shipped
 * config), base backups taken by `npm run backup`'s CLI, then
 * `npm run restore -- --to T` into a fresh cluster: every turn acknowledged
 * before T is there with its final text, no turn started after T is, and an
 * LLMChat instance serves the restored data. Prints the RPO and RTO
 * measured. Runs the built server and CLI (npm test builds first).
 */
const BACKUP_CLI = path.join(REPO_ROOT, 'tools/dist/backup/cli.js');
const available = pgbackrestPath() !== undefined && postgresBinDir() !== undefined && existsSync(SERVER_MAIN) && existsSync(BACKUP_CLI);
const required = process.env.LLMCHAT_REQUIRE_SERVICES === '1';
const STANZA = 'llmchat';
const WAIT_MS = 60_000;
const run = promisify(execFile);

describe('point-in-time restore', () => {
  it.runIf(required)('has pgbackrest, PostgreSQL, the built server and the built backup CLI (LLMCHAT_REQUIRE_SERVICES=1)', () => {
    expect({ pgbackrest: pgbackrestPath() !== undefined, postgres: postgresBinDir() !== undefined, server: existsSync(SERVER_MAIN), cli: existsSync(BACKUP_CLI) }).toEqual({
      pgbackrest: true,
      postgres: true,
      server: true,
      cli: true,
    });
  });
});

async function until(what: string, condition: () => Promise<boolean>, timeoutMs = WAIT_MS): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await condition())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(100);
  }
}

/** The backup CLI as an operator runs it; resolves with its stdout. */
async function cli(args: string[]): Promise<string> {
  try {
    const { stdout } = await run(process.execPath, [BACKUP_CLI, ...args], { cwd: REPO_ROOT, timeout: 120_000, maxBuffer: 16 * 1024 * 1024, env: { PATH: process.env.PATH } });
    return stdout;
  } catch (err) {
    const { stdout, stderr } = err as { stdout?: string; stderr?: string };
    throw new Error(`backup CLI ${args[0]} failed: ${(err as Error).message}\n${stdout ?? ''}${stderr ?? ''}`, { cause: err });
  }
}

/** Whether WAL up to `walFile` is in the repository, and when PostgreSQL last archived a segment (ms since the epoch). */
async function archivedThrough(url: string, walFile: string): Promise<number | undefined> {
  const [row] = await queryRows<{ wal: string | null; at: string | null }>(url, 'SELECT last_archived_wal AS wal, extract(epoch FROM last_archived_time) * 1000 AS at FROM pg_stat_archiver');
  // Skips `.backup` and `.history` names: only a segment's name says which WAL is in.
  if (row?.wal == null || row.at === null || !/^[0-9A-F]{24}$/.test(row.wal)) return undefined;
  return row.wal >= walFile ? Number(row.at) : undefined;
}

async function currentWalFile(url: string): Promise<string> {
  const [row] = await queryRows<{ file: string }>(url, 'SELECT pg_walfile_name(pg_current_wal_lsn()) AS file');
  if (row === undefined) throw new Error('no WAL position');
  return row.file;
}

describe.skipIf(!available)('point-in-time restore', () => {
  const cleanup: (() => Promise<unknown>)[] = [];
  afterAll(async () => {
    for (const step of cleanup.reverse()) await step().catch((err: unknown) => console.error('cleanup:', err));
  }, 60_000);

  it('restores to a moment T: every turn acknowledged before T with its final text, none started after T; LLMChat serves it (prints RPO and RTO)', async () => {
    const osUser = databaseOsUser();
    const work = mkdtempSync(path.join(tmpdir(), 'llmchat-backup-'));
    cleanup.push(async () => rmSync(work, { recursive: true, force: true }));
    for (const dir of ['repo', 'log', 'lock']) mkdirSync(path.join(work, dir));
    if (osUser) for (const dir of ['.', 'repo', 'log', 'lock']) chownSync(path.join(work, dir), osUser.uid, osUser.gid);

    // A throw-away PostgreSQL that archives into a repository of its own, as the shipped config says.
    const postgres: DisposableService = await startPostgres();
    cleanup.push(() => postgres.dispose());
    const [where] = await queryRows<{ data: string; socket: string }>(postgres.url, "SELECT current_setting('data_directory') AS data, current_setting('unix_socket_directories') AS socket");
    if (where === undefined) throw new Error('no data directory');
    const configPath = path.join(work, 'pgbackrest.conf');
    writeFileSync(
      configPath,
      renderShippedPgbackrestConfig({ pgData: where.data, pgPort: postgres.port, pgSocket: where.socket, repoPath: path.join(work, 'repo'), logPath: path.join(work, 'log'), lockPath: path.join(work, 'lock'), stanza: STANZA }),
    );
    if (osUser) chownSync(configPath, osUser.uid, osUser.gid);
    for (const line of postgresqlConfLines({ ...archiveSettings({ stanza: STANZA, configPath }) })) await queryRows(postgres.url, `ALTER SYSTEM SET ${line}`);
    await postgres.stop();
    await postgres.start();
    expect(await queryRows(postgres.url, "SELECT current_setting('archive_mode') AS mode, current_setting('archive_timeout') AS timeout")).toEqual([
      { mode: 'on', timeout: `${DEFAULT_ARCHIVE_TIMEOUT_SECONDS}s` },
    ]);

    // LLMChat on it: migrations at start, answers from the in-process simulated upstream. A dozen turns stay under the default rate limits.
    const adminPassword = randomBytes(18).toString('base64url');
    const env: NodeJS.ProcessEnv = {
      PATH: process.env.PATH,
      NODE_ENV: 'production',
      JWT_SECRET: randomBytes(32).toString('base64url'),
      SECRETS_KEY: randomBytes(32).toString('base64url'),
      ADMIN_PASSWORD: adminPassword,
      LOG_LEVEL: 'warn',
    };
    const instances: LlmchatInstance[] = [];
    cleanup.push(async () => Promise.all(instances.map((instance) => instance.crash())));
    const startInstance = async (name: string, databaseUrl: string, extra: Record<string, string>): Promise<LlmchatInstance> => {
      const dataDir = mkdtempSync(path.join(work, `${name}-`));
      const instance = llmchatInstance({ name, port: await freePort(), env: { ...env, DATABASE_URL: databaseUrl, DATA_DIR: dataDir, ...extra } });
      instances.push(instance);
      await instance.start();
      return instance;
    };
    const original = await startInstance('original', postgres.url, { MOCK_UPSTREAM: 'true', MOCK_UPSTREAM_PORT: String(await freePort()) });
    const login = async (origin: string): Promise<string> => {
      const response = await fetch(`${origin}/api/auth/login`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ username: 'admin', password: adminPassword }) });
      expect(response.status, `login at ${origin}`).toBe(200);
      return ((await response.json()) as { token: string }).token;
    };
    const token = await login(original.url);

    const tag = `pitr-${Date.now().toString(36)}`;
    /** Turns run side by side; resolves once each ended complete and its row is final. */
    const turns = async (label: string, count: number): Promise<TurnTrace[]> => {
      const traces = await Promise.all(
        Array.from({ length: count }, (_, i) => runTurn({ origin: original.url, token, agentId: 'demo', question: `${tag} ${label} ${i}`, deadlineMs: 30_000 })),
      );
      expect(traces.map((t) => [t.question, t.outcome, t.errorCode])).toEqual(traces.map((t) => [t.question, 'complete', undefined]));
      await until(`the ${label} turns' final writes`, async () => (await streamingLeft(postgres.url, tag)) === 0);
      return traces;
    };

    const beforeFull = await turns('before-full', 3);
    // The first backup is full (asked for); the next builds on it.
    const full = await cli(['backup', '--type', 'full', '--config', configPath, '--stanza', STANZA]);
    console.log(full);
    expect(full).toMatch(/done: full backup \S+F: /);
    // The shipped config is read by pgBackRest itself: an option it does not know would be a warning.
    expect(full).not.toMatch(/WARN|ERROR/);
    const beforeIncr = await turns('before-incr', 2);
    const incr = await cli(['backup', '--config', configPath, '--stanza', STANZA]);
    expect(incr).toMatch(/done: incr backup \S+I on top of \S+F: /);
    expect(incr).not.toMatch(/WARN|ERROR/);

    // Only in the WAL archive: restoring them proves the replay, not just the base backup.
    const walOnly = await turns('wal-only', 3);
    const committedAt = Date.now();
    const walFile = await currentWalFile(postgres.url);
    const targetTime = new Date();
    // RPO: how long the newest acknowledged data lived only on the database host, i.e. until the archive held it.
    let archivedAt: number | undefined;
    await until('the WAL holding the last acknowledged turn in the archive', async () => (archivedAt = await archivedThrough(postgres.url, walFile)) !== undefined, (DEFAULT_ARCHIVE_TIMEOUT_SECONDS + 30) * 1000);
    const rpoMs = Math.max(0, (archivedAt ?? committedAt) - committedAt);

    await sleep(20);
    const afterTarget = await turns('after-target', 2);
    expect(Math.min(...afterTarget.map((t) => t.startedAt))).toBeGreaterThan(targetTime.getTime());
    // Recovery stops at the first commit past T, so that commit must be in the archive too.
    const lastFile = await currentWalFile(postgres.url);
    await queryRows(postgres.url, 'SELECT pg_switch_wal()');
    await until('the WAL after T in the archive', async () => (await archivedThrough(postgres.url, lastFile)) !== undefined);

    // RTO: from "restore" to an LLMChat instance ready on the restored data.
    const restoreStarted = Date.now();
    // Into the work directory, so that a failed restore's files go with it too.
    const output = await cli(['restore', '--to', targetTime.toISOString(), '--into', path.join(work, 'restored'), '--json', '--config', configPath, '--stanza', STANZA]);
    const restored = JSON.parse(output.trim().split('\n').at(-1) ?? '') as RestoredCluster;
    cleanup.push(async () => {
      // The restored cluster outlives the CLI by design: stop it by its pid (after the instance on it).
      await Promise.all(instances.map((instance) => instance.crash()));
      process.kill(restored.pid, 'SIGQUIT');
      await until('the restored PostgreSQL to exit', async () => {
        try {
          process.kill(restored.pid, 0);
          return false;
        } catch {
          return true;
        }
      }, 30_000);
    });
    expect({ dataDir: restored.dataDir, port: restored.port === postgres.port }).toEqual({ dataDir: path.join(work, 'restored'), port: false });
    const recoveredApp = await startInstance('restored', restored.url, { MOCK_UPSTREAM: 'false' });
    const rtoMs = Date.now() - restoreStarted;
    await login(recoveredApp.url);

    const kept = await storedTurns(restored.url, tag);
    const expected = [...beforeFull, ...beforeIncr, ...walOnly].map((t) => ({ question: t.question, copies: 1, status: 'complete', content: t.text }));
    expect([...kept.values()].map(({ question, copies, status, content }) => ({ question, copies, status, content })).sort((a, b) => a.question.localeCompare(b.question))).toEqual(
      expected.sort((a, b) => a.question.localeCompare(b.question)),
    );
    // The original has the turns after T: their absence above is the restore's doing.
    const originalTurns = await storedTurns(postgres.url, tag);
    expect(afterTarget.map((t) => originalTurns.get(t.question)?.status)).toEqual(afterTarget.map(() => 'complete'));

    console.log(
      [
        `point-in-time restore to ${targetTime.toISOString()}: ${kept.size} turns kept, ${afterTarget.length} later ones left out`,
        `RPO: ${(rpoMs / 1000).toFixed(1)} s from the last acknowledged commit until the archive held it (bound: archive_timeout ${DEFAULT_ARCHIVE_TIMEOUT_SECONDS} s plus one archive-push; target < 1 h)`,
        `RTO: ${(rtoMs / 1000).toFixed(1)} s from "restore" to LLMChat ready on the restored data (copy ${(restored.restoreMs / 1000).toFixed(1)} s, WAL replay and promotion ${(restored.recoveryMs / 1000).toFixed(1)} s; target < 10 min)`,
      ].join('\n'),
    );
  }, 240_000);
});
