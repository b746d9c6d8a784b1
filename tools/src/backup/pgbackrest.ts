/**
 * Running the pgbackrest binary: as the user that owns the database files,
 * against one config file and stanza, every command bounded in time.
 */

import { execFileSync, spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import path from 'node:path';

/** The pgbackrest binary: LLMCHAT_PGBACKREST, else the first on PATH. */
export function pgbackrestPath(): string | undefined {
  const fromEnv = process.env.LLMCHAT_PGBACKREST;
  if (fromEnv) return fromEnv;
  for (const dir of (process.env.PATH ?? '/usr/bin').split(path.delimiter)) {
    const candidate = path.join(dir, 'pgbackrest');
    if (dir !== '' && existsSync(candidate)) return candidate;
  }
  return undefined;
}

export interface OsUser {
  uid: number;
  gid: number;
}

/**
 * PostgreSQL and pgBackRest refuse to run as root: as root, they run as the
 * named user (the owner of the data directory and repository); anyone else
 * runs them as themselves.
 */
export function databaseOsUser(name = 'postgres'): OsUser | undefined {
  if (process.getuid?.() !== 0) return undefined;
  const id = (flag: string) => Number(execFileSync('id', [flag, name], { stdio: ['ignore', 'pipe', 'pipe'] }).toString().trim());
  return { uid: id('-u'), gid: id('-g') };
}

/** Which repository and cluster a command acts on. */
export interface Stanza {
  stanza: string;
  /** pgbackrest.conf; pgbackrest's default when unset. */
  configPath?: string;
  /** Options that override the config file's, e.g. `pg1-path` or `repo1-path`. */
  overrides?: Readonly<Record<string, string>>;
  osUser?: OsUser;
}

export class PgbackrestError extends Error {
  constructor(
    readonly command: string,
    readonly exitCode: number | null,
    readonly output: string,
  ) {
    super(`pgbackrest ${command} failed (${exitCode === null ? 'killed' : `exit ${exitCode}`}):\n${output.trim().split('\n').slice(-20).join('\n')}`);
    this.name = 'PgbackrestError';
  }
}

export interface PgbackrestRun {
  stdout: string;
  stderr: string;
}

/**
 * Runs `pgbackrest <command>`; rejects on a non-zero exit or after
 * `timeoutMs` (then the process is killed). `onLine` sees output as it comes.
 */
export function runPgbackrest(target: Stanza, command: string, args: readonly string[], options: { timeoutMs: number; onLine?: (line: string) => void }): Promise<PgbackrestRun> {
  const binary = pgbackrestPath();
  if (binary === undefined) return Promise.reject(new Error('pgbackrest not found (install the Debian package pgbackrest, or set LLMCHAT_PGBACKREST)'));
  const argv = [
    ...(target.configPath === undefined ? [] : [`--config=${target.configPath}`]),
    `--stanza=${target.stanza}`,
    ...Object.entries(target.overrides ?? {}).map(([name, value]) => `--${name}=${value}`),
    ...args,
    command,
  ];
  return new Promise((resolve, reject) => {
    // cwd `/`: the database user may not be allowed into the caller's directory.
    const child = spawn(binary, argv, { cwd: '/', env: process.env, stdio: ['ignore', 'pipe', 'pipe'], ...(target.osUser ?? {}) });
    let stdout = '';
    let stderr = '';
    let pending = '';
    const collect = (into: 'stdout' | 'stderr') => (bytes: Buffer) => {
      const text = bytes.toString();
      if (into === 'stdout') stdout += text;
      else stderr += text;
      if (options.onLine === undefined) return;
      pending += text;
      const lines = pending.split('\n');
      pending = lines.pop() ?? '';
      for (const line of lines) options.onLine(line);
    };
    child.stdout.on('data', collect('stdout'));
    child.stderr.on('data', collect('stderr'));
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      child.kill('SIGTERM');
    }, options.timeoutMs);
    child.once('error', (err) => {
      clearTimeout(timer);
      reject(err);
    });
    child.once('close', (code) => {
      clearTimeout(timer);
      if (pending !== '') options.onLine?.(pending);
      if (timedOut) reject(new PgbackrestError(command, null, `${stdout}${stderr}\n(no result within ${Math.round(options.timeoutMs / 1000)} s)`));
      else if (code !== 0) reject(new PgbackrestError(command, code, `${stdout}${stderr}`));
      else resolve({ stdout, stderr });
    });
  });
}

/** The parts of `pgbackrest info --output=json` this tool reads. */
export interface StanzaInfo {
  name: string;
  status: { code: number; message: string };
  archive: { id: string; min: string | null; max: string | null }[];
  backup: BackupInfo[];
}

export interface BackupInfo {
  label: string;
  type: 'full' | 'diff' | 'incr';
  timestamp: { start: number; stop: number };
  info: { size: number; delta: number; repository: { size: number; delta: number } };
  archive: { start: string | null; stop: string | null };
  prior: string | null;
}

export async function stanzaInfo(target: Stanza, timeoutMs: number): Promise<StanzaInfo | undefined> {
  const { stdout } = await runPgbackrest(target, 'info', ['--output=json'], { timeoutMs });
  const stanzas = JSON.parse(stdout) as StanzaInfo[];
  return stanzas.find((s) => s.name === target.stanza);
}
