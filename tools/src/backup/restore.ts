/**
 * `npm run restore`: a fresh PostgreSQL cluster from the pgBackRest
 * repository, recovered to a moment (or to the end of the archive),
 * promoted, and started on its own loopback port. The running cluster the
 * backups came from is never touched.
 */

import { spawn } from 'node:child_process';
import { chownSync, closeSync, existsSync, mkdirSync, mkdtempSync, openSync, readdirSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import pg from 'pg';
import { freePort } from '../bench/processes.js';
import { postgresBinDir } from '../local-cluster/services.js';
import { runPgbackrest, type Stanza } from './pgbackrest.js';
import type { RecoveryTarget } from './recovery-target.js';

export interface RestoreOptions {
  /** Where the backups are; its pg1-path (the live cluster) is replaced by `into`. */
  source: Stanza;
  target: RecoveryTarget;
  /** The new data directory: absent or empty. A new temporary directory when unset. */
  into?: string;
  /** A free port when unset. */
  port?: number;
  /** For the printed URL and the readiness check (a password comes from PGPASSWORD, as for any libpq client). */
  user?: string;
  database?: string;
  /** Restore, recovery and promotion together. */
  timeoutMs: number;
  onStep?: (step: string) => void;
  onLine?: (line: string) => void;
}

export interface RestoredCluster {
  /** postgres://user@127.0.0.1:port/database, no password. */
  url: string;
  dataDir: string;
  port: number;
  /** The postmaster's process id (it keeps running; stop it with `pg_ctl -D dataDir stop`). */
  pid: number;
  /** What was asked for, as given to pgBackRest (`latest` or the time). */
  target: string;
  /** PostgreSQL's output from its start. */
  logFile: string;
  /** Copying the backup into place. */
  restoreMs: number;
  /** From starting PostgreSQL to its first committed write (WAL replay and promotion). */
  recoveryMs: number;
}

const POLL_MS = 200;

function prepareDataDir(into: string | undefined, owner: Stanza['osUser']): string {
  if (into === undefined) {
    const dir = mkdtempSync(path.join(tmpdir(), 'llmchat-restore-'));
    if (owner) chownSync(dir, owner.uid, owner.gid);
    return dir;
  }
  const dir = path.resolve(into);
  if (existsSync(dir) && readdirSync(dir).length > 0) throw new Error(`${dir} is not empty: a restore goes into a new, empty directory`);
  // PostgreSQL refuses a data directory others may read.
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  if (owner) chownSync(dir, owner.uid, owner.gid);
  return dir;
}

/** The binaries of the backup's own major version when installed side by side (Debian), else the default ones. */
function binDirFor(dataDir: string): string {
  const version = readFileSync(path.join(dataDir, 'PG_VERSION'), 'utf8').trim();
  const matching = `/usr/lib/postgresql/${version}/bin`;
  if (process.env.LLMCHAT_PG_BIN === undefined && existsSync(path.join(matching, 'postgres'))) return matching;
  const bin = postgresBinDir();
  if (bin === undefined) throw new Error(`PostgreSQL ${version} binaries not found (install postgresql-${version}, or set LLMCHAT_PG_BIN)`);
  return bin;
}

function logTail(file: string, lines = 20): string {
  try {
    return readFileSync(file, 'utf8').trimEnd().split('\n').slice(-lines).join('\n');
  } catch {
    return '(no log)';
  }
}

/** True once the server is out of recovery and has committed a transaction that needed a transaction id. */
async function acceptsWrites(url: string): Promise<{ ok: boolean; why: string }> {
  const client = new pg.Client({ connectionString: url, connectionTimeoutMillis: 2_000, query_timeout: 5_000 });
  try {
    await client.connect();
    const { rows } = await client.query<{ recovering: boolean }>('SELECT pg_is_in_recovery() AS recovering');
    if (rows[0]?.recovering !== false) return { ok: false, why: 'replaying WAL' };
    await client.query('SELECT pg_current_xact_id()');
    return { ok: true, why: '' };
  } catch (err) {
    return { ok: false, why: err instanceof Error ? err.message : String(err) };
  } finally {
    await client.end().catch(() => undefined);
  }
}

export async function restoreCluster(options: RestoreOptions): Promise<RestoredCluster> {
  const step = options.onStep ?? (() => undefined);
  const deadline = Date.now() + options.timeoutMs;
  const owner = options.source.osUser;
  const dataDir = prepareDataDir(options.into, owner);

  const target = options.target.type === 'time' ? options.target.time : 'latest';
  const recoveryArgs = options.target.type === 'time' ? ['--type=time', `--target=${options.target.time}`, '--target-action=promote'] : ['--type=default'];
  step(`pgbackrest restore (${options.target.type === 'time' ? `to ${target}` : 'to the end of the archive'}) into ${dataDir}`);
  const restoreStarted = Date.now();
  await runPgbackrest(
    { ...options.source, overrides: { ...options.source.overrides, 'pg1-path': dataDir } },
    'restore',
    // A copy that archived into the same stanza would mix a second history into the original's archive.
    [...recoveryArgs, '--archive-mode=off', '--log-level-console=info'],
    { timeoutMs: Math.max(1, deadline - Date.now()), onLine: options.onLine },
  );
  const restoreMs = Date.now() - restoreStarted;

  if (!existsSync(path.join(dataDir, 'postgresql.conf'))) {
    throw new Error(`the backup holds no postgresql.conf (a Debian cluster keeps it under /etc/postgresql): copy one into ${dataDir}, then start it with pg_ctl`);
  }
  const port = options.port ?? (await freePort());
  const user = options.user ?? 'postgres';
  const database = options.database ?? 'postgres';
  const url = `postgres://${encodeURIComponent(user)}@127.0.0.1:${port}/${encodeURIComponent(database)}`;
  const settings = [
    // Its own address, loopback only, and no Unix socket that could clash with the original's.
    'listen_addresses=127.0.0.1',
    'unix_socket_directories=',
    // Alone now: a synchronous standby list copied from a replicated primary would hold every commit for ever.
    'synchronous_standby_names=',
    // With hot standby on, recovery stops unless max_connections and the like are at least the original's, which
    // are not always in the data directory (Patroni passes them on the command line). Nobody reads the copy mid-replay.
    'hot_standby=off',
    // Patroni names these files by absolute path, which points at the original cluster's directory.
    ...['hba', 'ident'].filter((kind) => existsSync(path.join(dataDir, `pg_${kind}.conf`))).map((kind) => `${kind}_file=${path.join(dataDir, `pg_${kind}.conf`)}`),
  ];
  const args = ['-D', dataDir, '-p', String(port), ...settings.flatMap((setting) => ['-c', setting])];
  const logFile = path.join(dataDir, 'startup.log');
  const log = openSync(logFile, 'a', 0o600);
  if (owner) chownSync(logFile, owner.uid, owner.gid);
  step(`starting PostgreSQL on 127.0.0.1:${port}`);
  const recoveryStarted = Date.now();
  // Detached: the restored cluster outlives this command, as a server started with pg_ctl does.
  const server = spawn(path.join(binDirFor(dataDir), 'postgres'), args, { cwd: dataDir, detached: true, stdio: ['ignore', log, log], env: { PATH: process.env.PATH, LC_ALL: 'C' }, ...(owner ?? {}) });
  closeSync(log);
  let exited: string | undefined;
  server.once('exit', (code, signal) => (exited = signal === null ? `exit ${String(code)}` : `signal ${signal}`));
  server.once('error', (err) => (exited = err.message));
  server.unref();
  const pid = server.pid;
  if (pid === undefined) throw new Error(`PostgreSQL did not start: ${logTail(logFile)}`);

  let last = 'no answer yet';
  while (Date.now() < deadline) {
    if (exited !== undefined) throw new Error(`PostgreSQL stopped during recovery (${exited}); ${logFile}:\n${logTail(logFile)}`);
    const answer = await acceptsWrites(url);
    if (answer.ok) return { url, dataDir, port, pid, target, logFile, restoreMs, recoveryMs: Date.now() - recoveryStarted };
    last = answer.why;
    await sleep(POLL_MS);
  }
  // Nothing half-started is left behind: the directory stays for a look, the server does not.
  if (exited === undefined) process.kill(pid, 'SIGINT');
  throw new Error(`the restored cluster did not accept writes within ${Math.round(options.timeoutMs / 1000)} s (last: ${last}); ${logFile}:\n${logTail(logFile)}`);
}
