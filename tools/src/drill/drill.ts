/**
 * `npm run drill`: takes a deployment made of real processes on loopback
 * through each failure LLMChat promises to survive, under chat load, and
 * prints one row per failure. Exits 1 when a row breaks a promise: an
 * error, a lost turn, a lost or repeated event, an answer left `streaming`,
 * writes out longer than the row's budget, or a takeover or recovery
 * slower than its bound.
 *
 *   node tools/dist/drill/drill.js [--topology [--short]] [--only name,name] [--concurrency N] [--blocking N] [--hold 5]
 *
 * The default deployment is small: one PostgreSQL, one Redis, three
 * instances behind nginx, two mock upstreams. `--topology` runs the
 * production-shaped one of `npm run cluster` (Patroni, HAProxy, Sentinel,
 * etcd) and its own rows; `--short` keeps the three that CI runs.
 */

import { parseArgs } from 'node:util';
import { setTimeout as sleep } from 'node:timers/promises';
import { startLocalCluster } from '../local-cluster/cluster.js';
import { nginxPath } from '../local-cluster/nginx.js';
import { postgresBinDir, redisServerPath } from '../local-cluster/services.js';
import { startTopology, topologyBinariesMissing } from '../local-cluster/topology.js';
import { singleDeployment, topologyDeployment, type DrillDeployment } from './deployment.js';
import { startArrivals, startLoad } from './load.js';
import { longestGap, startRedisProbe, turnWrites, type RedisProbe } from './outage.js';
import { SCENARIOS, SHORT_TOPOLOGY_ROWS, type Scenario } from './scenarios.js';
import { formatTakeover } from './takeover-timing.js';
import { runTurn, type TurnTrace } from './turn-client.js';
import { storedTurns, streamingLeft, verify, type Verdict } from './verify.js';

const BASELINE_MS = 2_000;
const TURN_DEADLINE_MS = 60_000;
/** Bounds a row must meet (the slowest answer's takeover; the default lease is 1.2 s, see npm run drill:takeover for the figure). */
const TAKEOVER_BOUND_MS = 15_000;
const RECOVERY_WAIT_MS = 90_000;
/** The write probe's pace, and how many of its turns may run at once (a long outage would pile them up). */
const ARRIVAL_INTERVAL_MS = 100;
const ARRIVALS_IN_FLIGHT = 100;

/** What each deployment's answers look like, and the load and bounds it gets by default. */
const PROFILES = {
  // 20 chunks 25 ms apart (half a second): every failure lands mid-answer.
  single: { chunks: 20, intervalMs: 25, concurrency: 24, blocking: 0, recoveryBoundMs: 30_000 },
  // 40 chunks 50 ms apart (2 s): 200 streams in flight are 100 turns a second, which the
  // two shared cores carry beside three PostgreSQL nodes; a node that rejoins (pg_rewind,
  // catching up) takes longer to be whole than the small deployment's restart.
  topology: { chunks: 40, intervalMs: 50, concurrency: 200, blocking: 20, recoveryBoundMs: 60_000 },
} as const;

interface Row {
  scenario: Scenario;
  verdict: Verdict;
  /** Requests nginx moved to another instance (the first one refused, reset or answered 502/503). */
  moved: number;
  /** The longest time no turn could be written (acknowledged to its client) around the failure. */
  turnWriteGapMs: number;
  /** The longest time a Redis client configured as the instances' could not write. */
  redisWriteGapMs: number;
  /** Where the two outages fall, as wall-clock times (`between`). */
  outages: { turnWrites: string; redisWrites: string };
  /** Per answer taken over: from the failure to the first event of its continued answer at the client. */
  takeoverMs: number[];
  recoveryMs: number | undefined;
  problems: string[];
}

