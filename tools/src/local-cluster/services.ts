/**
 * Throw-away PostgreSQL and Redis servers for failure tests and drills: each
 * on its own loopback port and temporary directory, so a test can stop, crash
 * and restart them without touching the machine's shared services.
 */

import { execFileSync } from 'node:child_process';
import { chownSync, existsSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { freePort, startProcess, type ExitInfo, type ManagedProcess } from '../bench/processes.js';
import { findBinary } from './binaries.js';

/** A server the caller can stop, crash and start again on the same port and data. */
export interface DisposableService {
  readonly port: number;
  /** Connection URL (PostgreSQL: database `postgres`, user `postgres`, trust auth). */
  readonly url: string;
  readonly running: boolean;
  /** The running process's id. */
  readonly pid: number | undefined;
  /** Starts it (again) and waits until it answers. */
  start(): Promise<void>;
  /** A clean shutdown. */
  stop(): Promise<ExitInfo | undefined>;
  /** A crash: SIGKILL, no shutdown work. */
  crash(): Promise<ExitInfo | undefined>;
  /** Stops it and deletes its files. */
  dispose(): Promise<void>;
  /** The last lines it printed (for failure messages). */
  tail(): string[];
}

const READY_TIMEOUT_MS = 30_000;

/** PostgreSQL's binaries: LLMCHAT_PG_BIN, else the newest Debian install under /usr/lib/postgresql. */
export function postgresBinDir(): string | undefined {
  const fromEnv = process.env.LLMCHAT_PG_BIN;
  if (fromEnv) return fromEnv;
  const root = '/usr/lib/postgresql';
  if (!existsSync(root)) return undefined;
  const versions = readdirSync(root)
    .filter((v) => existsSync(path.join(root, v, 'bin', 'postgres')))
    .sort((a, b) => Number(b) - Number(a));
  return versions[0] === undefined ? undefined : path.join(root, versions[0], 'bin');
}

export function redisServerPath(): string | undefined {
  return findBinary('redis-server');
}

/** PostgreSQL refuses to run as root: as root, its files and process belong to the `postgres` user. */
export function postgresOwner(): { uid: number; gid: number } | undefined {
  if (process.getuid?.() !== 0) return undefined;
  const uid = Number(execFileSync('id', ['-u', 'postgres']).toString().trim());
  const gid = Number(execFileSync('id', ['-g', 'postgres']).toString().trim());
  return { uid, gid };
}

/** Resolves once something accepts TCP connections on the port, or rejects after `timeoutMs`. */
export async function waitForPort(port: number, timeoutMs: number, process: ManagedProcess, probe?: (port: number) => Promise<boolean>): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (process.exitInfo() !== undefined) throw new Error(`${process.name} exited while starting:\n${process.tail().join('\n')}`);
    if (probe ? await probe(port).catch(() => false) : await tcpOpen(port)) return;
    await sleep(50);
  }
  throw new Error(`${process.name} did not answer on port ${port} within ${timeoutMs} ms:\n${process.tail().join('\n')}`);
}

function tcpOpen(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect({ host: '127.0.0.1', port });
    socket.once('connect', () => {
      socket.destroy();
      resolve(true);
    });
    socket.once('error', () => resolve(false));
  });
}

/** One Redis command over a raw connection (inline protocol); resolves with the first reply line. */
export function redisInline(port: number, command: string, timeoutMs = 2_000): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = connect({ host: '127.0.0.1', port });
    let data = '';
    const timer = setTimeout(() => {
      socket.destroy();
      reject(new Error(`redis on ${port}: no reply to ${command}`));
    }, timeoutMs);
    socket.once('connect', () => socket.write(`${command}\r\n`));
    socket.on('data', (chunk: Buffer) => {
      data += chunk.toString();
      const end = data.indexOf('\r\n');
      if (end < 0) return;
      clearTimeout(timer);
      socket.destroy();
      resolve(data.slice(0, end));
    });
    socket.once('error', (err) => {
      clearTimeout(timer);
      reject(err);
    });
  });
}

/**
 * A service around one process: `launch` starts it and resolves once it
 * answers; `stopSignal` is its clean shutdown. Started once before returning.
 */
export async function disposableService(spec: {
  port: number;
  url: string;
  dir: string;
  stopSignal: NodeJS.Signals;
  launch: () => Promise<ManagedProcess>;
}): Promise<DisposableService> {
  let child: ManagedProcess | undefined;
  const service: DisposableService = {
    port: spec.port,
    url: spec.url,
    get running() {
      return child !== undefined && child.exitInfo() === undefined;
    },
    get pid() {
      return service.running ? child?.pid : undefined;
    },
    async start() {
      if (service.running) return;
      child = await spec.launch();
    },
    stop: async () => child?.kill(spec.stopSignal),
    crash: async () => child?.kill('SIGKILL'),
    async dispose() {
      await child?.kill('SIGKILL');
      rmSync(spec.dir, { recursive: true, force: true });
    },
    tail: () => child?.tail() ?? [],
  };
  try {
    await service.start();
  } catch (err) {
    await service.dispose();
    throw err;
  }
  return service;
}

/** Kills a process that failed to come up, then rethrows. */
export async function failedStart(child: ManagedProcess, err: unknown): Promise<never> {
  await child.kill('SIGKILL');
  throw err;
}

/**
 * A PostgreSQL server of its own: initdb into a temporary directory. fsync is
 * off (test data only), but commits still reach the OS before they return, so
 * a crash of the server loses no committed transaction, as on a real one.
 */
