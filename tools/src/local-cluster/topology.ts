/**
 * A production-shaped LLMChat deployment on one machine, from real
 * processes on loopback ports below 32768, all under one directory:
 *
 *   etcd (3 members) ← Patroni (3 PostgreSQL 15 nodes, synchronous, archiving to pgBackRest) ← HAProxy (write / read ports)
 *   Redis master + replica ← 3 Sentinels
 *   N instances (DATABASE_URL / DATABASE_READ_URL on HAProxy, REDIS_URL on the Sentinels) ← nginx
 *
 * Each engine runs the config shipped under ops/. `npm run cluster` starts
 * one (cli.ts); a drill starts one with startTopology() and breaks its
 * pieces with the functions of topology-faults.ts.
 */

import { randomBytes } from 'node:crypto';
import { clusterRepository } from '../backup/cluster-repository.js';
import { pgbackrestPath } from '../backup/pgbackrest.js';
import { chmodSync, cpSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, renameSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { DEPLOYMENT_MARK, recorded, stateFileOf, writeState, type DeploymentState, type RecordedProcess } from './deployment-state.js';
import { etcdPath, startEtcdCluster, type EtcdMember } from './etcd.js';
import { haproxyPath, startHaproxy, type Haproxy } from './haproxy.js';
import { llmchatInstance, serverEnvironment, type LlmchatInstance } from './instance.js';
import { nginxPath, startNginx, type NginxProxy } from './nginx.js';
import { patroniPath, startPatroniCluster, type PatroniCluster, type PatroniNodeSpec, type PatroniSecrets } from './patroni.js';
import { canListen, portAllocator } from './ports.js';
import { allReady, createDrillAgents, createDrillUser, login } from './provision.js';
import { redisSentinelPath, startRedisSentinelSet, type RedisSentinelSet } from './redis-sentinel.js';
import { postgresBinDir, redisServerPath, startMockUpstreamProcess, type DisposableService } from './services.js';
import { landing, queryRows } from './sql.js';
import { allSettledOrThrow, waitUntil } from './wait-until.js';

export const DEFAULT_BASE_PORT = 21000;
const SCOPE = 'llmchat';
const REDIS_MASTER_NAME = 'llmchat';
const DATABASE = 'llmchat';
const APP_ROLE = 'llmchat';
/** Each PostgreSQL node has a loopback address of its own (Patroni 3.0 refuses 127.0.0.1 as a connect address). */
const NODE_HOSTS = ['127.0.0.11', '127.0.0.12', '127.0.0.13'] as const;
const PATRONI_WHOLE_TIMEOUT_MS = 180_000;
const WHOLE_TIMEOUT_MS = 60_000;
const MOCK_NAMES = ['mock-primary', 'mock-fallback'];

export interface TopologyOptions {
  /** Ports are taken from here up, each checked free (default 21000; below 32768). */
  basePort?: number;
  /** App instances behind nginx (default 3). */
  instances?: number;
  /** etcd members: 3 (losing one is survivable) or 1 (default 3). */
  etcdMembers?: 1 | 3;
  /** Patroni's synchronous_mode_strict (default false). */
  syncStrict?: boolean;
  /** The mock upstreams' answer: chunk count and spacing (default 20 chunks 25 ms apart). */
  chunks?: number;
  intervalMs?: number;
  /** The instances' agents come from this agents.json (AGENTS_CONFIG_PATH); unset: the drill's agents on mock upstreams. */
  agentsConfigPath?: string;
  /** Extra environment of the instances. */
  env?: Record<string, string>;
  /** The deployment's directory, empty or missing (default: a new one under the system's temp directory). */
  dataDir?: string;
  /** Progress, one line per step. */
  log?: (line: string) => void;
}

/** Everything another tool needs to drive the deployment; what `cluster --json` prints. */
export interface TopologyEndpoints {
  nginx: string;
  instances: { name: string; url: string; pid: number | undefined }[];
  admin: { username: string; password: string };
  /** A plain user for chat load. */
  user: { username: string; password: string };
  database: { write: string; read: string; superuser: string };
  haproxy: { write: number; read: number; stats: string };
  patroni: { name: string; rest: string; host: string; pgPort: number; dataDir: string; patroniPid: number | undefined; postmasterPid: number | undefined }[];
  redis: { url: string; sentinels: string[]; masterName: string; nodes: { name: string; port: number; pid: number | undefined }[] };
  etcd: string[];
  /** The pgBackRest repository every node archives into, and each node's pgbackrest.conf (back up with the leader's). */
  backup: { stanza: string; repo: string; configs: Record<string, string> };
  /** The mock upstreams behind the drill's agents (absent with AGENTS_CONFIG_PATH). */
  upstreams?: { primary: string; fallback: string };
  agentsConfigPath?: string;
  logs: string;
  dataDir: string;
  stateFile: string;
}

export interface Topology {
  readonly dataDir: string;
  readonly logDir: string;
  readonly etcd: readonly EtcdMember[];
  readonly patroni: PatroniCluster;
  readonly haproxy: Haproxy;
  readonly redis: RedisSentinelSet;
  /** The mock upstreams (absent with AGENTS_CONFIG_PATH). */
  readonly primary: DisposableService | undefined;
  readonly fallback: DisposableService | undefined;
  readonly instances: readonly LlmchatInstance[];
  readonly nginx: NginxProxy;
  /** The plain user's access token (valid for a day). */
  readonly token: string;
  /** Connection URLs through HAProxy: the app's role on the write and read ports, and the superuser on the write port. */
  readonly database: { write: string; read: string; superuser: string };
  /** The endpoints as of now (process ids change as pieces restart). */
  endpoints(): TopologyEndpoints;
  /**
   * Whether it is whole: Patroni has a leader and a streaming synchronous
   * standby, HAProxy sends writes to the leader and reads to a replica, the
   * Sentinels agree on the Redis master and its replicas, and every
   * instance is ready.
   */
  whole(): Promise<true | string>;
  waitUntilWhole(timeoutMs?: number): Promise<void>;
  /** Copies the logs as they are now beside the directory (`<dataDir>-logs`, which dispose() leaves), for a failure worth reading about. */
  keepLogs(): string;
  /** kill -9 everything and delete the directory. */
  dispose(): Promise<void>;
}

/** The binaries the topology runs that this machine lacks (empty when it has them all). */
export function topologyBinariesMissing(): string[] {
  return Object.entries({
    'postgresql-15': postgresBinDir(),
    patroni: patroniPath(),
    'etcd-server': etcdPath(),
    haproxy: haproxyPath(),
    pgbackrest: pgbackrestPath(),
    'redis-server': redisServerPath(),
    'redis-sentinel': redisSentinelPath(),
    nginx: nginxPath(),
  }).flatMap(([name, found]) => (found === undefined ? [name] : []));
}

function secret(): string {
  return randomBytes(18).toString('base64url');
}

/** The variables an agents.json names in `${NAME}` placeholders: the instances get these from this environment. */
function variablesNamedIn(agentsConfigPath: string): Record<string, string> {
  const names = new Set([...readFileSync(agentsConfigPath, 'utf8').matchAll(/\$\{([A-Za-z_][A-Za-z0-9_]*)\}/g)].map((m) => m[1] ?? ''));
  return Object.fromEntries([...names].flatMap((name) => (process.env[name] === undefined ? [] : [[name, process.env[name] ?? '']])));
}

export async function startTopology(options: TopologyOptions = {}): Promise<Topology> {
  const log = options.log ?? (() => undefined);
  const instanceCount = options.instances ?? 3;
  const etcdCount = options.etcdMembers ?? 3;
  const ports = portAllocator(options.basePort ?? DEFAULT_BASE_PORT);
  for (const host of NODE_HOSTS) {
    if (!(await canListen(host, 0))) throw new Error(`cannot listen on ${host}: the PostgreSQL nodes need the loopback addresses ${NODE_HOSTS.join(', ')}`);
  }
  if (options.agentsConfigPath !== undefined && !existsSync(options.agentsConfigPath)) throw new Error(`AGENTS_CONFIG_PATH ${options.agentsConfigPath} does not exist`);
  const pgBinDir = postgresBinDir();
  if (pgBinDir === undefined) throw new Error('PostgreSQL binaries not found (install postgresql-15, or set LLMCHAT_PG_BIN)');

  const dataDir = options.dataDir ?? mkdtempSync(path.join(tmpdir(), 'llmchat-topology-'));
  mkdirSync(dataDir, { recursive: true });
  if (readdirSync(dataDir).length > 0) throw new Error(`${dataDir} is not empty`);
  // PostgreSQL runs as `postgres` (when this runs as root) and must reach its directory below this one.
  chmodSync(dataDir, 0o755);
  const logDir = path.join(dataDir, 'logs');
  mkdirSync(logDir);
  const logFile = (name: string): string => path.join(logDir, `${name}.log`);
  const env: NodeJS.ProcessEnv = { PATH: process.env.PATH, [DEPLOYMENT_MARK]: dataDir };
  const owner = recorded('owner', process.pid);
  if (owner === undefined) throw new Error('cannot read this process in /proc');
  const state: DeploymentState = { version: 1, dataDir, owner, startedAt: new Date().toISOString(), processes: [] };
  writeState(state);

  // Undone in reverse on failure or dispose; every step is kill -9 (nothing here is worth a clean shutdown).
  const cleanup: (() => Promise<unknown>)[] = [];
  const track = <T extends { dispose(): Promise<void> }>(piece: T): T => {
    cleanup.push(() => piece.dispose());
    return piece;
  };
  const dispose = async (): Promise<void> => {
    for (const step of cleanup.splice(0).reverse()) await step().catch(() => undefined);
    rmSync(dataDir, { recursive: true, force: true });
  };
  /** Pieces starting in the background: on failure they settle first, so each is tracked before the cleanup. */
  const background: Promise<unknown>[] = [];

  try {
    const secrets: PatroniSecrets = { rest: secret(), superuser: secret(), replication: secret(), rewind: secret() };
    const redisPassword = secret();
    const appPassword = secret();
    const adminPassword = secret();

    const etcdPorts: { name: string; clientPort: number; peerPort: number }[] = [];
    for (let i = 1; i <= etcdCount; i++) etcdPorts.push({ name: `etcd${i}`, clientPort: await ports.next(), peerPort: await ports.next() });
    const nodeSpecs: PatroniNodeSpec[] = [];
    for (const [i, host] of NODE_HOSTS.entries()) nodeSpecs.push({ name: `pg${i + 1}`, host, pgPort: await ports.next(host), restPort: await ports.next(host) });
    const haproxyPorts = { write: await ports.next(), read: await ports.next(), stats: await ports.next() };
    const redisPorts = [await ports.next(), await ports.next()] as const;
    const sentinelPorts = [await ports.next(), await ports.next(), await ports.next()];
    const mockPorts = options.agentsConfigPath === undefined ? [await ports.next(), await ports.next()] : [];

    log(`etcd (${etcdCount} member${etcdCount === 1 ? '' : 's'}), Redis with Sentinel${mockPorts.length > 0 ? ', mock upstreams' : ''}`);
    // Redis and the mocks start while etcd and Patroni do.
    const redisStarted = startRedisSentinelSet({ masterName: REDIS_MASTER_NAME, password: redisPassword, nodePorts: redisPorts, sentinelPorts, dir: path.join(dataDir, 'redis'), logDir, env }).then(track);
    const mocksStarted = allSettledOrThrow(
      mockPorts.map(async (port, i) =>
        track(await startMockUpstreamProcess({ port, chunks: options.chunks ?? 20, intervalMs: options.intervalMs ?? 25, parentDir: dataDir, env, logFile: logFile(MOCK_NAMES[i] ?? 'mock') })),
      ),
    );
    background.push(redisStarted, mocksStarted);
    // Observed from now on: a failure before they are awaited below must not be an unhandled rejection.
    void Promise.allSettled(background);
    const etcd = (await startEtcdCluster({ members: etcdPorts, token: `llmchat-${secret()}`, dir: path.join(dataDir, 'etcd'), logDir, env })).map(track);

    log('Patroni (3 PostgreSQL nodes, archiving to pgBackRest) and HAProxy');
    const backupRepository = clusterRepository(path.join(dataDir, 'backup'));
    const patroni = track(
      await startPatroniCluster({
        nodes: nodeSpecs,
        scope: SCOPE,
        dir: path.join(dataDir, 'patroni'),
        logDir,
        etcdHosts: etcd.map((m) => m.url.replace('http://', '')),
        pgBinDir,
        syncStrict: options.syncStrict ?? false,
        secrets,
        archive: (node) => backupRepository.archive(node),
        env,
        wholeTimeoutMs: PATRONI_WHOLE_TIMEOUT_MS,
      }),
    );
    const haproxy = track(await startHaproxy({ ports: haproxyPorts, nodes: nodeSpecs, dir: path.join(dataDir, 'haproxy'), logFile: logFile('haproxy'), env }));
    const superuser = `postgres://postgres:${secrets.superuser}@127.0.0.1:${haproxyPorts.write}/postgres`;
    const database = {
      write: `postgres://${APP_ROLE}:${appPassword}@127.0.0.1:${haproxyPorts.write}/${DATABASE}`,
      read: `postgres://${APP_ROLE}:${appPassword}@127.0.0.1:${haproxyPorts.read}/${DATABASE}`,
      superuser,
    };
    await waitUntil('HAProxy sending writes to the leader', () => routedToLeader(patroni, superuser), WHOLE_TIMEOUT_MS);
    await waitUntil(`the ${APP_ROLE} role and database`, () => createAppDatabase(superuser, appPassword), WHOLE_TIMEOUT_MS);
    await waitUntil('HAProxy sending reads to a replica', () => routedToReplica(database.read), WHOLE_TIMEOUT_MS);
    const archivingLeader = await patroni.leader();
    if (archivingLeader === undefined) throw new Error('no Patroni leader to create the backup stanza on');
    await backupRepository.createStanza(archivingLeader.name, WHOLE_TIMEOUT_MS);
    const redis = await redisStarted;
    const [primary, fallback] = await mocksStarted;

    log(`${instanceCount} instance${instanceCount === 1 ? '' : 's'} and nginx`);
    const serverEnv = serverEnvironment({
      dataDir: path.join(dataDir, 'app'),
      databaseUrl: database.write,
      databaseReadUrl: database.read,
      redisUrl: redis.url,
      adminPassword,
      extra: {
        ...env,
        ...(options.agentsConfigPath === undefined ? {} : { AGENTS_CONFIG_PATH: path.resolve(options.agentsConfigPath), ...variablesNamedIn(options.agentsConfigPath) }),
        ...options.env,
      },
    });
    const instances: LlmchatInstance[] = [];
    cleanup.push(() => Promise.all(instances.map((i) => i.crash())));
    const startInstance = async (i: number): Promise<void> => {
      const name = `instance-${String.fromCharCode(65 + i)}`;
      const instance = llmchatInstance({ name, port: await ports.next(), env: serverEnv, logFile: logFile(name) });
      instances.push(instance);
      await instance.start();
    };
    // The first one runs the migrations and creates the admin; the others then start together.
    await startInstance(0);
    await allSettledOrThrow(Array.from({ length: instanceCount - 1 }, (_, i) => startInstance(i + 1)));
    instances.sort((a, b) => a.name.localeCompare(b.name));
    const nginx = track(await startNginx({ instancePorts: instances.map((i) => i.port), port: await ports.next(), parentDir: dataDir, env }));

    const adminToken = await login(nginx.url, 'admin', adminPassword);
    const user = await createDrillUser(nginx.url, adminToken);
    const mocks = primary !== undefined && fallback !== undefined ? { primary, fallback } : undefined;
    if (mocks !== undefined) await createDrillAgents(nginx.url, adminToken, { primary: mocks.primary.url, fallback: mocks.fallback.url });

    const whole = async (): Promise<true | string> => {
      const patroniWhole = await patroni.whole();
      if (patroniWhole !== true) return `Patroni: ${patroniWhole}`;
      const writes = await routedToLeader(patroni, superuser);
      if (writes !== true) return writes;
      const reads = await routedToReplica(database.read);
      if (reads !== true) return reads;
      const redisWhole = await redis.whole();
      if (redisWhole !== true) return `Redis: ${redisWhole}`;
      return (await allReady(instances.map((i) => i.url))) ? true : 'an instance is not ready';
    };
    const endpoints = (): TopologyEndpoints => ({
      nginx: nginx.url,
      instances: instances.map((i) => ({ name: i.name, url: i.url, pid: i.pid })),
      admin: { username: 'admin', password: adminPassword },
      user: { username: user.username, password: user.password },
      database,
      haproxy: { write: haproxyPorts.write, read: haproxyPorts.read, stats: haproxy.statsUrl },
      patroni: patroni.nodes.map((n) => ({ name: n.name, rest: n.restUrl, host: n.host, pgPort: n.pgPort, dataDir: n.dataDir, patroniPid: n.patroniPid, postmasterPid: n.postmasterPid() })),
      redis: { url: redis.url, sentinels: redis.sentinels.map((s) => `127.0.0.1:${s.port}`), masterName: redis.masterName, nodes: redis.nodes.map((n) => ({ name: n.name, port: n.port, pid: n.pid })) },
      etcd: etcd.map((m) => m.url),
      backup: { stanza: backupRepository.stanza, repo: backupRepository.repoPath, configs: { ...backupRepository.configs } },
      ...(mocks === undefined ? {} : { upstreams: { primary: mocks.primary.url, fallback: mocks.fallback.url } }),
      ...(options.agentsConfigPath === undefined ? {} : { agentsConfigPath: path.resolve(options.agentsConfigPath) }),
      logs: logDir,
      dataDir,
      stateFile: stateFileOf(dataDir),
    });
    const processes = (): RecordedProcess[] =>
      [
        ...etcd.map((m) => ({ name: m.name, pid: m.pid })),
        ...patroni.nodes.map((n) => ({ name: n.name, pid: n.patroniPid })),
        ...patroni.nodes.map((n) => ({ name: `${n.name}-postmaster`, pid: n.postmasterPid() })),
        { name: 'haproxy', pid: haproxy.pid },
        ...redis.nodes.map((n) => ({ name: n.name, pid: n.pid })),
        ...redis.sentinels.map((s) => ({ name: s.name, pid: s.pid })),
        ...[primary, fallback].map((m, i) => ({ name: MOCK_NAMES[i] ?? 'mock', pid: m?.pid })),
        ...instances.map((i) => ({ name: i.name, pid: i.pid })),
        { name: 'nginx', pid: nginx.pid },
      ].flatMap((p) => recorded(p.name, p.pid) ?? []);
    writeState({ ...state, processes: processes(), endpoints: endpoints() });

    return {
      dataDir,
      logDir,
      etcd,
      patroni,
      haproxy,
      redis,
      primary,
      fallback,
      instances,
      nginx,
      token: user.token,
      database,
      endpoints,
      whole,
      waitUntilWhole: (timeoutMs = WHOLE_TIMEOUT_MS) => waitUntil('the deployment whole', whole, timeoutMs),
      keepLogs() {
        const kept = `${dataDir}-logs`;
        cpSync(logDir, kept, { recursive: true });
        return kept;
      },
      dispose,
    };
  } catch (err) {
    await Promise.allSettled(background);
    // The logs say why; they outlive the rest of the directory (unless someone removed it already).
    const keptLogs = `${dataDir}-logs`;
    const kept = existsSync(logDir);
    if (kept) renameSync(logDir, keptLogs);
    await dispose();
    throw new Error(`${err instanceof Error ? err.message : String(err)}${kept ? ` (logs: ${keptLogs})` : ''}`, { cause: err });
  }
}

/**
 * The app's own role and database, as an operator creates them (the
 * instances never connect as superuser). Safe to repeat: a connection
 * through HAProxy may be cut halfway (a start on a busy machine once lost
 * one here).
 */
async function createAppDatabase(superuser: string, password: string): Promise<true> {
  if ((await queryRows(superuser, 'SELECT 1 FROM pg_roles WHERE rolname = $1', [APP_ROLE], 5_000)).length === 0) {
    await queryRows(superuser, `CREATE ROLE ${APP_ROLE} LOGIN PASSWORD '${password}'`, [], 10_000);
  }
  if ((await queryRows(superuser, 'SELECT 1 FROM pg_database WHERE datname = $1', [DATABASE], 5_000)).length === 0) {
    await queryRows(superuser, `CREATE DATABASE ${DATABASE} OWNER ${APP_ROLE}`, [], 30_000);
  }
  return true;
}

/** A connection to HAProxy's write port lands on the leader's PostgreSQL, which is a primary. */
async function routedToLeader(patroni: PatroniCluster, databaseUrl: string): Promise<true | string> {
  const leader = await patroni.leader();
  if (leader === undefined) return 'no leader';
  const at = await landing(databaseUrl);
  if (at.replica || at.port !== leader.pgPort) return `the write port lands on ${at.host}:${at.port} (${at.replica ? 'a replica' : 'a primary'}), the leader is ${leader.name}`;
  return true;
}

/** A connection to HAProxy's read port lands on a replica. */
async function routedToReplica(databaseUrl: string): Promise<true | string> {
  const at = await landing(databaseUrl);
  return at.replica ? true : `the read port lands on ${at.host}:${at.port}, a primary`;
}
