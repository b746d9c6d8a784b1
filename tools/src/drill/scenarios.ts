/**
 * The drill's rows: each breaks one thing under load, says what it broke,
 * and sets the bounds the row must meet. Most rows run on both deployments
 * (upstream faults, an instance lost, Redis or PostgreSQL down: on the
 * topology every Redis server, or HAProxy in front of the database), some
 * on the topology only (Patroni, Sentinel, etcd). Each reads as a short
 * story with its expected outcome.
 */

import { setTimeout as sleep } from 'node:timers/promises';
import type { DrillAgent } from '../local-cluster/cluster.js';
import type { DisposableService } from '../local-cluster/services.js';
import { queryRows } from '../local-cluster/sql.js';
import type { Topology } from '../local-cluster/topology.js';
import { killEveryRedisServer, killHaproxy, killLeaderPatroni, killLeaderPostmaster, killRedisMaster, sentinelFailover, stopEtcdMember, stopReplica, switchoverToSyncStandby } from '../local-cluster/topology-faults.js';
import { waitUntil } from '../local-cluster/wait-until.js';
import type { DrillDeployment } from './deployment.js';
import type { TurnTrace } from './turn-client.js';
import type { Verdict } from './verify.js';

export interface Window {
  /** When the failure began. */
  faultAt: number;
  /** When the broken piece was put back, or the engines were left to do it (the failure's end); undefined for what needs no repair. */
  repairAt: number | undefined;
}

export interface Scenario {
  name: string;
  /** What breaks, in words, for the README. */
  what: string;
  /** The deployments this row runs on. */
  on: readonly DrillDeployment['kind'][];
  agent: DrillAgent;
  /** Breaks something and repairs it; resolves when the repair has been started. */
  run(deployment: DrillDeployment, holdMs: number, broken: () => void): Promise<Window>;
  /** Refusals (5xx a client retried) that are part of the promise. */
  allowedRefusal?: (status: number, code: string | undefined) => boolean;
  /** What shows the failure was really felt; a row that felt nothing proves nothing. */
  felt?: (verdict: Verdict, traces: readonly TurnTrace[], measured: { turnWriteGapMs: number; redisWriteGapMs: number }) => boolean;
  /** Clients that start new turns only while the failure lasts (the small deployment's PostgreSQL outage). */
  newTurnsDuringFault?: number;
  /** Takeover is measured where an instance is lost. */
  takeover?: boolean;
  /** Extra check of recovery (e.g. the repaired upstream serves again); resolves with when it did. */
  recovered?: (deployment: DrillDeployment, since: number) => Promise<number | undefined>;
  /** Longest time turns may go unwritten (PostgreSQL's promise for this failure). */
  turnWriteBudgetMs?: number;
  /** Longest time Redis may refuse writes. */
  redisWriteBudgetMs?: number;
}

/** The database is away for a moment: a refusal that says so (or a request still being handled) is the promise. */
const databaseRefusal = (status: number, code: string | undefined): boolean =>
  (status === 503 && code === 'DATABASE_UNAVAILABLE') || code === 'IDEMPOTENCY_KEY_IN_PROGRESS';

function topologyOf(deployment: DrillDeployment): Topology {
  if (deployment.topology === undefined) throw new Error('this row needs the topology (npm run drill -- --topology)');
  return deployment.topology;
}

async function firstAnswerFromPrimary(deployment: DrillDeployment, since: number): Promise<number | undefined> {
  const rows = await queryRows<{ at: Date | null }>(
    deployment.databaseUrl,
    `SELECT min(m.completed_at) AS at FROM messages m JOIN agent_endpoints e ON e.id = m.endpoint_id
      WHERE e.agent_id = 'steady' AND e.position = 0 AND m.status = 'complete' AND m.created_at >= $1`,
    [new Date(since)],
  );
  return rows[0]?.at?.getTime() ?? undefined;
}

const upstreamFault = (name: string, agent: DrillAgent, what: string, midAnswer: boolean): Scenario => ({
  name,
  what,
  on: ['single', 'topology'],
  agent,
  async run(_deployment, holdMs) {
    const faultAt = Date.now();
    await sleep(holdMs);
    return { faultAt, repairAt: undefined };
  },
  // Mid-answer faults continue on the fallback (no `reset`: the stored answer names the fallback) or restart there
  // with `reset`; a refusal before the first token is never seen by the client.
  felt: (verdict) => !midAnswer || verdict.resets > 0 || verdict.servedByFallback > 0,
});

/**
 * A dependency every instance shares away for the hold time, then back:
 * `takeAway` breaks it and resolves with what start() puts back.
 */
