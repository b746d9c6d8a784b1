/**
 * What every bench run stands on: the backends (a database of its own on
 * PostgreSQL and a key prefix on Redis when they answer, else the embedded
 * ones), the mock upstream and LLMChat's server as child processes, and the
 * few API calls that prepare a run (sign in, create the `bench` agent).
 * `npm run bench` and the long-answer test start them the same way.
 */

import { randomBytes } from 'node:crypto';
import { connect } from 'node:net';
import path from 'node:path';
import pg from 'pg';
import { request } from 'undici';
import type { AutovacuumStandIn } from './autovacuum.js';
import { autovacuumOn, startAutovacuumStandIn } from './autovacuum.js';
import { createMemoryCgroup } from './memory-cgroup.js';
import type { ManagedProcess } from './processes.js';
import { freePort, startProcess, waitForReady } from './processes.js';

export const POSTGRES_ADMIN_URL = 'postgres://postgres@127.0.0.1:5432/postgres';
export const REDIS_HOST = '127.0.0.1';
export const REDIS_PORT = 6379;
const READY_TIMEOUT_MS = 90_000;
export const BENCH_AGENT_ID = 'bench';
export const BENCH_ADMIN = 'bench-admin';

export interface Backends {
  kind: 'postgres+redis' | 'embedded' | 'postgres+embedded-state' | 'embedded-db+redis';
  databaseUrl: string | undefined;
  databaseName: string | undefined;
  redisUrl: string | undefined;
  redisPrefix: string;
  notes: string[];
  /** Autovacuum's rules applied to the run's database, when the server's autovacuum is off (autovacuum.ts). */
  autovacuum?: AutovacuumStandIn | undefined;
}

export function randomToken(chars: number): string {
  return randomBytes(chars).toString('base64url').slice(0, chars);
}

/** One Redis command over a raw socket (RESP), returning the first reply line; enough for PING and EVAL. */
export function redisCommand(args: string[], timeoutMs: number): Promise<string> {
  return new Promise<string>((resolve, reject) => {
    const socket = connect({ host: REDIS_HOST, port: REDIS_PORT });
    let reply = '';
    const timer = setTimeout(() => {
      socket.destroy();
      reject(new Error(`no answer from Redis within ${timeoutMs} ms`));
    }, timeoutMs);
    socket.setEncoding('utf8');
    socket.on('connect', () => {
      socket.write(`*${args.length}\r\n${args.map((a) => `$${Buffer.byteLength(a)}\r\n${a}\r\n`).join('')}`);
    });
    socket.on('data', (data: string) => {
      reply += data;
      const end = reply.indexOf('\r\n');
      if (end === -1) return;
      clearTimeout(timer);
      socket.end();
      resolve(reply.slice(0, end));
    });
    socket.on('error', (error) => {
      clearTimeout(timer);
      reject(error);
    });
  });
}

const DELETE_BY_PREFIX_SCRIPT =
  "local n = 0 for _, k in ipairs(redis.call('KEYS', ARGV[1])) do redis.call('DEL', k) n = n + 1 end return n";

/** Whether PostgreSQL (as the bench's admin URL) and Redis both answer within a couple of seconds. */
export async function servicesReachable(): Promise<{ postgres: boolean; redis: boolean }> {
  const admin = new pg.Client({ connectionString: POSTGRES_ADMIN_URL, connectionTimeoutMillis: 2_000 });
  const postgres = await admin
    .connect()
    .then(() => admin.query('SELECT 1'))
    .then(
      () => true,
      () => false,
    );
  await admin.end().catch(() => undefined);
  const redis = await redisCommand(['PING'], 2_000).then(
    (pong) => pong === '+PONG',
    () => false,
  );
  return { postgres, redis };
}

