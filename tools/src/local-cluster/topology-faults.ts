/**
 * The failures a drill inflicts on a topology, one at a time. Each breaks
 * one thing and resolves with what it broke, so the drill can put that
 * piece back (`start()`) when its hold time is over; the engines (Patroni,
 * Sentinel, etcd) do the rest, and `topology.waitUntilWhole()` says when
 * they are done.
 */

import type { EtcdMember } from './etcd.js';
import type { Haproxy } from './haproxy.js';
import type { PatroniNode } from './patroni.js';
import type { RedisNode } from './redis-sentinel.js';
import type { Topology } from './topology.js';

async function leaderOf(topology: Topology): Promise<PatroniNode> {
  const leader = await topology.patroni.leader();
  if (leader === undefined) throw new Error('the Patroni cluster has no leader');
  return leader;
}

/**
 * kill -9 the leader's postmaster. Patroni, still holding the leader key,
 * starts PostgreSQL again (crash recovery); no start() is needed.
 */
export async function killLeaderPostmaster(topology: Topology): Promise<{ node: PatroniNode; pid: number }> {
  const node = await leaderOf(topology);
  const pid = await node.killPostmaster();
  if (pid === undefined) throw new Error(`${node.name} leads but runs no postmaster`);
  return { node, pid };
}

/**
 * kill -9 the leader's Patroni: its PostgreSQL goes on, unmanaged, until
 * the leader key expires (ttl) and the synchronous standby is promoted;
 * HAProxy then cuts the old primary's connections. start() the node again
 * and Patroni rewinds it into a replica of the new leader.
 */
export async function killLeaderPatroni(topology: Topology): Promise<PatroniNode> {
  const node = await leaderOf(topology);
  await node.killPatroni();
  return node;
}

/** A planned switchover (Patroni's REST API) from the leader to its synchronous standby. */
export async function switchoverToSyncStandby(topology: Topology): Promise<{ from: PatroniNode; to: PatroniNode }> {
  const from = await leaderOf(topology);
  const to = await topology.patroni.switchover();
  return { from, to };
}

/**
 * Stops a replica cleanly (Patroni, then its PostgreSQL): the synchronous
 * standby (Patroni picks the other replica instead) or the other one.
 * start() it again to have it rejoin.
 */
export async function stopReplica(topology: Topology, which: 'sync' | 'async' = 'sync'): Promise<PatroniNode> {
  const leader = await leaderOf(topology);
  const sync = (await topology.patroni.syncStandby())?.node;
  const node = which === 'sync' ? sync : topology.patroni.nodes.find((n) => n !== leader && n !== sync && n.running);
  if (node === undefined) throw new Error(`no ${which} replica to stop`);
  await node.stop();
  return node;
}

/**
 * kill -9 the Redis master (it holds nothing on disk). The Sentinels
 * promote its replica; start() it again once they have (redis.master()
 * names another node) and it rejoins as a replica of the new master.
 */
export async function killRedisMaster(topology: Topology): Promise<RedisNode> {
  const master = await topology.redis.master();
  if (master === undefined) throw new Error('the Sentinels do not agree on a Redis master');
  await master.crash();
  return master;
}

/** A planned failover: SENTINEL FAILOVER promotes the replica and demotes the master. */
export async function sentinelFailover(topology: Topology): Promise<{ from: RedisNode; to: RedisNode }> {
  const from = await topology.redis.master();
  if (from === undefined) throw new Error('the Sentinels do not agree on a Redis master');
  const to = await topology.redis.failover();
  return { from, to };
}

/** Stops one etcd member cleanly (the others keep a quorum when there are three); start() it again to rejoin. */
export async function stopEtcdMember(topology: Topology, index = 0): Promise<EtcdMember> {
  const member = topology.etcd[index];
  if (member === undefined) throw new Error(`no etcd member ${index} (there are ${topology.etcd.length})`);
  await member.stop();
  return member;
}

/**
 * Redis away: every Redis server, master and replica, killed (-9) at once,
 * as the small deployment's single Redis is. A refused connection is what
 * the instances' fail-fast path (README "When an instance, Redis or
 * PostgreSQL fails") answers to; the shipped config keeps nothing on disk,
 * so both come back empty. The Sentinels stay: with no replica to promote
 * they can only wait. start() puts the servers back, the one they name
 * master first (so they do not promote the other meanwhile), and they must
 * then agree on a master again (`redis.waitUntilWhole()`).
 */
export async function killEveryRedisServer(topology: Topology): Promise<{ master: RedisNode; replicas: RedisNode[]; start(): Promise<void> }> {
  const master = await topology.redis.master();
  if (master === undefined) throw new Error('the Sentinels do not agree on a Redis master');
  const replicas = topology.redis.nodes.filter((n) => n !== master);
  await Promise.all(topology.redis.nodes.map((n) => n.crash()));
  return {
    master,
    replicas,
    async start() {
      await master.start();
      await Promise.all(replicas.map((n) => n.start()));
    },
  };
}

/**
 * The database away for every instance at once: HAProxy, their only way to
 * it (write and read ports), killed (-9); every connection through it drops.
 * The PostgreSQL nodes run on untouched: stopping them instead would not
 * hold (Patroni starts a stopped postgres again within its loop), and
 * stopping Patroni too would make the row a test of a cold cluster start,
 * not of the instances' outage. start() it again on the same ports.
 */
export async function killHaproxy(topology: Topology): Promise<Haproxy> {
  await topology.haproxy.crash();
  return topology.haproxy;
}
