import { execFile } from 'node:child_process';
import { chmodSync, existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runTurn } from '../drill/turn-client.js';
import { expectedAnswer } from '../drill/verify.js';
import { DEPLOYMENT_MARK, readState, type DeploymentState } from './deployment-state.js';
import { REPO_ROOT, SERVER_MAIN } from './instance.js';
import type { ClusterMember } from './patroni.js';
import { withChildren } from '../bench/processes.js';
import { alive, processesWithEnvironment } from './process-table.js';
import { login } from './provision.js';
import { fieldsOf, redisCommand } from './redis-sentinel.js';
import { topologyBinariesMissing, type TopologyEndpoints } from './topology.js';
import { getJson } from './wait-until.js';

/**
 * Issue 12, point 1: `npm run cluster` as another tool drives it — started
 * with --detach --json, checked through the endpoints it printed, then
 * ended with `stop`. Runs the built CLI and server (npm test builds first).
 * Ports from 23000 up, apart from a developer's own `npm run cluster`.
 */
const CLI = path.join(REPO_ROOT, 'tools/dist/local-cluster/cli.js');
const missing = topologyBinariesMissing();
const available = missing.length === 0 && existsSync(SERVER_MAIN) && existsSync(CLI);
const required = process.env.LLMCHAT_REQUIRE_SERVICES === '1';
const CHAT_CHUNKS = 20;

describe('the production-shaped topology', () => {
  it.runIf(required)('has every engine and the built server and CLI (LLMCHAT_REQUIRE_SERVICES=1)', () => {
    expect({ missing, server: existsSync(SERVER_MAIN), cli: existsSync(CLI) }).toEqual({ missing: [], server: true, cli: true });
  });
});

/** One connection, several statements: what each returned. */
async function onOneConnection(url: string, statements: readonly string[]): Promise<pg.QueryResultRow[][]> {
  const client = new pg.Client({ connectionString: url, connectionTimeoutMillis: 5_000, query_timeout: 10_000 });
  await client.connect();
  try {
    const results: pg.QueryResultRow[][] = [];
    for (const statement of statements) results.push((await client.query<pg.QueryResultRow>(statement)).rows);
    return results;
  } finally {
    await client.end();
  }
}

