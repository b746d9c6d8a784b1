/**
 * `npm run bench`: streams chat turns at fixed concurrency levels, once to
 * the mock upstream directly, once through the floor (a bare streaming proxy,
 * floor-proxy.ts) and once through LLMChat (each calling the same mock), and
 * prints throughput, time to first token, total time and server CPU of each,
 * then checks LLMChat against the floor and direct (compare.ts has the
 * targets). The mock, the floor and the server run as separate child
 * processes; the load generator runs here.
 *
 *   node tools/dist/bench/bench.js [--levels 100,1000] [--duration 15] [--warmup 3]
 *     [--drain 30] [--chunks 20] [--interval 5] [--embedded] [--strict] [--workers 1] [--profile-server DIR]
 *     [--no-floor] [--server-env KEY=VALUE]… [--server-memory-limit 1G] [--compare SAVED.json]
 *   node tools/dist/bench/bench.js --compare OLD.json --against NEW.json
 *     (two saved results side by side, no measurement: compare-runs.ts)
 *   node tools/dist/bench/bench.js --long [1000,5000,10000] [--ramp 10] [--burst N] [--open-loop [1000]] …
 *     (long answers and the open-loop level: long-bench.ts; --help lists every flag)
 */

import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { setTimeout as sleep } from 'node:timers/promises';
import { Client } from 'undici';
import type { ManagedProcess, ProblemReport } from './processes.js';
import { cpuSeconds, cpuSecondsByCommand, describeExit, machineCpuTicks, rssMiB, startProcess, sumOverChildren } from './processes.js';
import type { Backends } from './stack.js';
import type { LongBenchOptions } from './long-bench.js';
import { runLongBench } from './long-bench.js';
import { LONG_OPTIONS, LONG_USAGE, parseLongCli, parseServerEnv, withOptionalValues } from './long-cli.js';
import { banner, describeMachine, interruptOnSignals } from './machine.js';
import { describeMemoryLimit, parseMemorySize } from './memory-cgroup.js';
import { BENCH_ADMIN, chooseBackends, createAgent, login, releaseBackends, startMock, startServer } from './stack.js';
import type { ExpectedAnswer, LoadResult, LoadTarget } from './sse-load.js';
import { runLoad, runTurn } from './sse-load.js';
import type { Distribution } from './stats.js';
import { compareLevel, describeLevel, serverCpuMsPerTurn, type LevelComparison, type RunFigures } from './compare.js';
import type { BenchResult } from './compare-runs.js';
import { compareResults, formatResultsComparison, readBenchResult } from './compare-runs.js';
import { distribution, formatMs, formatRate, formatTable } from './stats.js';

const MIN_OPEN_FILES = 8192;
/** On top of the stack's server environment for the short levels: a pool sized for the 1000 level's streams. */
const SHORT_LEVEL_SERVER_ENV: Record<string, string> = { DATABASE_POOL_MAX: '20', UPSTREAM_CONNECTIONS: '1200' };
const CHILD_STOP_GRACE_MS = 35_000;
const SETTLE_MS = 1_000;
const ERROR_EXAMPLES = 5;
const QUESTION = 'hello';

interface CliOptions {
  levels: number[];
  durationS: number;
  warmupS: number;
  drainS: number;
  chunks: number;
  intervalMs: number;
  embedded: boolean;
  strict: boolean;
  /** Server processes (the server's WORKERS); more than 1 needs PostgreSQL and Redis. */
  workers: number;
  /** Directory for a V8 CPU profile of the server (`--cpu-prof`), written when it stops. */
  profileServer: string | undefined;
  /** Rounds per level (direct, floor, then LLMChat, each round); the targets are checked on the median round. */
  repeat: number;
  /** Also run the floor (a bare streaming proxy) each round, for scale. */
  floor: boolean;
  /** `--server-env KEY=VALUE`: on top of the bench's server environment, in every mode. */
  serverEnv: Record<string, string>;
  /** `--server-memory-limit`: bytes of the server's memory cgroup, in every mode; undefined: none. */
  serverMemoryLimit: number | undefined;
  /** `--long` / `--open-loop`: run those levels instead of the short ones. */
  long: LongBenchOptions | undefined;
  /** `--compare FILE`: a saved short-level result to print this run's figures beside. */
  compare: string | undefined;
  /** `--against FILE`: with --compare, compare two saved results and measure nothing. */
  against: string | undefined;
}

