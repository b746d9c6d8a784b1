/**
 * PostgreSQL nodes managed by Patroni, each running the shipped
 * `ops/patroni/patroni.yml.template`, and the questions a drill asks the
 * cluster (who leads, is the synchronous standby streaming) through
 * Patroni's REST API. Patroni starts PostgreSQL in a session of its own, so
 * the postmaster outlives a killed Patroni, as it does in production.
 */

import { execFile } from 'node:child_process';
import { chmodSync, chownSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { promisify } from 'node:util';
import { startProcess, type ManagedProcess } from '../bench/processes.js';
import { findBinary } from './binaries.js';
import { alive, commandLineMentions, killTree, signal, waitForExit } from './process-table.js';
import { postgresOwner, waitForPort } from './services.js';
import { renderOpsTemplate } from './template.js';
import { allSettledOrThrow, getJson, waitUntil } from './wait-until.js';

const START_TIMEOUT_MS = 30_000;
/** Patroni stops PostgreSQL (fast shutdown: a checkpoint) before it exits. */
const STOP_GRACE_MS = 30_000;

export function patroniPath(): string | undefined {
  return findBinary('patroni', 'LLMCHAT_PATRONI');
}

/** Passwords every node of one cluster shares. */
export interface PatroniSecrets {
  rest: string;
  superuser: string;
  replication: string;
  rewind: string;
}

export interface PatroniNodeSpec {
  name: string;
  /** The node's own loopback address (Patroni refuses 127.0.0.1 as a connect address). */
  host: string;
  pgPort: number;
  restPort: number;
}

/** Where a node's PostgreSQL lives, for the commands that archive its WAL and fetch it back. */
export interface NodeFiles {
  name: string;
  dataDir: string;
  socketDir: string;
  pgPort: number;
}

/** A node's archive_command (ops/patroni/patroni.yml.template). */
export type ArchiveCommands = (node: NodeFiles) => { archiveCommand: string };

/** Patroni's GET /patroni, the fields used here. */
export interface PatroniStatus {
  state: string;
  /** `master` or `replica` (Patroni 3.0's words). */
  role: string;
  timeline?: number;
  sync_standby?: boolean;
  cluster_unlocked?: boolean;
  /** On the primary: its WAL senders (pg_stat_replication). */
  replication?: { application_name: string; state: string; sync_state: string; client_addr?: string }[];
}

/** One member in Patroni's GET /cluster. */
export interface ClusterMember {
  name: string;
  role: 'leader' | 'sync_standby' | 'replica' | 'standby_leader';
  state: string;
  host?: string;
  port?: number;
  timeline?: number;
  lag?: number | 'unknown';
}

export interface PatroniNode extends PatroniNodeSpec {
  readonly restUrl: string;
  readonly dataDir: string;
  readonly configFile: string;
  readonly logFile: string;
  /** Whether its Patroni process runs. */
  readonly running: boolean;
  readonly patroniPid: number | undefined;
  /** The postmaster's id (from postmaster.pid), if one runs on this node's data. */
  postmasterPid(): number | undefined;
  /** GET /patroni; undefined when Patroni does not answer. */
  status(): Promise<PatroniStatus | undefined>;
  /** Starts Patroni (again), which starts or adopts PostgreSQL; resolves once its REST API answers. */
  start(): Promise<void>;
  /** SIGTERM: Patroni stops PostgreSQL, hands over the leader key if it holds it, and exits. */
  stop(): Promise<void>;
  /** kill -9 Patroni alone: PostgreSQL keeps running, unmanaged. */
  killPatroni(): Promise<void>;
  /** kill -9 the postmaster alone (Patroni restarts or fails over); resolves with its id, or undefined if none ran. */
  killPostmaster(): Promise<number | undefined>;
  /** kill -9 Patroni and PostgreSQL with their process groups. */
  dispose(): Promise<void>;
  /** Patroni's and PostgreSQL's last output lines. */
  tail(): string[];
}

/** `patroni --validate-config`: Patroni's own check of a rendered file (ports must still be free, etcd reachable). */
export async function validatePatroniConfig(configFile: string): Promise<void> {
  const binary = patroniPath();
  if (binary === undefined) throw new Error('patroni not found (install Debian package patroni, or set LLMCHAT_PATRONI)');
  try {
    await promisify(execFile)(binary, ['--validate-config', configFile], { timeout: 30_000 });
  } catch (err) {
    const stderr = (err as { stderr?: unknown }).stderr;
    throw new Error(`patroni --validate-config ${configFile} failed:\n${typeof stderr === 'string' ? stderr : String(err)}`, { cause: err });
  }
}

/**
 * The node's files under `nodeDir` (owned by `postgres` when this runs as
 * root: PostgreSQL refuses to run as root): config, data directory, socket
 * and pgpass. Nothing is started.
 */
export function patroniNode(spec: PatroniNodeSpec & {
  scope: string;
  nodeDir: string;
  logFile: string;
  etcdHosts: readonly string[];
  pgBinDir: string;
  syncStrict: boolean;
  secrets: PatroniSecrets;
  archive: ArchiveCommands;
  env: NodeJS.ProcessEnv;
}): PatroniNode {
  const binary = patroniPath();
  if (binary === undefined) throw new Error('patroni not found (install Debian package patroni, or set LLMCHAT_PATRONI)');
  const owner = postgresOwner();
  // Its parent stays traversable for `postgres`; the node's own directory is PostgreSQL's alone.
  mkdirSync(path.dirname(spec.nodeDir), { recursive: true, mode: 0o755 });
  mkdirSync(spec.nodeDir, { mode: 0o700 });
  const dataDir = path.join(spec.nodeDir, 'data');
  const configFile = path.join(spec.nodeDir, 'patroni.yml');
  const archive = spec.archive({ name: spec.name, dataDir, socketDir: spec.nodeDir, pgPort: spec.pgPort });
  writeFileSync(
    configFile,
    renderOpsTemplate('patroni/patroni.yml.template', {
      SCOPE: spec.scope,
      NODE_NAME: spec.name,
      NODE_HOST: spec.host,
      REST_PORT: String(spec.restPort),
      PG_PORT: String(spec.pgPort),
      ETCD_HOSTS: spec.etcdHosts.join(','),
      DATA_DIR: dataDir,
      PG_BIN_DIR: spec.pgBinDir,
      SOCKET_DIR: spec.nodeDir,
      PGPASS: path.join(spec.nodeDir, 'pgpass'),
      SYNC_STRICT: String(spec.syncStrict),
      REST_PASSWORD: spec.secrets.rest,
      SUPERUSER_PASSWORD: spec.secrets.superuser,
      REPLICATION_PASSWORD: spec.secrets.replication,
      REWIND_PASSWORD: spec.secrets.rewind,
      ARCHIVE_COMMAND: archive.archiveCommand,
    }),
    { mode: 0o600 },
  );
  if (owner) {
    chownSync(spec.nodeDir, owner.uid, owner.gid);
    chownSync(configFile, owner.uid, owner.gid);
  }
  chmodSync(spec.nodeDir, 0o700);

  const restUrl = `http://${spec.host}:${spec.restPort}`;
  let child: ManagedProcess | undefined;
  const running = (): boolean => child !== undefined && child.exitInfo() === undefined;
  const postmasterPid = (): number | undefined => {
    let text: string;
    try {
      text = readFileSync(path.join(dataDir, 'postmaster.pid'), 'utf8');
    } catch {
      return undefined;
    }
    const pid = Number(text.split('\n', 1)[0]);
    // A stale file (PostgreSQL killed) may name a pid some other process has since been given.
    return Number.isInteger(pid) && pid > 0 && alive(pid) && commandLineMentions(pid, dataDir) ? pid : undefined;
  };
  const node: PatroniNode = {
    name: spec.name,
    host: spec.host,
    pgPort: spec.pgPort,
    restPort: spec.restPort,
    restUrl,
    dataDir,
    configFile,
    logFile: spec.logFile,
    get running() {
      return running();
    },
    get patroniPid() {
      return running() ? child?.pid : undefined;
    },
    postmasterPid,
    async status() {
      try {
        const { status, body } = await getJson(`${restUrl}/patroni`);
        return status === 200 ? (body as PatroniStatus) : undefined;
      } catch {
        return undefined;
      }
    },
    async start() {
      if (running()) return;
      const started = startProcess(spec.name, binary, [configFile], {
        env: { ...spec.env, HOME: spec.nodeDir, LC_ALL: 'C' },
        cwd: spec.nodeDir,
        logFile: spec.logFile,
        ...(owner ?? {}),
      });
      child = started;
      try {
        await waitForPort(spec.restPort, START_TIMEOUT_MS, started, async () => (await getJson(`${restUrl}/liveness`, 1_000)).status > 0);
      } catch (err) {
        await started.kill('SIGKILL');
        throw err;
      }
    },
    async stop() {
      if (running()) await child?.stop(STOP_GRACE_MS);
      // Patroni stops PostgreSQL before it exits; one it had to be killed for may have left it running.
      const pid = postmasterPid();
      if (pid !== undefined) await killTree(pid);
    },
    async killPatroni() {
      if (running()) await child?.kill('SIGKILL');
    },
    async killPostmaster() {
      const pid = postmasterPid();
      if (pid === undefined) return undefined;
      signal(pid, 'SIGKILL');
      if (!(await waitForExit([pid], 10_000))) throw new Error(`${spec.name}: postmaster ${pid} still runs after kill -9`);
      return pid;
    },
    async dispose() {
      const patroni = running() ? child?.pid : undefined;
      if (patroni !== undefined) await killTree(patroni);
      await child?.exited;
      const pid = postmasterPid();
      if (pid !== undefined) await killTree(pid);
    },
    tail: () => child?.tail() ?? [],
  };
  return node;
}

/** A cluster's nodes and what a drill asks of them. */
export interface PatroniCluster {
  readonly nodes: readonly PatroniNode[];
  /** The members as etcd has them (GET /cluster of the first node that answers). */
  members(): Promise<ClusterMember[]>;
  /** The node holding the leader key, if any. */
  leader(): Promise<PatroniNode | undefined>;
  /** The synchronous standby Patroni chose, and whether the leader sees it streaming as `sync`. */
  syncStandby(): Promise<{ node: PatroniNode; streaming: boolean } | undefined>;
  /**
   * Whether the cluster is whole: a running leader, every running node a
   * streaming replica of it, one of them its synchronous standby.
   */
  whole(): Promise<true | string>;
  /** Waits until whole(), at most `timeoutMs`. */
  waitUntilWhole(timeoutMs: number): Promise<void>;
  /** A planned switchover to the synchronous standby (or `candidate`); resolves with the new leader once Patroni reports it. */
  switchover(candidate?: string): Promise<PatroniNode>;
  /** kill -9 every node's Patroni and PostgreSQL. */
  dispose(): Promise<void>;
}

export function patroniCluster(nodes: readonly PatroniNode[], secrets: PatroniSecrets): PatroniCluster {
  const byName = (name: string): PatroniNode | undefined => nodes.find((n) => n.name === name);
  const members = async (): Promise<ClusterMember[]> => {
    const errors: string[] = [];
    for (const node of nodes) {
      try {
        const { status, body } = await getJson(`${node.restUrl}/cluster`);
        if (status === 200) return (body as { members: ClusterMember[] }).members;
        errors.push(`${node.name}: HTTP ${status}`);
      } catch (err) {
        errors.push(`${node.name}: ${(err as Error).message}`);
      }
    }
    throw new Error(`no Patroni REST API answered GET /cluster (${errors.join('; ')})`);
  };
  const leader = async (): Promise<PatroniNode | undefined> => {
    const name = (await members()).find((m) => m.role === 'leader')?.name;
    return name === undefined ? undefined : byName(name);
  };
  const syncStandby = async (): Promise<{ node: PatroniNode; streaming: boolean } | undefined> => {
    const all = await members();
    const sync = all.find((m) => m.role === 'sync_standby');
    const leaderName = all.find((m) => m.role === 'leader')?.name;
    const node = sync === undefined ? undefined : byName(sync.name);
    if (node === undefined) return undefined;
    const senders = leaderName === undefined ? undefined : (await byName(leaderName)?.status())?.replication;
    const streaming = senders?.some((s) => s.application_name === node.name && s.state === 'streaming' && s.sync_state === 'sync') ?? false;
    return { node, streaming };
  };
  const whole = async (): Promise<true | string> => {
    const all = await members();
    const head = all.find((m) => m.role === 'leader');
    if (head === undefined) return 'no leader';
    const status = await byName(head.name)?.status();
    if (status?.role !== 'master' || status.state !== 'running') return `leader ${head.name} is ${status?.role ?? '?'}/${status?.state ?? 'not answering'}`;
    const senders = status.replication ?? [];
    for (const node of nodes.filter((n) => n.running && n.name !== head.name)) {
      const sender = senders.find((s) => s.application_name === node.name);
      if (sender?.state !== 'streaming') return `${node.name} is not streaming from ${head.name}`;
    }
    if (!senders.some((s) => s.sync_state === 'sync' && s.state === 'streaming' && all.some((m) => m.name === s.application_name && m.role === 'sync_standby'))) {
      return 'no synchronous standby streaming';
    }
    return true;
  };
  return {
    nodes,
    members,
    leader,
    syncStandby,
    whole,
    waitUntilWhole: (timeoutMs) => waitUntil('the Patroni cluster whole (a leader, every node streaming, a synchronous standby)', whole, timeoutMs),
    async dispose() {
      await Promise.all(nodes.map((n) => n.dispose()));
    },
    async switchover(candidate) {
      const from = await leader();
      if (from === undefined) throw new Error('switchover: the cluster has no leader');
      const to = candidate ?? (await syncStandby())?.node.name;
      if (to === undefined) throw new Error('switchover: no synchronous standby to switch over to');
      const response = await fetch(`${from.restUrl}/switchover`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', authorization: `Basic ${Buffer.from(`patroni:${secrets.rest}`).toString('base64')}` },
        body: JSON.stringify({ leader: from.name, candidate: to }),
        // Patroni answers once the new leader holds the key (it polls for up to ~20 s).
        signal: AbortSignal.timeout(60_000),
      });
      const text = await response.text();
      if (response.status !== 200) throw new Error(`switchover from ${from.name} to ${to}: HTTP ${response.status} ${text}`);
      const next = await leader();
      if (next?.name !== to) throw new Error(`switchover from ${from.name} to ${to}: Patroni said "${text}" but the leader is ${next?.name ?? 'nobody'}`);
      return next;
    },
  };
}

