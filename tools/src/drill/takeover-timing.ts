/**
 * How long an answer waits when its instance dies, and what the takeover
 * machinery costs an instance that does nothing.
 *
 *   npm run drill:takeover [-- --answers 20 --rounds 1 --idle-seconds 30 --idle-instances 2]
 *
 * Takeover: two real server processes on a PostgreSQL and a Redis of their
 * own; `answers` streaming answers run on A (the mock upstream's slow
 * chunks), and once each has shown text A is killed (-9). Every client
 * reconnects to B with Last-Event-ID, as the web app does; the figure per
 * answer is from the kill to the first event of the continued answer (the
 * first of the new block of event ids B sends), printed as min/median/max.
 *
 * Idle load: `idle-instances` instances with nothing to do, their Redis
 * commands (INFO commandstats) and PostgreSQL transactions (pg_stat_database
 * xact_commit) counted over `idle-seconds` and divided per instance.
 *
 * LLMCHAT_SERVER_MAIN=/path/to/server/dist/main.js measures another build.
 */

import { connect } from 'node:net';
import { parseArgs } from 'node:util';
import { setTimeout as sleep } from 'node:timers/promises';
import { distribution } from '../bench/stats.js';
import { startLocalCluster, type LocalCluster } from '../local-cluster/cluster.js';
import { queryRows } from '../local-cluster/sql.js';
import { runTurn, type TurnTrace } from './turn-client.js';
import { storedTurns, streamingLeft, verify, type Verdict } from './verify.js';

/** The mock's answers: long enough that every answer is mid-stream at the kill and again while B runs it. */
export const TAKEOVER_CHUNKS = 60;
const CHUNK_INTERVAL_MS = 50;
const TURN_DEADLINE_MS = 60_000;

export interface TakeoverRun {
  /** Per answer, from the kill to the first event of the continued answer at its client (ms); absent where none came. */
  takeoverMs: number[];
  traces: TurnTrace[];
  verdict: Verdict;
  /** Answers whose client saw more than one takeover (a second instance ran it again). */
  takenTwice: number;
}

export interface TakeoverRunOptions {
  answers: number;
  /** A tag for the questions (their stored rows are found by it). */
  tag: string;
}

/** Kills the instance serving `answers` answers and follows each on the other one. The cluster needs two instances; the first is killed and started again. */
export async function runTakeover(cluster: LocalCluster, options: TakeoverRunOptions): Promise<TakeoverRun> {
  const [a, b] = cluster.instances;
  if (!a || !b) throw new Error('the takeover check needs two instances');
  const live: TurnTrace[] = [];
  const turns = Array.from({ length: options.answers }, (_, i) =>
    runTurn({
      origin: a.url,
      resumeOrigin: b.url,
      token: cluster.token,
      agentId: 'steady',
      question: `${options.tag} answer ${i}`,
      deadlineMs: TURN_DEADLINE_MS,
      onTrace: (trace) => live.push(trace),
    }),
  );
  const deadline = Date.now() + 30_000;
  while (Date.now() < deadline && (live.length < options.answers || live.some((t) => t.firstChunkAt === undefined))) await sleep(20);
  if (live.some((t) => t.firstChunkAt === undefined)) throw new Error(`not every answer started on ${a.name}: ${a.tail().slice(-20).join('\n')}`);
  const killedAt = Date.now();
  await a.crash();
  const traces = await Promise.all(turns);
  await a.start();
  const settleDeadline = Date.now() + 30_000;
  while (Date.now() < settleDeadline && (await streamingLeft(cluster.postgres.url, options.tag)) > 0) await sleep(200);
  const verdict = verify(traces, await storedTurns(cluster.postgres.url, options.tag), TAKEOVER_CHUNKS);
  const takeoverMs = traces.flatMap((t) => (t.takeoverEventsAt[0] === undefined ? [] : [t.takeoverEventsAt[0] - killedAt]));
  return { takeoverMs, traces, verdict, takenTwice: traces.filter((t) => t.takeoverEventsAt.length > 1).length };
}

