/**
 * `npm run drill`: takes a local deployment (PostgreSQL, Redis, three
 * instances behind nginx, two mock upstreams: all real processes on
 * loopback) through each failure LLMChat promises to survive, under chat
 * load, and prints one row per failure. Exits 1 when a row breaks a promise:
 * an error, a lost turn, a lost or repeated event, an answer left
 * `streaming`, or a takeover or recovery slower than its bound.
 *
 *   node tools/dist/drill/drill.js [--only name,name] [--concurrency 24] [--hold 5]
 */

import { parseArgs } from 'node:util';
import { setTimeout as sleep } from 'node:timers/promises';
import { startLocalCluster, type DrillAgent, type LocalCluster } from '../local-cluster/cluster.js';
import { nginxPath } from '../local-cluster/nginx.js';
import { postgresBinDir, redisServerPath, type DisposableService } from '../local-cluster/services.js';
import { startLoad } from './load.js';
import { runTurn, type TurnTrace } from './turn-client.js';
import { queryRows } from '../local-cluster/sql.js';
import { storedTurns, streamingLeft, verify, type Verdict } from './verify.js';

/** The mock's answer: 20 chunks 25 ms apart (half a second), so every failure lands mid-answer. */
const CHUNKS = 20;
const INTERVAL_MS = 25;
const BASELINE_MS = 2_000;
const TURN_DEADLINE_MS = 60_000;
/** Bounds a row must meet (defaults: heartbeat TTL 5 s + scan every 2 s). */
const TAKEOVER_BOUND_MS = 15_000;
const RECOVERY_BOUND_MS = 30_000;
const RECOVERY_WAIT_MS = 60_000;

interface Window {
  /** When the failure began. */
  faultAt: number;
  /** When the broken piece was started again (the failure's end), if it is one that is repaired. */
  repairAt: number | undefined;
}

interface Scenario {
  name: string;
  /** What breaks, in words, for the README. */
  what: string;
  agent: DrillAgent;
  /** Breaks something and repairs it; resolves when the repair has been started. */
  run(cluster: LocalCluster, holdMs: number, broken: () => void): Promise<Window>;
  /** Refusals (5xx a client retried) that are part of the promise. */
  allowedRefusal?: (status: number, code: string | undefined) => boolean;
  /** What shows the failure was really felt; a row that felt nothing proves nothing. */
  felt?: (verdict: Verdict, traces: readonly TurnTrace[], window: Window) => boolean;
  /**
   * Clients that start new turns only while the failure lasts (they show
   * how a new turn is answered then, when every running client is held up
   * by answers that cannot end yet).
   */
  newTurnsDuringFault?: number;
  /** Takeover is measured where an instance is lost. */
  takeover?: boolean;
  /** Extra check of recovery (e.g. the repaired upstream serves again); resolves with when it did. */
  recovered?: (cluster: LocalCluster, since: number) => Promise<number | undefined>;
}

const upstreamFault = (name: string, agent: DrillAgent, what: string, midAnswer: boolean): Scenario => ({
  name,
  what,
  agent,
  async run(_cluster, holdMs) {
    const faultAt = Date.now();
    await sleep(holdMs);
    return { faultAt, repairAt: undefined };
  },
  // Mid-answer faults restart on the fallback with `reset`; a refusal before the first token is never seen.
  felt: (verdict) => !midAnswer || verdict.resets > 0,
});

/** A piece killed (-9) for the hold time, then started again on the same port and data. */
const outage = (name: string, what: string, piece: (cluster: LocalCluster) => DisposableService, extra: Partial<Scenario> = {}): Scenario => ({
  name,
  what,
  agent: 'steady',
  async run(cluster, holdMs, broken) {
    const faultAt = Date.now();
    await piece(cluster).crash();
    broken();
    await sleep(holdMs);
    const repairAt = Date.now();
    await piece(cluster).start();
    return { faultAt, repairAt };
  },
  ...extra,
});