/** Waits until the deployment is whole and a fresh turn through nginx completes; resolves with when, or undefined. */
async function waitUntilWhole(deployment: DrillDeployment, scenario: Scenario, tag: string, since: number): Promise<number | undefined> {
  const deadline = Date.now() + RECOVERY_WAIT_MS;
  while (Date.now() < deadline) {
    if ((await deployment.whole()) === true) {
      const probe = await runTurn({ origin: deployment.nginx.url, token: deployment.token, agentId: scenario.agent, question: `${tag}-probe ${Date.now()}`, deadlineMs: 10_000 });
      if (probe.outcome === 'complete' && probe.refused.length === 0) {
        const at = Date.now();
        if (!scenario.recovered) return at;
        const served = await scenario.recovered(deployment, since).catch(() => undefined);
        if (served !== undefined) return Math.max(at, served);
      }
    }
    await sleep(200);
  }
  return undefined;
}

async function runScenario(deployment: DrillDeployment, scenario: Scenario, options: { concurrency: number; blocking: number; holdMs: number; index: number; probe: RedisProbe; chunks: number; recoveryBoundMs: number }): Promise<Row> {
  const tag = `drill-${options.index}-${scenario.agent}-${Date.now().toString(36)}`;
  const rowStart = Date.now();
  const loadSpec = { origin: deployment.nginx.url, token: deployment.token, agentId: scenario.agent, maxTurns: 50_000, maxMs: 180_000, turnDeadlineMs: TURN_DEADLINE_MS, tag };
  const loads = [startLoad({ ...loadSpec, concurrency: options.concurrency })];
  if (options.blocking > 0) loads.push(startLoad({ ...loadSpec, concurrency: options.blocking, stream: false }));
  // The write probe: a new turn every 100 ms, whatever the closed-loop clients are waiting on.
  const arrivals = startArrivals({ ...loadSpec, intervalMs: ARRIVAL_INTERVAL_MS, maxInFlight: ARRIVALS_IN_FLIGHT });
  loads.push(arrivals);
  await sleep(BASELINE_MS);
  const window = await scenario.run(deployment, options.holdMs, () => {
    if (scenario.newTurnsDuringFault === undefined) return;
    loads.push(startLoad({ ...loadSpec, concurrency: scenario.newTurnsDuringFault, maxTurns: 1_000, maxMs: options.holdMs }));
  });
  const recoveredAt = window.repairAt === undefined ? undefined : await waitUntilWhole(deployment, scenario, tag, window.repairAt);
  await sleep(1_000);
  const measuredUntil = Date.now();
  const traces: TurnTrace[] = (await Promise.all(loads.map((l) => l.stop()))).flat();
  const rowEnd = Date.now();
  const moved = deployment.nginx.accessLog().filter((e) => e.at >= rowStart && e.at <= rowEnd && e.upstreamStatuses.length > 1).length;
  // Every client has its `end`; the last writes may still be on their way (a turn ends for the client before its row is final).
  const settleDeadline = Date.now() + 30_000;
  while (Date.now() < settleDeadline && (await streamingLeft(deployment.databaseUrl, tag)) > 0) await sleep(250);

  const stored = await storedTurns(deployment.databaseUrl, tag);
  const verdict = verify(traces, stored, options.chunks);
  const turnWriteGap = longestGap(turnWrites(arrivals.traces), window.faultAt, measuredUntil);
  const redisWriteGap = longestGap(options.probe.successes, window.faultAt, measuredUntil);
  const turnWriteGapMs = turnWriteGap.ms;
  const redisWriteGapMs = redisWriteGap.ms;
  const problems: string[] = [];
  if (verdict.errors > 0) problems.push(`${verdict.errors} turns ended in an error (${JSON.stringify(verdict.errorCodes)})`);
  if (verdict.lost > 0) problems.push(`${verdict.lost} turns lost: ${verdict.lostDetails.join('; ')}`);
  if (verdict.lostEvents > 0 || verdict.duplicateEvents > 0) problems.push(`${verdict.lostEvents} events lost, ${verdict.duplicateEvents} repeated`);
  if (verdict.leftStreaming > 0) problems.push(`${verdict.leftStreaming} answers left streaming`);
  if (traces.some((t) => t.refused.some((r) => !(scenario.allowedRefusal?.(r.status, r.code) ?? false)))) {
    problems.push(`clients got refusals outside the promise: ${JSON.stringify(verdict.refusalCodes)}`);
  }
  if (scenario.felt && !scenario.felt(verdict, traces, { turnWriteGapMs, redisWriteGapMs })) problems.push('the failure was not felt by any turn: the row proves nothing');
  if (scenario.turnWriteBudgetMs !== undefined && turnWriteGapMs > scenario.turnWriteBudgetMs) problems.push(`no turn could be written for ${seconds(turnWriteGapMs)} (budget ${seconds(scenario.turnWriteBudgetMs)})`);
  if (scenario.redisWriteBudgetMs !== undefined && redisWriteGapMs > scenario.redisWriteBudgetMs) problems.push(`Redis took no write for ${seconds(redisWriteGapMs)} (budget ${seconds(scenario.redisWriteBudgetMs)})`);

  let takeoverMs: number[] = [];
  if (scenario.takeover) {
    // A rolling restart normally drains within the deadline: no takeover at all is the good case there.
    takeoverMs = traces.flatMap((t) => (t.takeoverEventsAt[0] === undefined ? [] : [t.takeoverEventsAt[0] - window.faultAt]));
    const slowest = Math.max(0, ...takeoverMs);
    if (slowest > TAKEOVER_BOUND_MS) problems.push(`takeover took ${slowest} ms (bound ${TAKEOVER_BOUND_MS})`);
  }
  let recoveryMs: number | undefined;
  if (window.repairAt !== undefined) {
    if (recoveredAt === undefined) problems.push(`not whole again within ${RECOVERY_WAIT_MS} ms of the repair (${String(await deployment.whole())})`);
    else {
      const touched = traces.filter((t) => t.endedAt >= window.faultAt && (t.refused.length > 0 || t.reconnects > 0 || t.resets.length > 0 || t.outcome !== 'complete'));
      const lastTouched = Math.max(0, ...touched.map((t) => t.endedAt));
      recoveryMs = Math.max(recoveredAt, lastTouched) - window.repairAt;
      if (recoveryMs > options.recoveryBoundMs) problems.push(`recovery took ${recoveryMs} ms (bound ${options.recoveryBoundMs})`);
    }
  }
  return { scenario, verdict, moved, turnWriteGapMs, redisWriteGapMs, outages: { turnWrites: between(turnWriteGap), redisWrites: between(redisWriteGap) }, takeoverMs, recoveryMs, problems };
}