export interface IdleLoad {
  instances: number;
  seconds: number;
  /** Redis commands per second per instance (those a script runs included), and by command. */
  redisPerSecond: number;
  redisByCommand: Record<string, number>;
  /** Calls from the instance (a script is one), per second per instance. */
  redisCallsPerSecond: number;
  /** Microseconds Redis spent on them, per second per instance. */
  redisUsecPerSecond: number;
  /** PostgreSQL transactions (committed) per second per instance. */
  postgresPerSecond: number;
}

/** Calls and microseconds spent per command so far (INFO commandstats; a script's own commands count too). */
async function redisCommandCounts(port: number): Promise<Map<string, { calls: number; usec: number }>> {
  const counts = new Map<string, { calls: number; usec: number }>();
  for (const match of (await redisBulk(port, 'INFO commandstats')).matchAll(/^cmdstat_([^:]+):calls=(\d+),usec=(\d+)/gm)) {
    counts.set(match[1] ?? '', { calls: Number(match[2]), usec: Number(match[3]) });
  }
  return counts;
}

/** One command whose reply is a bulk string, read whole. */
async function redisBulk(port: number, command: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = connect({ host: '127.0.0.1', port });
    let data = Buffer.alloc(0);
    const timer = setTimeout(() => {
      socket.destroy();
      reject(new Error(`redis on ${port}: no reply`));
    }, 5_000);
    socket.once('connect', () => socket.write(`${command}\r\n`));
    socket.on('data', (chunk: Buffer) => {
      data = Buffer.concat([data, chunk]);
      const header = data.indexOf('\r\n');
      if (header < 0) return;
      const length = Number(data.subarray(1, header).toString());
      if (data.length < header + 2 + length) return;
      clearTimeout(timer);
      socket.destroy();
      resolve(data.subarray(header + 2, header + 2 + length).toString());
    });
    socket.once('error', (err) => {
      clearTimeout(timer);
      reject(err);
    });
  });
}

async function committedTransactions(databaseUrl: string): Promise<number> {
  const rows = await queryRows<{ n: string }>(databaseUrl, `SELECT xact_commit AS n FROM pg_stat_database WHERE datname = current_database()`);
  return Number(rows[0]?.n ?? 0);
}

/** Counts what idle instances send over `seconds` (the cluster's own Redis and PostgreSQL: nothing else talks to them). */
export async function measureIdleLoad(cluster: LocalCluster, seconds: number): Promise<IdleLoad> {
  const instances = cluster.instances.length;
  // pg_stat_database is updated by each backend at most once a second: wait for the last second's figures.
  const settle = () => sleep(1_500);
  await settle();
  const redisBefore = await redisCommandCounts(cluster.redis.port);
  const pgBefore = await committedTransactions(cluster.postgres.url);
  await sleep(seconds * 1000);
  await settle();
  const redisAfter = await redisCommandCounts(cluster.redis.port);
  const pgAfter = await committedTransactions(cluster.postgres.url);
  const elapsed = seconds + 1.5;
  const redisByCommand: Record<string, number> = {};
  let redisTotal = 0;
  let redisUsec = 0;
  for (const [name, after] of redisAfter) {
    const before = redisBefore.get(name) ?? { calls: 0, usec: 0 };
    // The measurement's own INFO is left out.
    const delta = after.calls - before.calls - (name === 'info' ? 1 : 0);
    if (delta <= 0) continue;
    redisByCommand[name] = delta / elapsed / instances;
    redisTotal += delta;
    if (name !== 'info') redisUsec += after.usec - before.usec;
  }
  // Commands a script runs are counted under their own names and within the script's call (evalsha).
  const scripted = new Set(['time', 'zscore', 'zadd', 'zrangebyscore', 'zremrangebyscore']);
  const scriptCalls = (redisByCommand.evalsha ?? 0) + (redisByCommand.eval ?? 0);
  const redisCallsPerSecond = Object.entries(redisByCommand).reduce((sum, [name, rate]) => sum + (scripted.has(name) && scriptCalls > 0 ? 0 : rate), 0);
  // The first count's own transaction (and the connection's) is left out.
  const pgTotal = Math.max(0, pgAfter - pgBefore - 1);
  return {
    instances,
    seconds: elapsed,
    redisPerSecond: redisTotal / elapsed / instances,
    redisByCommand,
    redisCallsPerSecond,
    redisUsecPerSecond: redisUsec / elapsed / instances,
    postgresPerSecond: pgTotal / elapsed / instances,
  };
}

