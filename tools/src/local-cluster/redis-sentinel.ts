/**
 * Redis with Sentinel: a master, its replicas and three Sentinels, each a
 * process on a loopback port running the shipped configs
 * (`ops/redis/redis.conf.template`, `ops/redis/sentinel.conf.template`),
 * and the questions a drill asks (which node is master, is every replica
 * and Sentinel in place).
 */

import { mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { Redis } from 'ioredis';
import { startProcess } from '../bench/processes.js';
import { findBinary } from './binaries.js';
import { disposableService, failedStart, redisServerPath, waitForPort, type DisposableService } from './services.js';
import { renderOpsTemplate } from './template.js';
import { allSettledOrThrow, waitUntil } from './wait-until.js';

const READY_TIMEOUT_MS = 30_000;

export function redisSentinelPath(): string | undefined {
  return findBinary('redis-sentinel');
}

/** One command on a connection of its own, with a deadline; resolves with Redis's reply. */
export async function redisCommand(port: number, command: readonly string[], options: { password?: string; timeoutMs?: number } = {}): Promise<unknown> {
  const timeoutMs = options.timeoutMs ?? 2_000;
  const client = new Redis({
    host: '127.0.0.1',
    port,
    ...(options.password === undefined ? {} : { password: options.password }),
    lazyConnect: true,
    // No INFO before the command: a node still loading answers the command itself.
    enableReadyCheck: false,
    connectTimeout: timeoutMs,
    commandTimeout: timeoutMs,
    maxRetriesPerRequest: 0,
    enableOfflineQueue: false,
    retryStrategy: () => null,
  });
  // Connection errors reach the caller through connect() or the command.
  client.on('error', () => undefined);
  try {
    await client.connect();
    const [name = '', ...args] = command;
    return await client.call(name, ...args);
  } finally {
    client.disconnect();
  }
}

/** Sentinel's and INFO's flat [key, value, key, value, …] replies as a record. */
export function fieldsOf(reply: unknown): Record<string, string> {
  const fields: Record<string, string> = {};
  if (!Array.isArray(reply)) return fields;
  for (let i = 0; i + 1 < reply.length; i += 2) fields[String(reply[i])] = String(reply[i + 1]);
  return fields;
}

export interface RedisNode extends DisposableService {
  readonly name: string;
  /** `master` or `slave` (ROLE), or undefined when it does not answer. */
  role(): Promise<string | undefined>;
}

export interface Sentinel extends DisposableService {
  readonly name: string;
}

/** Starts one Redis node on the shipped config; a replica's copy gets a `replicaof` line. */
export async function startRedisNode(spec: {
  name: string;
  port: number;
  dir: string;
  logFile: string;
  password: string;
  replicaOf?: number;
  env: NodeJS.ProcessEnv;
}): Promise<RedisNode> {
  const binary = redisServerPath();
  if (binary === undefined) throw new Error('redis-server not found (install Debian package redis-server)');
  mkdirSync(spec.dir, { recursive: true, mode: 0o700 });
  const configFile = path.join(spec.dir, 'redis.conf');
  const config = renderOpsTemplate('redis/redis.conf.template', { BIND: '127.0.0.1', PORT: String(spec.port), DIR: spec.dir, PASSWORD: spec.password });
  writeFileSync(configFile, spec.replicaOf === undefined ? config : `${config}\nreplicaof 127.0.0.1 ${spec.replicaOf}\n`, { mode: 0o600 });
  const auth = { password: spec.password, timeoutMs: 1_000 };
  const service = await disposableService({
    port: spec.port,
    url: `redis://:${encodeURIComponent(spec.password)}@127.0.0.1:${spec.port}`,
    dir: spec.dir,
    stopSignal: 'SIGTERM',
    async launch() {
      // Sentinel rewrites this file at each failover: a restart comes back as what it last was.
      const child = startProcess(spec.name, binary, [configFile], { env: spec.env, cwd: spec.dir, logFile: spec.logFile });
      try {
        await waitForPort(spec.port, READY_TIMEOUT_MS, child, async (port) => (await redisCommand(port, ['PING'], auth)) === 'PONG');
      } catch (err) {
        return failedStart(child, err);
      }
      return child;
    },
  });
  return Object.assign(service, {
    name: spec.name,
    async role() {
      try {
        const reply = await redisCommand(spec.port, ['ROLE'], auth);
        return Array.isArray(reply) ? String(reply[0]) : undefined;
      } catch {
        return undefined;
      }
    },
  });
}

export async function startSentinel(spec: {
  name: string;
  port: number;
  dir: string;
  logFile: string;
  masterName: string;
  masterPort: number;
  password: string;
  env: NodeJS.ProcessEnv;
}): Promise<Sentinel> {
  const binary = redisSentinelPath();
  if (binary === undefined) throw new Error('redis-sentinel not found (install Debian package redis-sentinel)');
  mkdirSync(spec.dir, { recursive: true, mode: 0o700 });
  const configFile = path.join(spec.dir, 'sentinel.conf');
  writeFileSync(configFile, renderSentinelConfig(spec), { mode: 0o600 });
  const service = await disposableService({
    port: spec.port,
    url: `redis://127.0.0.1:${spec.port}`,
    dir: spec.dir,
    stopSignal: 'SIGTERM',
    async launch() {
      const child = startProcess(spec.name, binary, [configFile], { env: spec.env, cwd: spec.dir, logFile: spec.logFile });
      try {
        await waitForPort(spec.port, READY_TIMEOUT_MS, child, async (port) => (await redisCommand(port, ['PING'], { timeoutMs: 1_000 })) === 'PONG');
      } catch (err) {
        return failedStart(child, err);
      }
      return child;
    },
  });
  return Object.assign(service, { name: spec.name });
}

/** The shipped Sentinel config for a loopback deployment. */
export function renderSentinelConfig(spec: { port: number; dir: string; masterName: string; masterPort: number; password: string }): string {
  return renderOpsTemplate('redis/sentinel.conf.template', {
    BIND: '127.0.0.1',
    PORT: String(spec.port),
    DIR: spec.dir,
    MASTER_NAME: spec.masterName,
    MASTER_HOST: '127.0.0.1',
    MASTER_PORT: String(spec.masterPort),
    PASSWORD: spec.password,
  });
}

/** Who was master and who its connected replicas, as seen when the set was whole. */
export interface RedisShape {
  readonly master: RedisNode;
  readonly replicas: readonly RedisNode[];
}

/** The Redis nodes and Sentinels of one deployment. */
export interface RedisSentinelSet {
  readonly masterName: string;
  /** REDIS_URL for the instances: redis-sentinel://:password@sentinel,sentinel,sentinel/masterName. */
  readonly url: string;
  readonly nodes: readonly RedisNode[];
  readonly sentinels: readonly Sentinel[];
  /** The node most running Sentinels name as master (undefined when they do not agree). */
  master(): Promise<RedisNode | undefined>;
  /**
   * Whether it is whole: the Sentinels agree on a master that says it is
   * one, every other running node is its connected replica, and each
   * Sentinel sees the master up, every replica as one, and every other
   * running Sentinel.
   */
  whole(): Promise<true | string>;
  /**
   * Waits until it is whole, and resolves with who was master and who its
   * replicas at that moment: a later spontaneous failover (a one-second
   * down-after on a loaded machine) cannot blur what was seen.
   */
  waitUntilWhole(timeoutMs: number): Promise<RedisShape>;
  /** A planned failover (SENTINEL FAILOVER); resolves with the new master once the Sentinels name it. */
  failover(): Promise<RedisNode>;
  /** kill -9 every node and Sentinel. */
  dispose(): Promise<void>;
}

export function redisSentinelSet(spec: { masterName: string; password: string; nodes: readonly RedisNode[]; sentinels: readonly Sentinel[] }): RedisSentinelSet {
  const { masterName, nodes, sentinels } = spec;
  const running = <T extends DisposableService>(list: readonly T[]): T[] => list.filter((s) => s.running);
  const ask = (sentinel: Sentinel, ...command: string[]): Promise<unknown> => redisCommand(sentinel.port, command);
  /** A planned failover is asked for at most this often, each time given this long to finish (3 × the failover-timeout). */
  const FAILOVER_ATTEMPTS = 3;
  const FAILOVER_ATTEMPT_MS = 15_000;

  const master = async (): Promise<RedisNode | undefined> => {
    const answers = await Promise.all(
      running(sentinels).map(async (s) => {
        const reply = await ask(s, 'SENTINEL', 'GET-MASTER-ADDR-BY-NAME', masterName).catch(() => undefined);
        return Array.isArray(reply) ? Number(reply[1]) : undefined;
      }),
    );
    const counts = new Map<number, number>();
    for (const port of answers) if (port !== undefined) counts.set(port, (counts.get(port) ?? 0) + 1);
    const [port, votes] = [...counts].sort((a, b) => b[1] - a[1])[0] ?? [undefined, 0];
    return votes > sentinels.length / 2 ? nodes.find((n) => n.port === port) : undefined;
  };

  /** The set's shape when it is whole, else why not. */
  const shape = async (): Promise<RedisShape | string> => {
    const head = await master();
    if (head === undefined) return 'the Sentinels do not agree on a master';
    if ((await head.role()) !== 'master') return `${head.name} is named master but is not one`;
    const replicas = running(nodes).filter((n) => n !== head);
    // The link as the replica has it: Sentinel's copy of it is refreshed only every 10 s.
    for (const replica of replicas) {
      const role = await redisCommand(replica.port, ['ROLE'], { password: spec.password }).catch(() => undefined);
      if (!Array.isArray(role) || role[0] !== 'slave' || Number(role[2]) !== head.port || role[3] !== 'connected') return `${replica.name} is not a connected replica of ${head.name}`;
    }
    const others = running(sentinels).length - 1;
    for (const sentinel of running(sentinels)) {
      const seen = fieldsOf(await ask(sentinel, 'SENTINEL', 'MASTER', masterName));
      if (seen.flags !== 'master' || Number(seen.port) !== head.port) return `${sentinel.name} sees ${seen.port ?? '?'} as ${seen.flags ?? '?'}`;
      if (Number(seen['num-other-sentinels']) < others) return `${sentinel.name} knows ${seen['num-other-sentinels'] ?? '?'} other Sentinels of ${others}`;
      const listed = ((await ask(sentinel, 'SENTINEL', 'REPLICAS', masterName)) as unknown[]).map(fieldsOf);
      for (const replica of replicas) {
        const flags = listed.find((r) => Number(r.port) === replica.port)?.flags;
        if (flags !== 'slave') return `${sentinel.name} sees ${replica.name} as ${flags ?? 'unknown'}`;
      }
    }
    return { master: head, replicas };
  };
  const whole = async (): Promise<true | string> => {
    const seen = await shape();
    return typeof seen === 'string' ? seen : true;
  };

  return {
    masterName,
    url: `redis-sentinel://:${encodeURIComponent(spec.password)}@${sentinels.map((s) => `127.0.0.1:${s.port}`).join(',')}/${masterName}`,
    nodes,
    sentinels,
    master,
    whole,
    async waitUntilWhole(timeoutMs) {
      let seen: RedisShape | undefined;
      await waitUntil(
        'Redis whole (a master, its replicas and every Sentinel in agreement)',
        async () => {
          const result = await shape();
          if (typeof result === 'string') return result;
          seen = result;
          return true;
        },
        timeoutMs,
      );
      if (seen === undefined) throw new Error('unreachable: the wait ended without a shape');
      return seen;
    },
    async dispose() {
      await Promise.all([...nodes, ...sentinels].map((s) => s.dispose()));
    },
    async failover() {
      const before = await master();
      if (before === undefined) throw new Error('Sentinel failover: the Sentinels do not agree on a master');
      let after: RedisNode | undefined;
      const promoted = async (): Promise<true | string> => {
        after = await master();
        return after !== undefined && after !== before && (await after.role()) === 'master' ? true : `master: ${after?.name ?? 'no agreement'}`;
      };
      // A Sentinel aborts a failover it cannot finish within its failover-timeout (5 s): a replica it does not
      // yet count as good, on a loaded machine. Then the master stays, and the failover is asked for again.
      for (let attempt = 1; ; attempt++) {
        const sentinel = running(sentinels)[0];
        if (sentinel === undefined) throw new Error('Sentinel failover: no Sentinel runs');
        const reply = await ask(sentinel, 'SENTINEL', 'FAILOVER', masterName).catch((err: unknown) => (err instanceof Error ? err.message : String(err)));
        if (reply !== 'OK' && !String(reply).includes('INPROG') && !String(reply).includes('NOGOODSLAVE')) throw new Error(`SENTINEL FAILOVER ${masterName}: ${String(reply)}`);
        try {
          await waitUntil(`the Sentinels to name a master other than ${before.name}`, promoted, FAILOVER_ATTEMPT_MS);
          break;
        } catch (err) {
          if (attempt >= FAILOVER_ATTEMPTS) throw err;
        }
      }
      if (after === undefined) throw new Error('unreachable: the wait ended without a master');
      return after;
    },
  };
}

/** Waits until a replica's link to its master is up. */
async function waitForReplicaLink(replica: RedisNode, password: string): Promise<void> {
  await waitUntil(
    `${replica.name} linked to its master`,
    async () => {
      const info = String(await redisCommand(replica.port, ['INFO', 'replication'], { password }));
      return /master_link_status:up/.test(info) ? true : 'link down';
    },
    READY_TIMEOUT_MS,
  );
}

/**
 * A master (`redis1`), its replica (`redis2`) and one Sentinel per port,
 * each under `dir/<name>` with its log in `logDir`; resolves once the set is
 * whole. The Sentinels start after the replica's link is up, so they find it
 * when they first ask the master.
 */
export async function startRedisSentinelSet(spec: {
  masterName: string;
  password: string;
  nodePorts: readonly [number, number];
  sentinelPorts: readonly number[];
  dir: string;
  logDir: string;
  env: NodeJS.ProcessEnv;
}): Promise<RedisSentinelSet> {
  const nodes: RedisNode[] = [];
  const sentinels: Sentinel[] = [];
  const where = (name: string) => ({ name, dir: path.join(spec.dir, name), logFile: path.join(spec.logDir, `${name}.log`), password: spec.password, env: spec.env });
  const [masterPort, replicaPort] = spec.nodePorts;
  try {
    nodes.push(await startRedisNode({ ...where('redis1'), port: masterPort }));
    const replica = await startRedisNode({ ...where('redis2'), port: replicaPort, replicaOf: masterPort });
    nodes.push(replica);
    await waitForReplicaLink(replica, spec.password);
    await allSettledOrThrow(
      spec.sentinelPorts.map(async (port, i) => {
        sentinels.push(await startSentinel({ ...where(`sentinel${i + 1}`), port, masterName: spec.masterName, masterPort }));
      }),
    );
    sentinels.sort((a, b) => a.port - b.port);
    const set = redisSentinelSet({ masterName: spec.masterName, password: spec.password, nodes, sentinels });
    await set.waitUntilWhole(READY_TIMEOUT_MS * 2);
    return set;
  } catch (err) {
    await Promise.all([...nodes, ...sentinels].map((s) => s.dispose()));
    throw err;
  }
}