/** A gap's bounds as wall-clock times, to line up with the engines' logs (UTC, as PostgreSQL and Patroni log). */
function between(gap: { after: number; until: number }): string {
  const clock = (ms: number): string => new Date(ms).toISOString().slice(11, 23);
  return `from ${clock(gap.after)} to ${clock(gap.until)} UTC`;
}

function seconds(ms: number | undefined): string {
  return ms === undefined ? '—' : `${(ms / 1000).toFixed(1)} s`;
}

export function formatTable(rows: readonly Row[]): string {
  const header = ['failure', 'turns', 'errors', 'refused (retried)', 'moved by nginx', 'write outage', 'Redis write outage', 'turns lost', 'events lost/dup', 'takeover', 'recovery', 'verdict'];
  const lines = rows.map((r) => [
    r.scenario.name,
    String(r.verdict.turns),
    String(r.verdict.errors),
    r.verdict.refusals === 0 ? '0' : `${r.verdict.refusals} (${Object.entries(r.verdict.refusalCodes).map(([k, v]) => `${v}× ${k}`).join(', ')})`,
    String(r.moved),
    seconds(r.turnWriteGapMs),
    seconds(r.redisWriteGapMs),
    String(r.verdict.lost),
    `${r.verdict.lostEvents}/${r.verdict.duplicateEvents}`,
    r.scenario.takeover === true ? formatTakeover(r.takeoverMs) : '—',
    seconds(r.recoveryMs),
    r.problems.length === 0 ? 'ok' : 'BROKEN',
  ]);
  const widths = header.map((h, i) => Math.max(h.length, ...lines.map((l) => (l[i] ?? '').length)));
  const row = (cells: string[]) => `| ${cells.map((c, i) => c.padEnd(widths[i] ?? 0)).join(' | ')} |`;
  return [row(header), `|${widths.map((w) => '-'.repeat(w + 2)).join('|')}|`, ...lines.map(row)].join('\n');
}