function ms(value: number): string {
  return Number.isFinite(value) ? `${(value / 1000).toFixed(2)} s` : '—';
}

/** min / median / max of takeover times, as the drill and this tool print them. */
export function formatTakeover(values: readonly number[]): string {
  if (values.length === 0) return '—';
  const d = distribution(values);
  return `${ms(d.min)} / ${ms(d.p50)} / ${ms(d.max)}`;
}

async function main(): Promise<number> {
  const { values } = parseArgs({
    options: {
      answers: { type: 'string', default: '20' },
      rounds: { type: 'string', default: '1' },
      'idle-seconds': { type: 'string', default: '30' },
      'idle-instances': { type: 'string', default: '2' },
      help: { type: 'boolean', short: 'h' },
    },
  });
  if (values.help === true) {
    process.stdout.write('node tools/dist/drill/takeover-timing.js [--answers 20] [--rounds 1] [--idle-seconds 30] [--idle-instances 2]\n');
    return 0;
  }
  const answers = Number(values.answers);
  const rounds = Number(values.rounds);
  const idleSeconds = Number(values['idle-seconds']);
  let broken = false;
  const cluster = await startLocalCluster({ instances: 2, chunks: TAKEOVER_CHUNKS, intervalMs: CHUNK_INTERVAL_MS });
  try {
    const all: number[] = [];
    for (let round = 0; round < rounds; round++) {
      const run = await runTakeover(cluster, { answers, tag: `takeover-${round}-${Date.now().toString(36)}` });
      all.push(...run.takeoverMs);
      const problems = [
        run.verdict.lost > 0 ? `${run.verdict.lost} lost (${run.verdict.lostDetails.join('; ')})` : '',
        run.verdict.errors > 0 ? `${run.verdict.errors} errors` : '',
        run.takeoverMs.length < answers ? `${answers - run.takeoverMs.length} not taken over` : '',
        run.takenTwice > 0 ? `${run.takenTwice} taken over twice` : '',
        run.verdict.lostEvents + run.verdict.duplicateEvents > 0 ? `${run.verdict.lostEvents} events lost, ${run.verdict.duplicateEvents} repeated` : '',
      ].filter(Boolean);
      broken ||= problems.length > 0;
      process.stdout.write(`round ${round + 1}: ${answers} answers, kill → first event of the continued answer min/median/max ${formatTakeover(run.takeoverMs)}${problems.length > 0 ? `; BROKEN: ${problems.join(', ')}` : ''}\n`);
    }
    if (rounds > 1) process.stdout.write(`all rounds (${all.length} answers): min/median/max ${formatTakeover(all)}\n`);
  } finally {
    await cluster.dispose();
  }
  if (idleSeconds > 0) {
    const idle = await startLocalCluster({ instances: Number(values['idle-instances']), chunks: TAKEOVER_CHUNKS, intervalMs: CHUNK_INTERVAL_MS });
    try {
      const load = await measureIdleLoad(idle, idleSeconds);
      const byCommand = Object.entries(load.redisByCommand)
        .sort((x, y) => y[1] - x[1])
        .map(([name, rate]) => `${name} ${rate.toFixed(2)}`)
        .join(', ');
      process.stdout.write(`idle load per instance (${load.instances} instances, ${load.seconds.toFixed(1)} s): Redis ${load.redisCallsPerSecond.toFixed(2)} calls/s, ${load.redisPerSecond.toFixed(2)} commands/s with those scripts run (${byCommand}), ${load.redisUsecPerSecond.toFixed(0)} µs/s of Redis time; PostgreSQL ${load.postgresPerSecond.toFixed(2)} transactions/s\n`);
    } finally {
      await idle.dispose();
    }
  }
  return broken ? 1 : 0;
}

if (process.argv[1]?.endsWith('takeover-timing.js')) {
  main().then(
    (code) => process.exit(code),
    (err: unknown) => {
      process.stderr.write(`${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
      process.exit(1);
    },
  );
}