/**
 * The nodes of one cluster, each under `dir/<name>` with its log in
 * `logDir`: every config checked by Patroni first (while the ports are
 * still free and etcd answers), then all started at once (one bootstraps,
 * the others clone it); resolves once the cluster is whole.
 */
export async function startPatroniCluster(spec: {
  nodes: readonly PatroniNodeSpec[];
  scope: string;
  dir: string;
  logDir: string;
  etcdHosts: readonly string[];
  pgBinDir: string;
  syncStrict: boolean;
  secrets: PatroniSecrets;
  archive: ArchiveCommands;
  env: NodeJS.ProcessEnv;
  wholeTimeoutMs: number;
}): Promise<PatroniCluster> {
  const { nodes: specs, dir, logDir, wholeTimeoutMs, ...shared } = spec;
  const nodes = specs.map((node) => patroniNode({ ...node, ...shared, nodeDir: path.join(dir, node.name), logFile: path.join(logDir, `${node.name}.log`) }));
  const cluster = patroniCluster(nodes, spec.secrets);
  try {
    await allSettledOrThrow(nodes.map((n) => validatePatroniConfig(n.configFile)));
    await allSettledOrThrow(nodes.map((n) => n.start()));
    await cluster.waitUntilWhole(wholeTimeoutMs);
    return cluster;
  } catch (err) {
    await cluster.dispose();
    throw err;
  }
}