/** A fresh database on PostgreSQL and a fresh Redis key prefix; the embedded ones for what does not answer (or all with `forceEmbedded`). */
export async function chooseBackends(forceEmbedded: boolean): Promise<Backends> {
  const suffix = randomBytes(4).toString('hex');
  const redisPrefix = `llmchat-bench-${suffix}:`;
  const notes: string[] = [];
  if (forceEmbedded) {
    notes.push('--embedded: using embedded PGlite and in-process state');
    return { kind: 'embedded', databaseUrl: undefined, databaseName: undefined, redisUrl: undefined, redisPrefix, notes };
  }
  let databaseUrl: string | undefined;
  let databaseName: string | undefined;
  const admin = new pg.Client({ connectionString: POSTGRES_ADMIN_URL, connectionTimeoutMillis: 3_000 });
  try {
    await admin.connect();
    databaseName = `llmchat_bench_${suffix}`;
    await admin.query(`CREATE DATABASE "${databaseName}"`);
    const url = new URL(POSTGRES_ADMIN_URL);
    url.pathname = `/${databaseName}`;
    databaseUrl = url.toString();
  } catch (error) {
    databaseName = undefined;
    notes.push(`PostgreSQL at ${POSTGRES_ADMIN_URL} unusable (${error instanceof Error ? error.message : String(error)}): embedded PGlite instead`);
  } finally {
    await admin.end().catch(() => undefined);
  }
  let autovacuum: AutovacuumStandIn | undefined;
  if (databaseUrl !== undefined && !(await autovacuumOn(databaseUrl).catch(() => true))) {
    autovacuum = await startAutovacuumStandIn(databaseUrl);
    notes.push('PostgreSQL runs with autovacuum off: the bench applies autovacuum\'s default rules to its own database once a second (tools/src/bench/autovacuum.ts)');
  }
  let redisUrl: string | undefined;
  try {
    const pong = await redisCommand(['PING'], 2_000);
    if (pong !== '+PONG') throw new Error(`PING answered ${pong}`);
    redisUrl = `redis://${REDIS_HOST}:${REDIS_PORT}`;
  } catch (error) {
    notes.push(`Redis at redis://${REDIS_HOST}:${REDIS_PORT} unusable (${error instanceof Error ? error.message : String(error)}): in-process state instead`);
  }
  const kind: Backends['kind'] =
    databaseUrl !== undefined && redisUrl !== undefined ? 'postgres+redis'
    : databaseUrl !== undefined ? 'postgres+embedded-state'
    : redisUrl !== undefined ? 'embedded-db+redis'
    : 'embedded';
  return { kind, databaseUrl, databaseName, redisUrl, redisPrefix, notes, autovacuum };
}

async function dropDatabase(name: string): Promise<void> {
  const admin = new pg.Client({ connectionString: POSTGRES_ADMIN_URL, connectionTimeoutMillis: 3_000 });
  await admin.connect();
  try {
    try {
      await admin.query(`DROP DATABASE IF EXISTS "${name}" WITH (FORCE)`);
    } catch {
      // Before PostgreSQL 13 there is no FORCE: end the sessions first.
      await admin.query('SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()', [name]);
      await admin.query(`DROP DATABASE IF EXISTS "${name}"`);
    }
  } finally {
    await admin.end().catch(() => undefined);
  }
}

/** Drops the run's database and deletes its Redis keys; reports what could not be cleaned instead of throwing. */
export async function releaseBackends(backends: Backends, report: (line: string) => void): Promise<void> {
  if (backends.autovacuum !== undefined) {
    await backends.autovacuum.stop();
    const { vacuums, analyzes } = backends.autovacuum.counts();
    report(`autovacuum stand-in: ${vacuums} VACUUM ANALYZE, ${analyzes} ANALYZE`);
  }
  if (backends.databaseName !== undefined) {
    const name = backends.databaseName;
    await dropDatabase(name).catch((error: unknown) => report(`could not drop database ${name}: ${error instanceof Error ? error.message : String(error)}`));
  }
  if (backends.redisUrl !== undefined) {
    await redisCommand(['EVAL', DELETE_BY_PREFIX_SCRIPT, '0', `${backends.redisPrefix}*`], 10_000).catch((error: unknown) =>
      report(`could not delete Redis keys ${backends.redisPrefix}*: ${error instanceof Error ? error.message : String(error)}`),
    );
  }
}

// ---------------------------------------------------------------- processes