const outage = (name: string, what: string, takeAway: (deployment: DrillDeployment) => Promise<{ start(): Promise<void> }>, extra: Partial<Scenario> = {}): Scenario => ({
  name,
  what,
  on: ['single', 'topology'],
  agent: 'steady',
  async run(deployment, holdMs, broken) {
    const faultAt = Date.now();
    const away = await takeAway(deployment);
    broken();
    await sleep(holdMs);
    const repairAt = Date.now();
    await away.start();
    return { faultAt, repairAt };
  },
  ...extra,
});

/** A server of the small deployment killed (-9), to be started again on the same port and data. */
async function crashed(service: DisposableService): Promise<DisposableService> {
  await service.crash();
  return service;
}

const single = (deployment: DrillDeployment) => {
  if (deployment.single === undefined) throw new Error('this row needs the small deployment');
  return deployment.single;
};

/** PostgreSQL lost its leader: writes come back (through HAProxy, on whichever node leads) within 15 s. */
const LEADER_LOST_BUDGET_MS = 15_000;
/** A planned switchover, and the Redis master lost or failed over: within 5 s. */
const PLANNED_BUDGET_MS = 5_000;

export const SCENARIOS: readonly Scenario[] = [
  upstreamFault('upstream cuts mid-answer', 'cut', 'the primary endpoint cuts every stream after 5 chunks', true),
  upstreamFault('upstream stalls mid-answer', 'stall', 'the primary endpoint stops sending after 5 chunks (idle deadline 1 s)', true),
  upstreamFault('upstream sends garbage', 'malformed', 'the primary endpoint sends 4 chunks that are not JSON after 5 chunks (more than UPSTREAM_MALFORMED_EVENTS_MAX skips)', true),
  upstreamFault('upstream refuses (503)', 'refuse', 'the primary endpoint answers 503 with Retry-After: 1', false),
  {
    name: 'upstream process killed',
    what: 'the primary mock upstream is killed (-9), then started again',
    on: ['single', 'topology'],
    agent: 'steady',
    async run(deployment, holdMs) {
      const faultAt = Date.now();
      await deployment.primary.crash();
      await sleep(holdMs);
      const repairAt = Date.now();
      await deployment.primary.start();
      return { faultAt, repairAt };
    },
    felt: (verdict) => verdict.resets > 0 || verdict.servedByFallback > 0,
    recovered: (deployment, since) => firstAnswerFromPrimary(deployment, since),
  },
  {
    name: 'instance killed (-9)',
    what: 'one of three instances is killed mid-answer, then started again',
    on: ['single', 'topology'],
    agent: 'steady',
    takeover: true,
    async run(deployment) {
      const victim = deployment.instances[1];
      if (!victim) throw new Error('no instance to kill');
      const faultAt = Date.now();
      await victim.crash();
      const repairAt = Date.now();
      await victim.start();
      return { faultAt, repairAt };
    },
    felt: (_verdict, traces) => traces.some((t) => t.resets.some((r) => r.reason === 'takeover')),
  },
  {
    name: 'rolling restart (SIGTERM)',
    what: 'every instance in turn gets SIGTERM (drain), exits, and is started again',
    on: ['single', 'topology'],
    agent: 'steady',
    takeover: true,
    async run(deployment) {
      const faultAt = Date.now();
      let repairAt = faultAt;
      for (const instance of deployment.instances) {
        const exit = await instance.terminate();
        if (exit?.code !== 0) throw new Error(`${instance.name} did not exit cleanly on SIGTERM (${JSON.stringify(exit)}):\n${instance.tail().join('\n')}`);
        repairAt = Date.now();
        await instance.start();
      }
      return { faultAt, repairAt };
    },
  },
  outage(
    'Redis down',
    'Redis is killed (-9) for the hold time, then started again (empty); on the topology every Redis server, master and replica, at once, and the Sentinels must agree on a master again',
    (d) => (d.topology === undefined ? crashed(single(d).redis) : killEveryRedisServer(d.topology)),
    { felt: (_verdict, _traces, measured) => measured.redisWriteGapMs > 1_000 },
  ),
  outage(
    'PostgreSQL down',
    "PostgreSQL is killed (-9) for the hold time, then started again (crash recovery); on the topology HAProxy, the instances' only way to the database, is killed (-9) and started again",
    (d) => (d.topology === undefined ? crashed(single(d).postgres) : killHaproxy(d.topology)),
    {
      // New turns are refused at once with a clear code while the database is away.
      newTurnsDuringFault: 4,
      allowedRefusal: databaseRefusal,
      felt: (verdict) => verdict.refusals > 0,
    },
  ),
  {
    name: 'PostgreSQL leader killed (-9)',
    what: "the Patroni leader's postmaster is killed (-9); Patroni, still holding the leader key, runs crash recovery and PostgreSQL starts again",
    on: ['topology'],
    agent: 'steady',
    async run(deployment) {
      const faultAt = Date.now();
      await killLeaderPostmaster(topologyOf(deployment));
      return { faultAt, repairAt: faultAt };
    },
    allowedRefusal: databaseRefusal,
    felt: (verdict, _traces, measured) => verdict.refusals > 0 || measured.turnWriteGapMs > 1_000,
    turnWriteBudgetMs: LEADER_LOST_BUDGET_MS,
  },
  {
    name: "leader's Patroni killed (-9)",
    what: "the leader's Patroni is killed (-9): its key expires, the synchronous standby is promoted, HAProxy moves the writes; the old leader's Patroni is started again after the hold and rejoins as a replica (pg_rewind)",
    on: ['topology'],
    agent: 'steady',
    async run(deployment, holdMs) {
      const topology = topologyOf(deployment);
      const faultAt = Date.now();
      const node = await killLeaderPatroni(topology);
      await waitUntil('a new Patroni leader', async () => {
        const leader = await topology.patroni.leader();
        return leader !== undefined && leader.name !== node.name ? true : `the leader is ${leader?.name ?? 'nobody'}`;
      }, 60_000);
      await sleep(holdMs);
      const repairAt = Date.now();
      await node.start();
      return { faultAt, repairAt };
    },
    allowedRefusal: databaseRefusal,
    felt: (verdict, _traces, measured) => verdict.refusals > 0 || measured.turnWriteGapMs > 1_000,
    turnWriteBudgetMs: LEADER_LOST_BUDGET_MS,
  },
  {
    name: 'planned switchover',
    what: 'a switchover to the synchronous standby through Patroni\'s REST API',
    on: ['topology'],
    agent: 'steady',
    async run(deployment) {
      const faultAt = Date.now();
      await switchoverToSyncStandby(topologyOf(deployment));
      return { faultAt, repairAt: faultAt };
    },
    // switchover() checks the lead really moved; a smooth one may leave clients nothing to notice.
    allowedRefusal: databaseRefusal,
    turnWriteBudgetMs: PLANNED_BUDGET_MS,
  },
  {
    name: 'synchronous standby lost',
    what: 'the synchronous standby is stopped; Patroni makes the other replica synchronous; the stopped one is started again after the hold',
    on: ['topology'],
    agent: 'steady',
    async run(deployment, holdMs) {
      const faultAt = Date.now();
      const node = await stopReplica(topologyOf(deployment), 'sync');
      await sleep(holdMs);
      const repairAt = Date.now();
      await node.start();
      return { faultAt, repairAt };
    },
    allowedRefusal: databaseRefusal,
    turnWriteBudgetMs: PLANNED_BUDGET_MS,
  },
  {
    name: 'Redis master killed (-9)',
    what: 'the Redis master is killed (-9); the Sentinels promote its replica; the old master is started again once they have, and rejoins as a replica',
    on: ['topology'],
    agent: 'steady',
    async run(deployment, holdMs) {
      const topology = topologyOf(deployment);
      const faultAt = Date.now();
      const node = await killRedisMaster(topology);
      await waitUntil('the Sentinels to name a new master', async () => {
        const master = await topology.redis.master();
        return master !== undefined && master.name !== node.name ? true : `the master is ${master?.name ?? 'not agreed on'}`;
      }, 60_000);
      await sleep(holdMs);
      const repairAt = Date.now();
      await node.start();
      return { faultAt, repairAt };
    },
    felt: (_verdict, _traces, measured) => measured.redisWriteGapMs > 500,
    redisWriteBudgetMs: PLANNED_BUDGET_MS,
  },
  {
    name: 'planned Sentinel failover',
    what: 'SENTINEL FAILOVER: the replica is promoted and the master demoted',
    on: ['topology'],
    agent: 'steady',
    async run(deployment) {
      const faultAt = Date.now();
      await sentinelFailover(topologyOf(deployment));
      return { faultAt, repairAt: faultAt };
    },
    redisWriteBudgetMs: PLANNED_BUDGET_MS,
  },
  {
    name: 'etcd member lost',
    what: 'one of three etcd members is stopped for the hold time, then started again',
    on: ['topology'],
    agent: 'steady',
    async run(deployment, holdMs) {
      const faultAt = Date.now();
      const member = await stopEtcdMember(topologyOf(deployment), 0);
      await sleep(holdMs);
      const repairAt = Date.now();
      await member.start();
      return { faultAt, repairAt };
    },
    // A quorum remains: nothing a client can notice beyond the machine's own noise.
    turnWriteBudgetMs: PLANNED_BUDGET_MS,
  },
];

/** The rows CI runs on the topology (`--short`): the leader killed, the switchover, the Redis master killed. */
export const SHORT_TOPOLOGY_ROWS = ['PostgreSQL leader killed (-9)', 'planned switchover', 'Redis master killed (-9)'];