/** The figures of one target at one level. */
export interface RunSummary {
  level: number;
  target: string;
  windowS: number;
  /** Turns started in the measured window. */
  turns: number;
  ok: number;
  errors: number;
  /** Good turns that ended in the window, per second. */
  turnsPerS: number;
  /** Over good turns only. */
  ttftMs: Distribution;
  totalMs: Distribution;
  errorReasons: Record<string, number>;
  /** The first turn's detail for each of the first few reasons. */
  errorExamples: string[];
  abandoned: number;
  warmupTurns: number;
  /** Turns that failed during the warm-up (not in the figures above, but worth knowing). */
  warmupErrors: number;
  /** The slowest first token of the turns started during the warm-up (the cold-start burst), ms. */
  coldStartMaxTtftMs: number | undefined;
  drainMs: number;
  /**
   * Share of one core each process used during warm-up and window; `machine` is
   * the whole machine's busy share of all cores (PostgreSQL and Redis included).
   */
  cpuPercent: { bench: number | undefined; server: number | undefined; mock: number | undefined; database: number | undefined; redis: number | undefined; machine: number | undefined };
  serverRssMiB: number | undefined;
}

function usage(): string {
  return [
    'usage: node tools/dist/bench/bench.js [options]',
    '  --levels 100,1000   concurrency levels (streams in flight)',
    '  --duration 15       measured seconds per level and target',
    '  --warmup 3          warm-up seconds before each measurement (not reported)',
    '  --drain 30          cap in seconds on waiting for in-flight turns after a window',
    '  --chunks 20         text chunks per answer (mock default)',
    '  --interval 5        ms between chunks (mock default)',
    '  --embedded          use embedded PGlite and in-process state even if PostgreSQL/Redis are reachable',
    '  --strict            exit 1 when a target is missed (default: report only; a target not checked is not missed)',
    '  --workers 1         server processes sharing the port (the server\'s WORKERS; above 1 needs PostgreSQL and Redis)',
    '  --profile-server D  write a V8 CPU profile of the server into directory D (open it in Chrome DevTools)',
    '  --repeat 1          rounds per level (direct, floor, then LLMChat, each round); targets are checked on the median',
    '  --no-floor          skip the floor (a bare streaming proxy without auth or storage); the targets relative to it',
    '                      are then reported as not checked',
    '  --compare FILE      after the run, print its figures beside those of a saved result (bench-results/bench-*.json)',
    '                      and the change; a report only, never a verdict',
    '  --against FILE      with --compare: compare two saved results (--compare OLD --against NEW) and measure nothing',
    'targets, on the median round: at 100 streams throughput >= 95% of the floor, TTFT p99 <= 25 ms over direct,',
    '  server CPU per turn <= 1.3x the floor\'s; at 1000 throughput >= 70% of the floor, CPU per turn <= 1.5x the',
    '  floor\'s, zero errors, server RSS <= 300 MiB',
    ...LONG_USAGE,
  ].join('\n');
}

function positiveNumber(name: string, raw: string, integer: boolean): number {
  const value = Number(raw);
  if (raw.trim() === '' || !Number.isFinite(value) || value < 0 || (integer && !Number.isInteger(value))) {
    throw new Error(`--${name} must be a non-negative ${integer ? 'integer' : 'number'}, got "${raw}"`);
  }
  return value;
}