/** `command args` as given, or wrapped in `prlimit` to raise the child's open-files limit to `openFiles`. */
function withOpenFiles(command: string, args: readonly string[], openFiles: number | undefined): [string, string[]] {
  return openFiles === undefined ? [command, [...args]] : ['prlimit', [`--nofile=${openFiles}:${openFiles}`, '--', command, ...args]];
}

/** The mock upstream as a child process; resolves with it and its base URL once it listens. */
export async function startMock(
  root: string,
  defaults: { chunks: number; intervalMs: number },
  openFiles?: number,
  /** Serve HTTPS (HTTP/2 and HTTP/1.1) with these PEM files. */
  tls?: { keyFile: string; certFile: string },
): Promise<{ mock: ManagedProcess; url: string }> {
  const [command, args] = withOpenFiles(
    process.execPath,
    [
      path.join(root, 'tools/dist/mock-upstream/cli.js'),
      '--port', '0', '--host', '127.0.0.1', '--chunks', String(defaults.chunks), '--interval', String(defaults.intervalMs),
      ...(tls ? ['--tls-key', tls.keyFile, '--tls-cert', tls.certFile] : []),
    ],
    openFiles,
  );
  const mock = startProcess('mock', command, args, { env: process.env, cwd: root });
  try {
    const url = (await mock.waitForLine(/^https?:\/\/127\.0\.0\.1:\d+/, 15_000)).trim();
    return { mock, url };
  } catch (error) {
    await mock.stop(5_000);
    throw error;
  }
}

export interface ServerSettings {
  root: string;
  backends: Backends;
  dataDir: string;
  /** The server's WORKERS. */
  workers: number;
  /** Environment the bench sets on top of its own (its defaults first, then these: `--server-env`). */
  env: Record<string, string>;
  /** Extra node flags, e.g. `--cpu-prof`. */
  nodeArgs?: readonly string[];
  /** Raise the server's open-files limit to this (through `prlimit`). */
  openFiles?: number;
  /** Run the server in a memory cgroup of this many bytes (`--server-memory-limit`), as in a container with a limit. */
  memoryLimitBytes?: number | undefined;
}

export interface RunningServer {
  process: ManagedProcess;
  /** `http://127.0.0.1:PORT` */
  base: string;
  adminPassword: string;
}

/**
 * The bench's server environment: production mode, quiet logs, no chat or
 * login rate limit (one user sends every turn) and a day-long token; then
 * `extra` on top.
 */
export function serverEnv(port: number, settings: Pick<ServerSettings, 'backends' | 'dataDir' | 'workers' | 'env'>, adminPassword: string): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {
    ...process.env,
    NODE_ENV: 'production',
    PORT: String(port),
    HOST: '127.0.0.1',
    DATA_DIR: settings.dataDir,
    REDIS_KEY_PREFIX: settings.backends.redisPrefix,
    JWT_SECRET: randomToken(48),
    SECRETS_KEY: randomToken(48),
    ADMIN_USERNAME: BENCH_ADMIN,
    ADMIN_PASSWORD: adminPassword,
    MOCK_UPSTREAM: 'false',
    LOG_LEVEL: 'warn',
    WORKERS: String(settings.workers),
    // Long runs outlive the default 15-minute access token.
    ACCESS_TOKEN_TTL: '86400',
    CHAT_RATE_LIMIT_PER_MINUTE: '0',
    LOGIN_RATE_LIMIT_PER_MINUTE: '0',
    // The bench's mock upstream listens on loopback, which the outbound policy refuses unless allowed.
    UPSTREAM_ALLOWED_CIDRS: '127.0.0.0/8',
  };
  for (const name of ['DATABASE_URL', 'DATABASE_READ_URL', 'REDIS_URL', 'AGENTS_CONFIG_PATH']) delete env[name];
  if (settings.backends.databaseUrl !== undefined) env.DATABASE_URL = settings.backends.databaseUrl;
  if (settings.backends.redisUrl !== undefined) env.REDIS_URL = settings.backends.redisUrl;
  return { ...env, ...settings.env };
}