export async function startPostgres(options: { port?: number } = {}): Promise<DisposableService> {
  const { bin, owner, dir, dataDir } = postgresDirs();
  execFileSync(path.join(bin, 'initdb'), ['-D', dataDir, '-A', 'trust', '-U', 'postgres', '-E', 'UTF8', '--no-sync', '--no-instructions'], {
    stdio: 'pipe',
    ...(owner ?? {}),
  });
  return postgresService({ bin, owner, dir, dataDir, port: options.port ?? (await freePort()) });
}

/**
 * A streaming replica of a throw-away PostgreSQL (pg_basebackup -R: a
 * standby that follows the primary over streaming replication, asynchronous
 * unless the primary lists it in synchronous_standby_names).
 */
export async function startStandby(primary: DisposableService, options: { port?: number } = {}): Promise<DisposableService> {
  const { bin, owner, dir, dataDir } = postgresDirs();
  execFileSync(path.join(bin, 'pg_basebackup'), ['-h', '127.0.0.1', '-p', String(primary.port), '-U', 'postgres', '-D', dataDir, '-R', '-X', 'stream', '--no-sync'], {
    stdio: 'pipe',
    ...(owner ?? {}),
  });
  return postgresService({ bin, owner, dir, dataDir, port: options.port ?? (await freePort()) });
}

function postgresDirs(): { bin: string; owner: { uid: number; gid: number } | undefined; dir: string; dataDir: string } {
  const bin = postgresBinDir();
  if (bin === undefined) throw new Error('PostgreSQL binaries not found (install postgresql, or set LLMCHAT_PG_BIN)');
  const owner = postgresOwner();
  const dir = mkdtempSync(path.join(tmpdir(), 'llmchat-pg-'));
  if (owner) chownSync(dir, owner.uid, owner.gid);
  return { bin, owner, dir, dataDir: path.join(dir, 'data') };
}

function postgresService(spec: { bin: string; owner: { uid: number; gid: number } | undefined; dir: string; dataDir: string; port: number }): Promise<DisposableService> {
  const { bin, owner, dir, dataDir, port } = spec;
  const args = ['-D', dataDir, '-p', String(port), '-k', dir, '-c', 'listen_addresses=127.0.0.1', '-c', 'fsync=off', '-c', 'full_page_writes=off', '-c', 'max_connections=200'];
  return disposableService({
    port,
    url: `postgres://postgres@127.0.0.1:${port}/postgres`,
    dir,
    // SIGINT is PostgreSQL's fast shutdown: sessions are ended, then a checkpoint.
    stopSignal: 'SIGINT',
    async launch() {
      const child = startProcess(`postgres:${port}`, path.join(bin, 'postgres'), args, { env: { PATH: process.env.PATH, LC_ALL: 'C' }, cwd: dir, ...(owner ?? {}) });
      try {
        await child.waitForLine(/database system is ready to accept (read-only )?connections/, READY_TIMEOUT_MS);
        await waitForPort(port, READY_TIMEOUT_MS, child);
      } catch (err) {
        return failedStart(child, err);
      }
      return child;
    },
  });
}

/** A Redis server of its own, in memory only. */
export async function startRedis(options: { port?: number } = {}): Promise<DisposableService> {
  const server = redisServerPath();
  if (server === undefined) throw new Error('redis-server not found (install redis-server)');
  const port = options.port ?? (await freePort());
  const dir = mkdtempSync(path.join(tmpdir(), 'llmchat-redis-'));
  return disposableService({
    port,
    url: `redis://127.0.0.1:${port}`,
    dir,
    stopSignal: 'SIGTERM',
    async launch() {
      const child = startProcess(`redis:${port}`, server, ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--dir', dir], { env: { PATH: process.env.PATH }, cwd: dir });
      try {
        await waitForPort(port, READY_TIMEOUT_MS, child, async (p) => (await redisInline(p, 'PING')) === '+PONG');
      } catch (err) {
        return failedStart(child, err);
      }
      return child;
    },
  });
}

/** The mock upstream as a process of its own (so a drill can kill it), on a fixed port across restarts. */
export async function startMockUpstreamProcess(options: {
  port?: number;
  chunks: number;
  intervalMs: number;
  /** Where its working directory is made (default: the system's temp directory). */
  parentDir?: string;
  /** Extra environment, and a file for its output (default: kept in memory). */
  env?: NodeJS.ProcessEnv;
  logFile?: string;
}): Promise<DisposableService> {
  const port = options.port ?? (await freePort());
  const dir = mkdtempSync(path.join(options.parentDir ?? tmpdir(), 'llmchat-mock-'));
  // The built CLI, whether this runs from tools/dist or (in tests) tools/src.
  const cli = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../dist/mock-upstream/cli.js');
  return disposableService({
    port,
    url: `http://127.0.0.1:${port}`,
    dir,
    stopSignal: 'SIGTERM',
    async launch() {
      const args = [cli, '--port', String(port), '--host', '127.0.0.1', '--chunks', String(options.chunks), '--interval', String(options.intervalMs)];
      const child = startProcess(`mock:${port}`, process.execPath, args, { env: { PATH: process.env.PATH, ...options.env }, cwd: dir, logFile: options.logFile });
      try {
        await waitForPort(port, READY_TIMEOUT_MS, child);
      } catch (err) {
        return failedStart(child, err);
      }
      return child;
    },
  });
}