function parseCli(argv: string[]): CliOptions | undefined {
  const { values } = parseArgs({
    args: withOptionalValues(argv),
    allowNegative: true,
    options: {
      levels: { type: 'string' },
      duration: { type: 'string', default: '15' },
      warmup: { type: 'string', default: '3' },
      drain: { type: 'string', default: '30' },
      chunks: { type: 'string', default: '20' },
      interval: { type: 'string', default: '5' },
      embedded: { type: 'boolean', default: false },
      strict: { type: 'boolean', default: false },
      workers: { type: 'string', default: '1' },
      'profile-server': { type: 'string' },
      repeat: { type: 'string', default: '1' },
      floor: { type: 'boolean', default: true },
      compare: { type: 'string' },
      against: { type: 'string' },
      help: { type: 'boolean', short: 'h', default: false },
      ...LONG_OPTIONS,
    },
  });
  if (values.help) {
    console.log(usage());
    return undefined;
  }
  const serverEnv = parseServerEnv(values['server-env']);
  const workers = positiveNumber('workers', values.workers, true);
  const serverMemoryLimit = values['server-memory-limit'] === undefined ? undefined : parseMemorySize(values['server-memory-limit']);
  const long = parseLongCli(values, { embedded: values.embedded, workers, serverEnv, serverMemoryLimit });
  if (long !== undefined && values.levels !== undefined) throw new Error('--levels runs the short levels; run them apart from --long and --open-loop');
  if (values.against !== undefined && values.compare === undefined) throw new Error('--against NEW.json needs --compare OLD.json');
  if (long !== undefined && values.compare !== undefined) throw new Error('--compare reads the short levels\' results; run it apart from --long and --open-loop');
  const levels = (values.levels ?? '100,1000').split(',').map((s) => positiveNumber('levels', s, true));
  if (levels.length === 0 || levels.some((l) => l < 1 || l > 20_000)) throw new Error('--levels must be integers within 1..20000');
  const options: CliOptions = {
    levels,
    durationS: positiveNumber('duration', values.duration, false),
    warmupS: positiveNumber('warmup', values.warmup, false),
    drainS: positiveNumber('drain', values.drain, false),
    chunks: positiveNumber('chunks', values.chunks, true),
    intervalMs: positiveNumber('interval', values.interval, true),
    embedded: values.embedded,
    strict: values.strict,
    workers,
    profileServer: values['profile-server'] === undefined ? undefined : path.resolve(values['profile-server']),
    repeat: positiveNumber('repeat', values.repeat, true),
    floor: values.floor,
    serverEnv,
    serverMemoryLimit,
    long,
    compare: values.compare,
    against: values.against,
  };
  if (options.durationS <= 0 || options.durationS > 3600) throw new Error('--duration must be within (0, 3600] seconds');
  if (options.warmupS > 600 || options.drainS > 600) throw new Error('--warmup and --drain must be at most 600 seconds');
  if (options.chunks < 1 || options.chunks > 10_000) throw new Error('--chunks must be within 1..10000');
  if (options.workers < 1 || options.workers > 64) throw new Error('--workers must be within 1..64');
  if (options.repeat < 1 || options.repeat > 20) throw new Error('--repeat must be within 1..20');
  if (options.workers > 1 && options.embedded) throw new Error('--workers above 1 needs PostgreSQL and Redis, not --embedded');
  return options;
}

// ---------------------------------------------------------------- measuring

