import { existsSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { SERVER_MAIN } from './instance.js';
import { alive } from './process-table.js';
import { landing, queryRows } from './sql.js';
import { killEveryRedisServer, killHaproxy, killLeaderPatroni, killLeaderPostmaster, killRedisMaster, sentinelFailover, stopEtcdMember, switchoverToSyncStandby } from './topology-faults.js';
import { startTopology, topologyBinariesMissing, type Topology } from './topology.js';
import { waitUntil } from './wait-until.js';

/**
 * The handles a drill breaks the topology with (issue 12, point 2), each
 * once, on one deployment: the engines must put it back whole every time.
 * No load here (the drill adds it); bounds are generous waits, not timings.
 * Ports from 23500 up.
 */
const available = topologyBinariesMissing().length === 0 && existsSync(SERVER_MAIN);
const RECOVERY_MS = 120_000;

describe.skipIf(!available)('breaking the topology through its drill handles', () => {
  let topology: Topology;
  /** Writes land on the primary again: a row inserted through HAProxy's write port. */
  const writable = (): Promise<void> =>
    waitUntil('a write through HAProxy', async () => (await queryRows(topology.database.write, 'INSERT INTO fault_probe VALUES (1) RETURNING 1', [], 2_000)).length === 1 || 'no row', RECOVERY_MS);

  beforeAll(async () => {
    topology = await startTopology({ basePort: 23500, instances: 1 });
    await queryRows(topology.database.write, 'CREATE TABLE fault_probe (v int)', [], 10_000);
  }, 300_000);
  afterAll(async () => {
    await topology?.dispose();
  }, 60_000);

  it('a planned switchover hands the lead to the synchronous standby, and writes follow it', async () => {
    const sync = (await topology.patroni.syncStandby())?.node;
    const { from, to } = await switchoverToSyncStandby(topology);
    expect(to).toBe(sync);
    expect(to).not.toBe(from);
    await topology.waitUntilWhole(RECOVERY_MS);
    expect((await landing(topology.database.write)).port).toBe(to.pgPort);
  }, 180_000);

  it('the leader\'s postmaster killed: PostgreSQL comes back, writes go on, the cluster is whole again', async () => {
    const { node, pid } = await killLeaderPostmaster(topology);
    expect(alive(pid)).toBe(false);
    await writable();
    await topology.waitUntilWhole(RECOVERY_MS);
    expect(node.postmasterPid()).not.toBe(pid);
  }, 180_000);

  it('the leader\'s Patroni killed: its PostgreSQL runs on, a replica takes the lead, and the node rejoins as a replica once started', async () => {
    const node = await killLeaderPatroni(topology);
    expect(node.running).toBe(false);
    expect(node.postmasterPid()).toBeDefined();
    await waitUntil('another leader', async () => ((await topology.patroni.leader()) ?? node) !== node || 'still the old leader', RECOVERY_MS);
    await writable();
    await node.start();
    await topology.waitUntilWhole(RECOVERY_MS);
    expect((await node.status())?.role).toBe('replica');
  }, 240_000);

  it('the Redis master killed: the Sentinels promote its replica, and it rejoins as a replica once started', async () => {
    const old = await killRedisMaster(topology);
    await waitUntil('the Sentinels to name a new master', async () => ((await topology.redis.master()) ?? old) !== old || 'not yet', RECOVERY_MS);
    await old.start();
    const seen = await topology.redis.waitUntilWhole(RECOVERY_MS);
    expect(seen.master).not.toBe(old);
    expect(seen.replicas).toEqual([old]);
  }, 180_000);

  it('a planned Sentinel failover swaps master and replica', async () => {
    const { from, to } = await sentinelFailover(topology);
    expect(to).not.toBe(from);
    const seen = await topology.redis.waitUntilWhole(RECOVERY_MS);
    expect(seen.master).toBe(to);
    expect(seen.replicas).toEqual([from]);
  }, 180_000);

  it('one etcd member stopped: the other two keep the leader key, writes go on; started again, it rejoins', async () => {
    const member = await stopEtcdMember(topology, 0);
    expect(member.running).toBe(false);
    await writable();
    expect(await topology.patroni.leader()).toBeDefined();
    await member.start();
    await topology.waitUntilWhole(RECOVERY_MS);
  }, 180_000);

  it('every Redis server killed at once: none answers; started again, the Sentinels agree on the same master, with its replica', async () => {
    const outage = await killEveryRedisServer(topology);
    expect(topology.redis.nodes.map((n) => n.running)).toEqual([false, false]);
    expect(await Promise.all(topology.redis.nodes.map((n) => n.role()))).toEqual([undefined, undefined]);
    await outage.start();
    const seen = await topology.redis.waitUntilWhole(RECOVERY_MS);
    expect(seen.master).toBe(outage.master);
    expect(seen.replicas).toEqual(outage.replicas);
  }, 180_000);

  it('HAProxy killed: neither database port answers; started again, writes and reads go through, the cluster untouched', async () => {
    const leader = await topology.patroni.leader();
    const haproxy = await killHaproxy(topology);
    expect(haproxy.running).toBe(false);
    await expect(queryRows(topology.database.write, 'SELECT 1', [], 2_000)).rejects.toThrow();
    await expect(queryRows(topology.database.read, 'SELECT 1', [], 2_000)).rejects.toThrow();
    await haproxy.start();
    await writable();
    await topology.waitUntilWhole(RECOVERY_MS);
    expect(await topology.patroni.leader()).toBe(leader);
  }, 180_000);
});