/** Starts LLMChat's server and waits until it is ready; on failure the error carries its last output. */
export async function startServer(settings: ServerSettings): Promise<RunningServer> {
  const port = await freePort();
  const adminPassword = randomToken(24);
  const env = serverEnv(port, settings, adminPassword);
  const base = `http://127.0.0.1:${port}`;
  const [node, nodeArgs] = withOpenFiles(process.execPath, [...(settings.nodeArgs ?? []), path.join(settings.root, 'server/dist/main.js')], settings.openFiles);
  const cgroup = settings.memoryLimitBytes === undefined ? undefined : createMemoryCgroup(settings.memoryLimitBytes, `llmchat-bench-${process.pid}-${port}`);
  const [command, args] = cgroup === undefined ? [node, nodeArgs] : cgroup.wrap(node, nodeArgs);
  const server = startProcess('server', command, args, { env, cwd: settings.root });
  if (cgroup !== undefined) void server.exited.then(() => cgroup.remove());
  try {
    await waitForReady(`${base}/health/ready`, READY_TIMEOUT_MS, server);
  } catch (error) {
    await server.stop(5_000);
    throw new Error(`${error instanceof Error ? error.message : String(error)}\n--- server output ---\n${server.tail().join('\n')}`, { cause: error });
  }
  return { process: server, base, adminPassword };
}

// ---------------------------------------------------------------- API setup

export async function callJson(method: 'GET' | 'POST', url: string, token: string | undefined, body?: unknown, timeoutMs = 30_000): Promise<{ status: number; body: unknown }> {
  const headers: Record<string, string> = {};
  if (token !== undefined) headers.authorization = `Bearer ${token}`;
  if (body !== undefined) headers['content-type'] = 'application/json';
  const response = await request(url, {
    method,
    headers,
    body: body === undefined ? undefined : JSON.stringify(body),
    headersTimeout: timeoutMs,
    bodyTimeout: timeoutMs,
  });
  const text = await response.body.text();
  let parsed: unknown = text;
  try {
    parsed = JSON.parse(text) as unknown;
  } catch {
    // keep the text
  }
  return { status: response.statusCode, body: parsed };
}

export function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

export function excerpt(value: unknown): string {
  const text = typeof value === 'string' ? value : JSON.stringify(value);
  return text.length > 400 ? `${text.slice(0, 400)}…` : text;
}

export async function login(base: string, username: string, password: string): Promise<string> {
  const response = await callJson('POST', `${base}/api/auth/login`, undefined, { username, password });
  const body = response.body;
  const token =
    isRecord(body) && typeof body.token === 'string' ? body.token
    : isRecord(body) && isRecord(body.data) && typeof body.data.token === 'string' ? body.data.token
    : undefined;
  if (response.status !== 200 || token === undefined) throw new Error(`login failed: HTTP ${response.status} ${excerpt(body)}`);
  return token;
}

/** Creates the `bench` agent; on a validation error, retries once with only the essential fields. */
export async function createAgent(base: string, token: string, mockUrl: string): Promise<string[]> {
  const essential = {
    id: BENCH_AGENT_ID,
    name: 'Bench',
    provider: 'openai',
    endpoint: `${mockUrl}/v1/chat/completions`,
    apiKey: 'bench-key',
    model: 'mock-model',
    isActive: true,
  };
  const full = { ...essential, description: 'benchmark agent', capabilities: [], features: { supportsStream: true } };
  const first = await callJson('POST', `${base}/api/agents`, token, full);
  if (first.status === 200 || first.status === 201) return [];
  if (first.status !== 400 && first.status !== 422) throw new Error(`creating the bench agent failed: HTTP ${first.status} ${excerpt(first.body)}`);
  const second = await callJson('POST', `${base}/api/agents`, token, essential);
  if (second.status === 200 || second.status === 201) {
    return [`the agents API rejected the full body (HTTP ${first.status} ${excerpt(first.body)}); created with the essential fields only`];
  }
  throw new Error(`creating the bench agent failed: HTTP ${first.status} ${excerpt(first.body)}; minimal body: HTTP ${second.status} ${excerpt(second.body)}`);
}