function summarize(level: number, result: LoadResult, cpuPercent: RunSummary['cpuPercent'], serverRss: number | undefined): RunSummary {
  const good = result.samples.filter((s) => s.error === undefined);
  const errorReasons: Record<string, number> = {};
  const errorExamples: string[] = [];
  for (const sample of result.samples) {
    if (sample.error === undefined) continue;
    errorReasons[sample.error] = (errorReasons[sample.error] ?? 0) + 1;
    // One example of each reason, the first seen.
    if (errorReasons[sample.error] === 1 && errorExamples.length < ERROR_EXAMPLES) {
      errorExamples.push(sample.errorDetail === undefined ? sample.error : `${sample.error}: ${sample.errorDetail}`);
    }
  }
  const windowS = result.windowMs / 1000;
  return {
    level,
    target: result.target,
    windowS,
    turns: result.samples.length,
    ok: good.length,
    errors: result.samples.length - good.length,
    turnsPerS: windowS > 0 ? result.completedInWindow / windowS : Number.NaN,
    ttftMs: distribution(good.map((s) => s.ttftMs ?? Number.NaN).filter((v) => Number.isFinite(v))),
    totalMs: distribution(good.map((s) => s.totalMs)),
    errorReasons,
    errorExamples,
    abandoned: result.abandoned,
    warmupTurns: result.warmupTurns,
    warmupErrors: result.warmupErrors,
    coldStartMaxTtftMs: result.coldStartMaxTtftMs,
    drainMs: result.drainMs,
    cpuPercent,
    serverRssMiB: serverRss,
  };
}

interface CpuProbe {
  bench: number;
  server: number | undefined;
  mock: number | undefined;
  database: number | undefined;
  redis: number | undefined;
  machine: { busy: number; total: number } | undefined;
  at: number;
}

/** `serving`: the process behind the target (LLMChat's server, or the floor proxy for the floor). */
function probeCpu(serving: ManagedProcess, mock: ManagedProcess): CpuProbe {
  const usage = process.cpuUsage();
  return {
    bench: (usage.user + usage.system) / 1e6,
    server: sumOverChildren(serving.pid, cpuSeconds),
    mock: cpuSeconds(mock.pid),
    // Every PostgreSQL and Redis process on the machine: other users of them count too.
    database: cpuSecondsByCommand(['postgres']),
    redis: cpuSecondsByCommand(['redis-server']),
    machine: machineCpuTicks(),
    at: performance.now(),
  };
}

function cpuBetween(before: CpuProbe, after: CpuProbe): RunSummary['cpuPercent'] {
  const seconds = (after.at - before.at) / 1000;
  const share = (a: number | undefined, b: number | undefined): number | undefined =>
    a === undefined || b === undefined || seconds <= 0 ? undefined : ((b - a) / seconds) * 100;
  const machine =
    before.machine === undefined || after.machine === undefined || after.machine.total <= before.machine.total
      ? undefined
      : ((after.machine.busy - before.machine.busy) / (after.machine.total - before.machine.total)) * 100;
  return {
    bench: share(before.bench, after.bench),
    server: share(before.server, after.server),
    mock: share(before.mock, after.mock),
    database: share(before.database, after.database),
    redis: share(before.redis, after.redis),
    machine,
  };
}

function formatCpu(cpu: RunSummary['cpuPercent']): string {
  const part = (v: number | undefined): string => (v === undefined ? '-' : v.toFixed(0));
  return `${part(cpu.bench)}/${part(cpu.server)}/${part(cpu.mock)}/${part(cpu.database)}/${part(cpu.redis)}  ${part(cpu.machine)}`;
}

function resultsTable(runs: readonly RunSummary[]): string {
  const rows: string[][] = [
    ['level', 'target', 'turns/s', 'ok', 'errors', 'ttft p50', 'p95', 'p99', 'total p50', 'p95', 'p99', 'cpu% gen/srv/mock/pg/redis  all', 'srv ms/turn', 'srv MiB'],
  ];
  for (const r of runs) {
    rows.push([
      String(r.level),
      r.target,
      formatRate(r.turnsPerS),
      String(r.ok),
      String(r.errors),
      formatMs(r.ttftMs.p50),
      formatMs(r.ttftMs.p95),
      formatMs(r.ttftMs.p99),
      formatMs(r.totalMs.p50),
      formatMs(r.totalMs.p95),
      formatMs(r.totalMs.p99),
      formatCpu(r.cpuPercent),
      serverCpuMsPerTurn(r)?.toFixed(2) ?? '-',
      r.serverRssMiB === undefined ? '-' : r.serverRssMiB.toFixed(0),
    ]);
  }
  return formatTable(rows);
}