const scenarios: Scenario[] = [
  upstreamFault('upstream cuts mid-answer', 'cut', 'the primary endpoint cuts every stream after 5 chunks', true),
  upstreamFault('upstream stalls mid-answer', 'stall', 'the primary endpoint stops sending after 5 chunks (idle deadline 1 s)', true),
  upstreamFault('upstream sends garbage', 'malformed', 'the primary endpoint sends a chunk that is not JSON after 5 chunks', true),
  upstreamFault('upstream refuses (503)', 'refuse', 'the primary endpoint answers 503 with Retry-After: 1', false),
  outage('upstream process killed', 'the primary mock upstream is killed (-9), then started again', (c) => c.primary, {
    felt: (verdict) => verdict.resets > 0,
    recovered: (cluster, since) => firstAnswerFromPrimary(cluster, since),
  }),
  {
    name: 'instance killed (-9)',
    what: 'one of three instances is killed mid-answer, then started again',
    agent: 'steady',
    takeover: true,
    async run(cluster) {
      const victim = cluster.instances[1];
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
    agent: 'steady',
    takeover: true,
    async run(cluster) {
      const faultAt = Date.now();
      let repairAt = faultAt;
      for (const instance of cluster.instances) {
        const exit = await instance.terminate();
        if (exit?.code !== 0) throw new Error(`${instance.name} did not exit cleanly on SIGTERM (${JSON.stringify(exit)}):\n${instance.tail().join('\n')}`);
        repairAt = Date.now();
        await instance.start();
      }
      return { faultAt, repairAt };
    },
  },
  outage('Redis down', 'Redis is killed (-9) for the hold time, then started again (empty)', (c) => c.redis),
  outage('PostgreSQL down', 'PostgreSQL is killed (-9) for the hold time, then started again (crash recovery)', (c) => c.postgres, {
    // New turns are refused at once with a clear code while the database is away.
    newTurnsDuringFault: 4,
    allowedRefusal: (status, code) => status === 503 && code === 'DATABASE_UNAVAILABLE',
    felt: (verdict) => verdict.refusals > 0,
  }),
];

interface Row {
  scenario: Scenario;
  verdict: Verdict;
  /** Requests nginx moved to another instance (the first one refused, reset or answered 502/503). */
  moved: number;
  takeoverMs: number | undefined;
  recoveryMs: number | undefined;
  problems: string[];
}

async function firstAnswerFromPrimary(cluster: LocalCluster, since: number): Promise<number | undefined> {
  const rows = await queryRows<{ at: Date | null }>(
    cluster.postgres.url,
    `SELECT min(m.completed_at) AS at FROM messages m JOIN agent_endpoints e ON e.id = m.endpoint_id
      WHERE e.agent_id = 'steady' AND e.position = 0 AND m.status = 'complete' AND m.created_at >= $1`,
    [new Date(since)],
  );
  return rows[0]?.at?.getTime() ?? undefined;
}

/** Waits until the deployment is whole and a fresh turn through nginx completes; resolves with when, or undefined. */
async function waitUntilWhole(cluster: LocalCluster, agent: DrillAgent, tag: string, scenario: Scenario, since: number): Promise<number | undefined> {
  const deadline = Date.now() + RECOVERY_WAIT_MS;
  while (Date.now() < deadline) {
    if (await cluster.whole()) {
      const probe = await runTurn({ origin: cluster.nginx.url, token: cluster.token, agentId: agent, question: `${tag}-probe ${Date.now()}`, deadlineMs: 10_000 });
      if (probe.outcome === 'complete' && probe.refused.length === 0) {
        const at = Date.now();
        if (!scenario.recovered) return at;
        const served = await scenario.recovered(cluster, since).catch(() => undefined);
        if (served !== undefined) return Math.max(at, served);
      }
    }
    await sleep(200);
  }
  return undefined;
}

async function runScenario(cluster: LocalCluster, scenario: Scenario, options: { concurrency: number; holdMs: number; index: number }): Promise<Row> {
  const tag = `drill-${options.index}-${scenario.agent}-${Date.now().toString(36)}`;
  const rowStart = Date.now();
  const load = startLoad({
    origin: cluster.nginx.url,
    token: cluster.token,
    agentId: scenario.agent,
    concurrency: options.concurrency,
    maxTurns: 20_000,
    maxMs: 120_000,
    turnDeadlineMs: TURN_DEADLINE_MS,
    tag,
  });
  await sleep(BASELINE_MS);
  let extra: ReturnType<typeof startLoad> | undefined;
  const window = await scenario.run(cluster, options.holdMs, () => {
    if (scenario.newTurnsDuringFault === undefined) return;
    extra = startLoad({ origin: cluster.nginx.url, token: cluster.token, agentId: scenario.agent, concurrency: scenario.newTurnsDuringFault, maxTurns: 1_000, maxMs: options.holdMs, turnDeadlineMs: TURN_DEADLINE_MS, tag });
  });
  const recoveredAt = window.repairAt === undefined ? undefined : await waitUntilWhole(cluster, scenario.agent, tag, scenario, window.repairAt);
  await sleep(1_000);
  const traces = [...(await load.stop()), ...((await extra?.stop()) ?? [])];
  const rowEnd = Date.now();
  const moved = cluster.nginx.accessLog().filter((e) => e.at >= rowStart && e.at <= rowEnd && e.upstreamStatuses.length > 1).length;
  // Every client has its `end`; the last writes may still be on their way (a turn ends for the client before its row is final).
  const settleDeadline = Date.now() + 30_000;
  while (Date.now() < settleDeadline && (await streamingLeft(cluster.postgres.url, tag)) > 0) await sleep(250);

  const stored = await storedTurns(cluster.postgres.url, tag);
  const verdict = verify(traces, stored, CHUNKS);
  const problems: string[] = [];
  if (verdict.errors > 0) problems.push(`${verdict.errors} turns ended in an error (${JSON.stringify(verdict.errorCodes)})`);
  if (verdict.lost > 0) problems.push(`${verdict.lost} turns lost: ${verdict.lostDetails.join('; ')}`);
  if (verdict.lostEvents > 0 || verdict.duplicateEvents > 0) problems.push(`${verdict.lostEvents} events lost, ${verdict.duplicateEvents} repeated`);
  if (verdict.leftStreaming > 0) problems.push(`${verdict.leftStreaming} answers left streaming`);
  for (const trace of traces) {
    const bad = trace.refused.filter((r) => !(scenario.allowedRefusal?.(r.status, r.code) ?? false));
    if (bad.length > 0) {
      problems.push(`clients got refusals outside the promise: ${JSON.stringify(verdict.refusalCodes)}`);
      break;
    }
  }
  if (scenario.felt && !scenario.felt(verdict, traces, window)) problems.push('the failure was not felt by any turn: the row proves nothing');

  let takeoverMs: number | undefined;
  if (scenario.takeover) {
    const takeovers = traces.flatMap((t) => t.resets.filter((r) => r.reason === 'takeover').map((r) => r.at - window.faultAt));
    // A rolling restart normally drains within the deadline: no takeover at all is the good case there.
    takeoverMs = takeovers.length > 0 ? Math.max(...takeovers) : undefined;
    if (takeoverMs !== undefined && takeoverMs > TAKEOVER_BOUND_MS) problems.push(`takeover took ${takeoverMs} ms (bound ${TAKEOVER_BOUND_MS})`);
  }
  let recoveryMs: number | undefined;
  if (window.repairAt !== undefined) {
    if (recoveredAt === undefined) problems.push(`not whole again within ${RECOVERY_WAIT_MS} ms of the repair`);
    else {
      const touched = traces.filter((t) => t.endedAt >= window.faultAt && (t.refused.length > 0 || t.reconnects > 0 || t.resets.length > 0 || t.outcome !== 'complete'));
      const lastTouched = Math.max(0, ...touched.map((t) => t.endedAt));
      recoveryMs = Math.max(recoveredAt, lastTouched) - window.repairAt;
      if (recoveryMs > RECOVERY_BOUND_MS) problems.push(`recovery took ${recoveryMs} ms (bound ${RECOVERY_BOUND_MS})`);
    }
  }
  return { scenario, verdict, moved, takeoverMs, recoveryMs, problems };
}

function seconds(ms: number | undefined): string {
  return ms === undefined ? '—' : `${(ms / 1000).toFixed(1)} s`;
}

export function formatTable(rows: readonly Row[]): string {
  const header = ['failure', 'turns', 'errors', 'refused (retried)', 'moved by nginx', 'turns lost', 'events lost/dup', 'takeover', 'recovery', 'verdict'];
  const lines = rows.map((r) => [
    r.scenario.name,
    String(r.verdict.turns),
    String(r.verdict.errors),
    r.verdict.refusals === 0 ? '0' : `${r.verdict.refusals} (${Object.entries(r.verdict.refusalCodes).map(([k, v]) => `${v}× ${k}`).join(', ')})`,
    String(r.moved),
    String(r.verdict.lost),
    `${r.verdict.lostEvents}/${r.verdict.duplicateEvents}`,
    seconds(r.takeoverMs),
    seconds(r.recoveryMs),
    r.problems.length === 0 ? 'ok' : 'BROKEN',
  ]);
  const widths = header.map((h, i) => Math.max(h.length, ...lines.map((l) => (l[i] ?? '').length)));
  const row = (cells: string[]) => `| ${cells.map((c, i) => c.padEnd(widths[i] ?? 0)).join(' | ')} |`;
  return [row(header), `|${widths.map((w) => '-'.repeat(w + 2)).join('|')}|`, ...lines.map(row)].join('\n');
}

async function main(): Promise<number> {
  const { values } = parseArgs({
    options: {
      only: { type: 'string' },
      concurrency: { type: 'string', default: '24' },
      hold: { type: 'string', default: '5' },
      help: { type: 'boolean', short: 'h' },
    },
  });
  if (values.help === true) {
    console.log('usage: drill [--only name,name] [--concurrency 24] [--hold 5]\nrows:');
    for (const s of scenarios) console.log(`  ${s.name}: ${s.what}`);
    return 0;
  }
  const concurrency = Number(values.concurrency);
  const holdMs = Number(values.hold) * 1000;
  if (!Number.isInteger(concurrency) || concurrency < 1 || concurrency > 500) throw new Error('--concurrency must be an integer from 1 to 500');
  if (!Number.isFinite(holdMs) || holdMs < 1000 || holdMs > 60_000) throw new Error('--hold must be 1 to 60 seconds');
  const only = values.only?.split(',').map((s) => s.trim().toLowerCase());
  const chosen = only ? scenarios.filter((s) => only.some((o) => s.name.toLowerCase().includes(o))) : scenarios;
  if (chosen.length === 0) throw new Error(`--only matched no row; rows: ${scenarios.map((s) => s.name).join(', ')}`);
  for (const [what, found] of [
    ['PostgreSQL (initdb, postgres)', postgresBinDir()],
    ['redis-server', redisServerPath()],
    ['nginx', nginxPath()],
  ] as const) {
    if (found === undefined) throw new Error(`the drill needs ${what}; install it from Debian's packages`);
  }

  console.log(`LLMChat drill: 3 instances behind nginx, PostgreSQL, Redis, two mock upstreams (${CHUNKS} chunks ${INTERVAL_MS} ms apart); ${concurrency} concurrent chat clients; failures held ${holdMs / 1000} s`);
  const cluster = await startLocalCluster({ instances: 3, chunks: CHUNKS, intervalMs: INTERVAL_MS });
  // Ctrl-C or a CI timeout: the deployment's processes (each in its own process group) go too.
  for (const signal of ['SIGINT', 'SIGTERM'] as const) {
    process.once(signal, () => {
      console.log(`\n${signal}: stopping the deployment`);
      void cluster.dispose().finally(() => process.exit(signal === 'SIGINT' ? 130 : 143));
    });
  }
  const rows: Row[] = [];
  try {
    for (const [index, scenario] of chosen.entries()) {
      const started = Date.now();
      process.stdout.write(`- ${scenario.name}: ${scenario.what} … `);
      const row = await runScenario(cluster, scenario, { concurrency, holdMs, index });
      rows.push(row);
      console.log(`${row.problems.length === 0 ? 'ok' : 'BROKEN'} (${seconds(Date.now() - started)})`);
      for (const problem of row.problems) console.log(`    ${problem}`);
      if (!(await cluster.whole())) {
        console.log('    the deployment is not whole after this row; stopping here');
        break;
      }
    }
  } finally {
    for (const instance of cluster.instances) {
      const kinds = instance.problems().flatMap((p) => p.kinds);
      if (kinds.length > 0 && rows.some((r) => r.problems.length > 0)) console.log(`\n${instance.name} warnings/errors: ${kinds.slice(0, 8).map((k) => `${k.count}× ${k.kind}`).join('; ')}`);
    }
    await cluster.dispose();
  }
  console.log(`\n${formatTable(rows)}\n`);
  console.log('errors: turns that ended in an error; refused: 5xx answers a client retried (nginx retries an instance that is gone or draining itself, so none should reach a client but during a database outage); moved by nginx: requests nginx sent on to another instance; turns lost: a turn a client started that did not end complete with the upstream\'s whole answer, stored exactly once; events lost/dup: gaps and repeats in the event ids a client saw across reconnects; takeover: from the failure to the last answer restarted on another instance; recovery: from the repair to the deployment whole again and every turn it touched ended.');
  const broken = rows.filter((r) => r.problems.length > 0);
  if (broken.length > 0 || rows.length < chosen.length) {
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