describe.skipIf(!available)('`npm run cluster -- --detach --json`, driven through what it printed, then `stop`', () => {
  // The CLI keeps its pointer and the deployment under TMPDIR: this test's own.
  const home = mkdtempSync(path.join(tmpdir(), 'llmchat-topology-test-'));
  // PostgreSQL runs as `postgres` below this directory.
  chmodSync(home, 0o755);
  const cli = (args: readonly string[]) => promisify(execFile)(process.execPath, [CLI, ...args], { env: { ...process.env, TMPDIR: home }, timeout: 300_000 });
  let stdout = '';
  let endpoints: TopologyEndpoints;
  let state: DeploymentState;
  let members: ClusterMember[];

  beforeAll(async () => {
    const started = Date.now();
    ({ stdout } = await cli(['--detach', '--json', '--base-port', '23000', '--instances', '2']));
    console.log(`the topology started in ${((Date.now() - started) / 1000).toFixed(1)} s`);
    endpoints = JSON.parse(stdout) as TopologyEndpoints;
    state = readState(endpoints.stateFile);
    members = ((await getJson(`${endpoints.patroni[0]?.rest ?? ''}/cluster`)).body as { members: ClusterMember[] }).members;
  }, 300_000);
  afterAll(async () => {
    // A test that failed before `stop` still leaves nothing running.
    if (existsSync(path.join(home, 'llmchat-cluster', 'current.json'))) await cli(['stop']).catch(() => undefined);
    rmSync(home, { recursive: true, force: true });
  }, 120_000);

  it('prints one JSON object on one line and nothing else, with every endpoint; `status` prints it again', async () => {
    expect(stdout.split('\n')).toHaveLength(2);
    expect(stdout.endsWith('\n')).toBe(true);
    expect(Object.keys(endpoints)).toEqual(expect.arrayContaining(['nginx', 'instances', 'admin', 'database', 'patroni', 'redis', 'etcd', 'logs']));
    expect(endpoints.instances).toHaveLength(2);
    expect(endpoints.patroni.map((p) => p.name)).toEqual(['pg1', 'pg2', 'pg3']);
    expect(endpoints.etcd).toHaveLength(3);
    expect(endpoints.redis.sentinels).toHaveLength(3);
    expect(endpoints.redis.url).toMatch(/^redis-sentinel:\/\/:[^@]+@127\.0\.0\.1:\d+,127\.0\.0\.1:\d+,127\.0\.0\.1:\d+\/llmchat$/);
    expect(endpoints.database.write).toMatch(/^postgres:\/\/llmchat:[^@]+@127\.0\.0\.1:\d+\/llmchat$/);
    // Every port below the range the OS hands out for outgoing connections.
    const ports = [endpoints.nginx, ...endpoints.instances.map((i) => i.url), ...endpoints.patroni.map((p) => p.rest), ...endpoints.etcd, endpoints.database.write, endpoints.database.read].map((u) => Number(new URL(u).port));
    expect(ports.filter((p) => !(p >= 23000 && p < 32768))).toEqual([]);
    expect(readdirSync(endpoints.logs)).toEqual(expect.arrayContaining(['pg1.log', 'haproxy.log', 'sentinel1.log', 'redis1.log', 'etcd1.log', 'instance-A.log']));
    expect(JSON.parse((await cli(['status'])).stdout)).toEqual(endpoints);
  });

  it('a write through HAProxy\'s write port lands on the Patroni leader', async () => {
    const leader = endpoints.patroni.find((p) => p.name === members.find((m) => m.role === 'leader')?.name);
    expect(leader).toBeDefined();
    const results = await onOneConnection(endpoints.database.write, [
      'CREATE TABLE IF NOT EXISTS topology_probe (v text)',
      "INSERT INTO topology_probe VALUES ('written')",
      'SELECT pg_is_in_recovery() AS replica, inet_server_port() AS port',
    ]);
    expect(results[2]).toEqual([{ replica: false, port: leader?.pgPort }]);
  });

  it('a read through HAProxy\'s read port lands on a replica', async () => {
    const replicas = members.filter((m) => m.role !== 'leader').map((m) => endpoints.patroni.find((p) => p.name === m.name)?.pgPort);
    const where = (await onOneConnection(endpoints.database.read, ['SELECT pg_is_in_recovery() AS replica, inet_server_port() AS port']))[0]?.[0];
    expect(where?.replica).toBe(true);
    expect(replicas).toContain(where?.port);
  });

  it('the leader streams to its synchronous standby (sync) and to the other replica (async)', async () => {
    const sync = members.find((m) => m.role === 'sync_standby')?.name;
    const other = members.find((m) => m.role === 'replica')?.name;
    const senders = (await onOneConnection(endpoints.database.superuser, ['SELECT application_name, state, sync_state FROM pg_stat_replication ORDER BY sync_state DESC']))[0];
    expect(senders).toEqual([
      { application_name: sync, state: 'streaming', sync_state: 'sync' },
      { application_name: other, state: 'streaming', sync_state: 'async' },
    ]);
  });

  it('each Sentinel reports the master, its one replica and the two other Sentinels', async () => {
    const [master, replica] = endpoints.redis.nodes;
    for (const address of endpoints.redis.sentinels) {
      const port = Number(address.split(':')[1]);
      const seen = fieldsOf(await redisCommand(port, ['SENTINEL', 'MASTER', endpoints.redis.masterName]));
      expect({ port: Number(seen.port), flags: seen.flags, replicas: seen['num-slaves'], otherSentinels: seen['num-other-sentinels'] }, address).toEqual({
        port: master?.port,
        flags: 'master',
        replicas: '1',
        otherSentinels: '2',
      });
      const replicas = ((await redisCommand(port, ['SENTINEL', 'REPLICAS', endpoints.redis.masterName])) as unknown[]).map(fieldsOf);
      expect(replicas.map((r) => ({ port: Number(r.port), flags: r.flags, link: r['master-link-status'] }))).toEqual([{ port: replica?.port, flags: 'slave', link: 'ok' }]);
    }
  });

  it('every instance is ready with every dependency up, and a chat turn through nginx completes', async () => {
    for (const instance of endpoints.instances) {
      const { status, body } = await getJson(`${instance.url}/health/ready`);
      expect({ status, ready: (body as { status?: unknown }).status }, instance.name).toEqual({ status: 200, ready: 'ok' });
    }
    const token = await login(endpoints.nginx, endpoints.user.username, endpoints.user.password);
    const question = `topology test ${Date.now()}`;
    const turn = await runTurn({ origin: endpoints.nginx, token, agentId: 'steady', question, deadlineMs: 30_000 });
    expect({ outcome: turn.outcome, errorCode: turn.errorCode, refused: turn.refused }).toEqual({ outcome: 'complete', errorCode: undefined, refused: [] });
    expect(turn.text).toBe(expectedAnswer(question, CHAT_CHUNKS));
  });

  it('every node archives into one pgBackRest repository, and `npm run backup -- --cluster` backs it up through the leader', async () => {
    const backupCli = path.join(REPO_ROOT, 'tools/dist/backup/cli.js');
    const { stdout: report } = await promisify(execFile)(process.execPath, [backupCli, 'backup', '--cluster', '--type', 'full'], { env: { ...process.env, TMPDIR: home }, timeout: 300_000 });
    expect(report).toMatch(/done: full backup \S+F/);
    expect(Object.keys(endpoints.backup.configs).sort()).toEqual(['pg1', 'pg2', 'pg3']);
    // `check` (run by the backup) switched WAL and saw it reach the repository. Segments written before the
    // stanza existed were refused (archive-push needs it) and are archived since: no failure after the last success.
    const [archiver] = (await onOneConnection(endpoints.database.superuser, [
      "SELECT archived_count::int AS archived_count, last_archived_time > coalesce(last_failed_time, '-infinity') AS healthy FROM pg_stat_archiver",
    ]))[0] ?? [];
    expect(archiver).toMatchObject({ healthy: true });
    expect(archiver?.archived_count).toBeGreaterThan(0);
  }, 300_000);

  it('`stop` ends every process it started, PostgreSQL\'s included, and deletes the directory', async () => {
    const postmasters = endpoints.patroni.map((p) => Number(readFileSync(path.join(p.dataDir, 'postmaster.pid'), 'utf8').split('\n', 1)[0]));
    // The postmasters with their backends and background processes.
    const postgres = postmasters.flatMap(withChildren);
    const pids = [state.owner.pid, ...state.processes.map((p) => p.pid), ...postgres];
    expect(pids.filter((pid) => !alive(pid))).toEqual([]);
    expect(postgres.length).toBeGreaterThan(postmasters.length);

    await cli(['stop']);

    expect(pids.filter(alive)).toEqual([]);
    expect(processesWithEnvironment(DEPLOYMENT_MARK, endpoints.dataDir)).toEqual([]);
    expect(existsSync(endpoints.dataDir)).toBe(false);
    expect(existsSync(path.join(home, 'llmchat-cluster', 'current.json'))).toBe(false);
  }, 120_000);
});