function printRun(run: RunSummary): void {
  console.log(
    `  ${run.target.padEnd(8)} level ${run.level}: ${formatRate(run.turnsPerS)} turns/s, ttft p50/p99 ${formatMs(run.ttftMs.p50)}/${formatMs(run.ttftMs.p99)} ms, ` +
      `total p50/p99 ${formatMs(run.totalMs.p50)}/${formatMs(run.totalMs.p99)} ms, ${run.errors} errors of ${run.turns} turns` +
      (run.drainMs > 0 ? `, drained in ${(run.drainMs / 1000).toFixed(1)} s` : '') +
      (run.warmupErrors > 0 ? ` (and ${run.warmupErrors} of ${run.warmupTurns} warm-up turns failed)` : '') +
      (run.coldStartMaxTtftMs !== undefined ? `; cold-start burst: slowest ttft ${formatMs(run.coldStartMaxTtftMs)} ms` : ''),
  );
  for (const [reason, count] of Object.entries(run.errorReasons)) console.log(`      ${count} × ${reason}`);
  for (const example of run.errorExamples) console.log(`      e.g. ${example}`);
}

// ---------------------------------------------------------------- main

async function main(): Promise<number> {
  const options = parseCli(process.argv.slice(2));
  if (options === undefined) return 0;
  // Read the saved result first: a wrong file should not cost a whole run.
  const saved: BenchResult | undefined = options.compare === undefined ? undefined : readBenchResult(options.compare);
  if (saved !== undefined && options.against !== undefined) {
    console.log(formatResultsComparison(compareResults(saved, readBenchResult(options.against))));
    return 0;
  }
  const root = fileURLToPath(new URL('../../../', import.meta.url));
  const startedAt = new Date();
  const machine = describeMachine();
  if (options.long !== undefined) return runLongBench(options.long, root, machine, startedAt);

  console.log('LLMChat benchmark');
  console.log(`  machine: ${machine.cores} cores, ${machine.cpuModel}, ${machine.memory} RAM, ${machine.platform}, node ${machine.node}`);
  console.log(`  open files: soft ${machine.openFiles.soft}, hard ${machine.openFiles.hard}`);
  console.log(
    `  levels ${options.levels.join(', ')}; ${options.warmupS} s warm-up + ${options.durationS} s measured per level and target; ` +
      `answers of ${options.chunks} chunks ${options.intervalMs} ms apart`,
  );
  console.log(`  load average: ${machine.loadAverage.join(' / ')} (1 / 5 / 15 min)`);
  if (Object.keys(options.serverEnv).length > 0) {
    console.log(`  server environment (--server-env): ${Object.entries(options.serverEnv).map(([k, v]) => `${k}=${v}`).join(' ')}`);
  }
  if (options.serverMemoryLimit !== undefined) console.log(`  server in a ${describeMemoryLimit(options.serverMemoryLimit)} (--server-memory-limit)`);
  if ((machine.loadAverage[0] ?? 0) > machine.cores * 0.5) {
    banner([
      `WARNING: the machine is already busy (load ${machine.loadAverage[0]} on ${machine.cores} cores).`,
      'Other work competes with the bench for CPU: expect noisy, pessimistic figures.',
      'The "all" cpu column shows the whole machine\'s busy share during each run.',
    ]);
  }
  const softFiles = Number(machine.openFiles.soft);
  if (machine.openFiles.soft !== 'unlimited' && !(softFiles >= MIN_OPEN_FILES)) {
    banner([
      `WARNING: ulimit -n is ${machine.openFiles.soft} (< ${MIN_OPEN_FILES}).`,
      '1000 concurrent streams need 2000+ sockets across the processes;',
      `raise it first (e.g. ulimit -n ${MIN_OPEN_FILES}) or expect EMFILE errors.`,
    ]);
  }

  const interrupt = interruptOnSignals();

  const runs: RunSummary[] = [];
  const comparisons: LevelComparison[] = [];
  const setupNotes: string[] = [];
  let backends: Backends | undefined;
  let broken: string | undefined;
  let mock: ManagedProcess | undefined;
  let floor: ManagedProcess | undefined;
  let server: ManagedProcess | undefined;
  let stopping = false;
  const dataDir = mkdtempSync(path.join(os.tmpdir(), 'llmchat-bench-'));
  const childExits: Record<string, string> = {};
  const childProblems: Record<string, ProblemReport> = {};

  try {
    backends = await chooseBackends(options.embedded);
    if (backends.kind === 'postgres+redis') {
      console.log(`  backends: PostgreSQL (database ${backends.databaseName}) + Redis (prefix ${backends.redisPrefix})`);
    } else {
      banner([`BACKENDS: ${backends.kind.toUpperCase()} — not the production setup`, ...backends.notes]);
    }

    const node = process.execPath;
    const started = await startMock(root, { chunks: options.chunks, intervalMs: options.intervalMs });
    mock = started.mock;
    const mockUrl = started.url;
    console.log(`  mock upstream: ${mockUrl} (pid ${mock.pid})`);
    let floorUrl: string | undefined;
    if (options.floor) {
      floor = startProcess('floor', node, [path.join(root, 'tools/dist/bench/floor-proxy.js'), new URL(mockUrl).origin], { env: process.env, cwd: root });
      floorUrl = (await floor.waitForLine(/^http:\/\/127\.0\.0\.1:\d+/, 15_000)).trim();
      console.log(`  floor (bare streaming proxy, for scale): ${floorUrl} (pid ${floor.pid})`);
    }

    const running = await startServer({
      root,
      backends,
      dataDir,
      workers: options.workers,
      env: { ...SHORT_LEVEL_SERVER_ENV, ...options.serverEnv },
      memoryLimitBytes: options.serverMemoryLimit,
      nodeArgs: options.profileServer === undefined ? [] : ['--cpu-prof', `--cpu-prof-dir=${options.profileServer}`],
    });
    server = running.process;
    const serverProcess = server;
    const { base, adminPassword } = running;
    console.log(`  server: ${base} (pid ${server.pid})`);
    void server.exited.then((info) => {
      if (stopping) return;
      broken = `the server exited during the run (${describeExit(info)})`;
      console.log(`\n!!! ${broken}\n--- server output ---\n${serverProcess.tail().join('\n')}`);
      interrupt.abort();
    });
    const mockProcess = mock;
    void mock.exited.then((info) => {
      if (stopping) return;
      broken = `the mock upstream exited during the run (${describeExit(info)})`;
      console.log(`\n!!! ${broken}\n--- mock output ---\n${mockProcess.tail().join('\n')}`);
      interrupt.abort();
    });

    const token = await login(base, BENCH_ADMIN, adminPassword);
    setupNotes.push(...(await createAgent(base, token, mockUrl)));
    for (const note of setupNotes) console.log(`  note: ${note}`);

    const mockOrigin = new URL(mockUrl);
    const direct: LoadTarget = {
      name: 'direct',
      origin: mockOrigin.origin,
      path: '/v1/chat/completions',
      headers: { authorization: 'Bearer bench-key' },
      body: JSON.stringify({ model: 'mock-model', messages: [{ role: 'user', content: QUESTION }], stream: true }),
      protocol: 'openai',
    };
    const llmchat: LoadTarget = {
      name: 'llmchat',
      origin: base,
      path: '/api/chat/completions',
      headers: { authorization: `Bearer ${token}` },
      body: JSON.stringify({ agentId: 'bench', messages: [{ role: 'user', content: QUESTION }], stream: true }),
      protocol: 'llmchat',
    };
    const floorTarget: LoadTarget | undefined =
      floorUrl === undefined ? undefined : { ...llmchat, name: 'floor', origin: floorUrl, headers: {} };

    // One turn each, one at a time: learn the expected answer from the mock, then check the full path gives it.
    const probe = new Client(mockOrigin.origin);
    const calibration = await runTurn(probe, direct).finally(() => probe.close());
    if (calibration.error !== undefined || calibration.firstChunk === undefined || calibration.lastChunk === undefined) {
      throw new Error(`a direct turn to the mock failed: ${calibration.error ?? 'no text'} ${calibration.errorDetail ?? ''}`);
    }
    if (calibration.chunks !== options.chunks) {
      throw new Error(`the mock sent ${calibration.chunks} chunks, expected ${options.chunks}`);
    }
    const expected: ExpectedAnswer = { chunks: calibration.chunks, first: calibration.firstChunk, last: calibration.lastChunk };
    direct.expected = expected;
    llmchat.expected = expected;
    if (floorTarget !== undefined) {
      floorTarget.expected = expected;
      const floorProbe = new Client(floorTarget.origin);
      const floorCheck = await runTurn(floorProbe, floorTarget).finally(() => floorProbe.close());
      if (floorCheck.error !== undefined) throw new Error(`a turn through the floor proxy failed: ${floorCheck.error} ${floorCheck.errorDetail ?? ''}`);
    }
    const serverProbe = new Client(base);
    const check = await runTurn(serverProbe, llmchat).finally(() => serverProbe.close());
    if (check.error !== undefined) throw new Error(`a turn through LLMChat failed: ${check.error} ${check.errorDetail ?? ''}`);
    console.log(
      `  single turn: direct ttft ${formatMs(calibration.ttftMs ?? Number.NaN)} ms / total ${formatMs(calibration.totalMs)} ms; ` +
        `llmchat ttft ${formatMs(check.ttftMs ?? Number.NaN)} ms / total ${formatMs(check.totalMs)} ms\n`,
    );

    const figures = (r: RunSummary): RunFigures => ({
      turnsPerS: r.turnsPerS,
      ttftP99Ms: r.ttftMs.p99,
      ok: r.ok,
      errors: r.errors,
      turns: r.turns,
      serverCpuMsPerTurn: serverCpuMsPerTurn(r),
      serverRssMiB: r.serverRssMiB,
    });
    for (const level of options.levels) {
      const rounds: { direct: RunFigures; llmchat: RunFigures; floor?: RunFigures }[] = [];
      for (let round = 1; round <= options.repeat; round++) {
        const byTarget: Record<string, RunSummary> = {};
        for (const target of floorTarget === undefined ? [direct, llmchat] : [direct, floorTarget, llmchat]) {
          if (interrupt.signal.aborted) break;
          const serving = target === floorTarget && floor !== undefined ? floor : server;
          const before = probeCpu(serving, mock);
          const result = await runLoad(target, {
            concurrency: level,
            warmupMs: options.warmupS * 1000,
            durationMs: options.durationS * 1000,
            drainTimeoutMs: options.drainS * 1000,
            signal: interrupt.signal,
          });
          const cpu = cpuBetween(before, probeCpu(serving, mock));
          const run = summarize(level, result, cpu, sumOverChildren(serving.pid, rssMiB));
          runs.push(run);
          byTarget[target.name] = run;
          printRun(run);
          await sleep(SETTLE_MS);
        }
        const d = byTarget.direct;
        const l = byTarget.llmchat;
        const f = byTarget.floor;
        if (d !== undefined && l !== undefined) rounds.push({ direct: figures(d), llmchat: figures(l), ...(f === undefined ? {} : { floor: figures(f) }) });
      }
      if (rounds.length > 0) comparisons.push(compareLevel(level, rounds));
    }
    if (interrupt.signal.aborted) broken ??= 'interrupted';
  } catch (error) {
    broken ??= error instanceof Error ? error.message : String(error);
  } finally {
    stopping = true;
    for (const child of [server, floor, mock]) {
      if (child === undefined) continue;
      const info = await child.stop(CHILD_STOP_GRACE_MS);
      childExits[child.name] = describeExit(info);
      childProblems[child.name] = child.problems();
    }
    if (backends !== undefined) await releaseBackends(backends, (line) => console.log(`  ${line}`));
    rmSync(dataDir, { recursive: true, force: true });
    interrupt.release();
  }

  // ---------------------------------------------------------------- report
  if (runs.length > 0) {
    console.log(`\nResults (${backends?.kind ?? 'unknown backends'}; ttft and total in ms over good turns; cpu%: load generator/server (the floor proxy on floor rows)/mock/all PostgreSQL processes/all Redis processes, each of one core, all = machine busy of all cores, during warm-up + window; server (or floor proxy) RSS after the run)\n`);
    console.log(resultsTable(runs));
  }
  const checks = comparisons.flatMap((c) => c.checks);
  const missed = checks.filter((k) => k.verdict === 'fail').length;
  const unchecked = checks.filter((k) => k.verdict === 'not checked').length;
  if (comparisons.length > 0) {
    console.log('\nLLMChat against the floor and the mock called directly');
    for (const c of comparisons) for (const line of describeLevel(c)) console.log(line);
  }
  for (const [name, problems] of Object.entries(childProblems)) {
    if (problems.count === 0) continue;
    console.log(`\n${name}: ${problems.count} warning/error output lines, by kind:`);
    for (const { kind, count } of problems.kinds.slice(0, 10)) console.log(`  ${String(count).padStart(6)} × ${kind}`);
  }
  for (const [name, exit] of Object.entries(childExits)) {
    if (exit !== 'code 0') console.log(`\n${name} stopped with ${exit} (expected code 0 after SIGTERM)`);
  }
  if (backends !== undefined && backends.kind !== 'postgres+redis') {
    banner([`These figures were measured on ${backends.kind.toUpperCase()} backends.`, ...backends.notes]);
  }

  const resultsDir = path.join(root, 'bench-results');
  const file = path.join(resultsDir, `bench-${startedAt.toISOString().replace(/[:.]/g, '-')}.json`);
  mkdirSync(resultsDir, { recursive: true });
  writeFileSync(
    file,
    `${JSON.stringify(
      {
        startedAt: startedAt.toISOString(),
        finishedAt: new Date().toISOString(),
        machine,
        backends: backends === undefined ? undefined : { kind: backends.kind, notes: backends.notes },
        options,
        setupNotes,
        runs,
        comparisons,
        children: { exits: childExits, problems: childProblems },
        broken,
      },
      (_key, value: unknown) => {
        if (typeof value !== 'number') return value;
        // NaN (no figure) as null; microsecond precision is plenty.
        return Number.isFinite(value) ? Math.round(value * 1000) / 1000 : null;
      },
      2,
    )}\n`,
  );
  const written = path.relative(process.cwd(), file) || file;
  console.log(`\nresults written to ${written}`);
  if (saved !== undefined) console.log(`\n${formatResultsComparison(compareResults(saved, readBenchResult(written)))}`);

  if (broken !== undefined) {
    console.log(`\nBENCH BROKEN: ${broken}`);
    return 1;
  }
  const notChecked = unchecked > 0 ? `; ${unchecked} not checked` : '';
  if (missed > 0) {
    console.log(`\n${missed} target(s) missed${notChecked}${options.strict ? ' (--strict: exit 1)' : ' (report only; --strict makes this exit 1)'}`);
    return options.strict ? 1 : 0;
  }
  if (checks.length > unchecked) console.log(`\nall ${unchecked > 0 ? 'checked ' : ''}targets met${notChecked}`);
  else if (unchecked > 0) console.log(`\nno target checked (${unchecked} not checked)`);
  return 0;
}

main().then(
  (code) => process.exit(code),
  (error: unknown) => {
    console.error('bench:', error instanceof Error ? error.message : error);
    process.exit(1);
  },
);