const LEGEND =
  "errors: turns that ended in an error; refused: 5xx answers a client retried (nginx retries an instance that is gone or draining itself, so none should reach a client but while the database is away); moved by nginx: requests nginx sent on to another instance; write outage: the longest time, around the failure, between two new turns written (acknowledged to their client by a `start` event) among those a probe starts every 100 ms beside the load; Redis write outage: the longest time a Redis client configured as the instances' (through the Sentinels on the topology) had no write succeed, probing every 100 ms; turns lost: a turn a client started that did not end complete with the upstream's whole answer, stored exactly once; events lost/dup: gaps and repeats in the event ids a client saw across reconnects; takeover: per answer an instance left, from the failure to the first event of the continued answer at its client, min / median / max; recovery: from the repair (or the failure, where the engines repair it themselves) to the deployment whole again and every turn it touched ended.";

function redisPasswordOf(url: string): string {
  const match = /^redis-sentinel:\/\/:([^@]*)@/.exec(url);
  return match?.[1] === undefined ? '' : decodeURIComponent(match[1]);
}

async function main(): Promise<number> {
  const { values } = parseArgs({
    options: {
      topology: { type: 'boolean' },
      short: { type: 'boolean' },
      only: { type: 'string' },
      concurrency: { type: 'string' },
      blocking: { type: 'string' },
      hold: { type: 'string', default: '5' },
      'keep-logs': { type: 'boolean' },
      help: { type: 'boolean', short: 'h' },
    },
  });
  const kind: DrillDeployment['kind'] = values.topology === true ? 'topology' : 'single';
  const profile = PROFILES[kind];
  const rows = SCENARIOS.filter((s) => s.on.includes(kind));
  if (values.help === true) {
    console.log('usage: drill [--topology [--short] [--keep-logs]] [--only name,name] [--concurrency N] [--blocking N] [--hold 5]\nrows:');
    for (const s of rows) console.log(`  ${s.name}: ${s.what}`);
    return 0;
  }
  const concurrency = Number(values.concurrency ?? profile.concurrency);
  const blocking = Number(values.blocking ?? profile.blocking);
  const holdMs = Number(values.hold) * 1000;
  if (!Number.isInteger(concurrency) || concurrency < 1 || concurrency > 500) throw new Error('--concurrency must be an integer from 1 to 500');
  if (!Number.isInteger(blocking) || blocking < 0 || blocking > 200) throw new Error('--blocking must be an integer from 0 to 200');
  if (!Number.isFinite(holdMs) || holdMs < 1000 || holdMs > 60_000) throw new Error('--hold must be 1 to 60 seconds');
  if (values.short === true && kind !== 'topology') throw new Error('--short goes with --topology');
  const only = values.only?.split(',').map((s) => s.trim().toLowerCase());
  const chosen = only ? rows.filter((s) => only.some((o) => s.name.toLowerCase().includes(o))) : values.short === true ? rows.filter((s) => SHORT_TOPOLOGY_ROWS.includes(s.name)) : rows;
  if (chosen.length === 0) throw new Error(`--only matched no row; rows: ${rows.map((s) => s.name).join(', ')}`);
  const missing =
    kind === 'topology'
      ? topologyBinariesMissing()
      : Object.entries({ postgresql: postgresBinDir(), 'redis-server': redisServerPath(), nginx: nginxPath() }).flatMap(([name, found]) => (found === undefined ? [name] : []));
  if (missing.length > 0) throw new Error(`the drill needs ${missing.join(', ')}; install them from Debian's packages`);

  const load = `${concurrency} concurrent streaming chat clients${blocking > 0 ? ` and ${blocking} non-streaming ones` : ''}; failures held ${holdMs / 1000} s; answers of ${profile.chunks} chunks ${profile.intervalMs} ms apart`;
  console.log(
    kind === 'topology'
      ? `LLMChat drill on the production-shaped topology: 3 instances behind nginx, 3 PostgreSQL nodes under Patroni (synchronous) behind HAProxy, 3 etcd members, a Redis master and replica under 3 Sentinels, two mock upstreams; ${load}`
      : `LLMChat drill: 3 instances behind nginx, PostgreSQL, Redis, two mock upstreams; ${load}`,
  );
  const deployment =
    kind === 'topology'
      ? topologyDeployment(await startTopology({ instances: 3, chunks: profile.chunks, intervalMs: profile.intervalMs, log: (line) => console.log(`  starting: ${line}`) }))
      : singleDeployment(await startLocalCluster({ instances: 3, chunks: profile.chunks, intervalMs: profile.intervalMs }));
  const redisEndpoints = deployment.topology?.endpoints().redis;
  const probe = redisEndpoints
    ? startRedisProbe({ sentinels: redisEndpoints.sentinels, masterName: redisEndpoints.masterName, password: redisPasswordOf(redisEndpoints.url) })
    : startRedisProbe({ url: deployment.single?.redis.url ?? '' });
  // Ctrl-C or a CI timeout: the deployment's processes (each in its own process group) go too.
  for (const signal of ['SIGINT', 'SIGTERM'] as const) {
    process.once(signal, () => {
      console.log(`\n${signal}: stopping the deployment`);
      void probe.stop().finally(() => deployment.dispose().finally(() => process.exit(signal === 'SIGINT' ? 130 : 143)));
    });
  }
  const results: Row[] = [];
  try {
    for (const [index, scenario] of chosen.entries()) {
      const started = Date.now();
      process.stdout.write(`- ${scenario.name}: ${scenario.what} … `);
      const row = await runScenario(deployment, scenario, { concurrency, blocking, holdMs, index, probe, chunks: profile.chunks, recoveryBoundMs: profile.recoveryBoundMs });
      results.push(row);
      console.log(`${row.problems.length === 0 ? 'ok' : 'BROKEN'} (${seconds(Date.now() - started)})`);
      for (const problem of row.problems) console.log(`    ${problem}`);
      // To line the outages up with the engines' logs (kept with --keep-logs, or when a row breaks).
      console.log(`    write outage ${seconds(row.turnWriteGapMs)} ${row.outages.turnWrites}; Redis write outage ${seconds(row.redisWriteGapMs)} ${row.outages.redisWrites}`);
      const whole = await deployment.whole();
      if (whole !== true) {
        console.log(`    the deployment is not whole after this row (${whole}); stopping here`);
        break;
      }
    }
  } finally {
    for (const instance of deployment.instances) {
      const kinds = instance.problems().flatMap((p) => p.kinds);
      if (kinds.length > 0 && results.some((r) => r.problems.length > 0)) console.log(`\n${instance.name} warnings/errors: ${kinds.slice(0, 8).map((k) => `${k.count}× ${k.kind}`).join('; ')}`);
    }
    await probe.stop();
    if ((values['keep-logs'] === true || results.some((r) => r.problems.length > 0)) && deployment.topology !== undefined) console.log(`\nthe deployment's logs are kept in ${deployment.topology.keepLogs()}`);
    await deployment.dispose();
  }
  console.log(`\n${formatTable(results)}\n`);
  console.log(LEGEND);
  const broken = results.filter((r) => r.problems.length > 0);
  if (broken.length > 0 || results.length < chosen.length) {
    console.log(`\nBROKEN: ${broken.map((r) => r.scenario.name).join(', ') || 'the drill stopped early'}`);
    return 1;
  }
  return 0;
}

main().then(
  (code) => process.exit(code),
  (err: unknown) => {
    console.error(`drill failed: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}`);
    process.exit(2);
  },
);
