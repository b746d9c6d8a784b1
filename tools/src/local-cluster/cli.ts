/**
 * `npm run cluster`: the production-shaped deployment (topology.ts) on this
 * machine.
 *
 *   cluster [start] [--instances 3] [--etcd 3|1] [--base-port 21000] [--sync-strict] [--json] [--detach]
 *   cluster status      prints the running deployment's endpoints (one JSON line)
 *   cluster stop        stops it: every process it started, by id, and deletes its directory
 *
 * `start` runs in the foreground until Ctrl-C or SIGTERM, then stops
 * everything. With `--detach` the deployment is left running under a
 * background process and the command exits once it is ready. Progress goes
 * to stderr; stdout gets the endpoints only (`--json`: one JSON object on
 * one line). The current deployment is recorded in
 * $TMPDIR/llmchat-cluster/current.json (a pointer to its state file).
 */

import { spawn } from 'node:child_process';
import { closeSync, mkdirSync, mkdtempSync, openSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { CLUSTER_HOME as HOME, CURRENT_POINTER as POINTER, pointedStateFile, readPointer, readState, stateFileOf, stillRunning, stopDeployment } from './deployment-state.js';
import { DEFAULT_BASE_PORT, startTopology, topologyBinariesMissing, type TopologyEndpoints, type TopologyOptions } from './topology.js';

const SUPERVISOR_LOG = path.join(HOME, 'cluster.log');
const DETACHED_START_TIMEOUT_MS = 10 * 60_000;

const USAGE = `usage: npm run cluster -- [start] [options]     start the deployment (foreground until Ctrl-C)
       npm run cluster -- status                print the running deployment's endpoints as JSON
       npm run cluster -- stop [--state FILE]   stop it and delete its directory

options:
  --instances N      app instances behind nginx (default 3)
  --etcd 3|1         etcd members (default 3: losing one is survivable)
  --base-port P      ports are taken from P up, each checked free (default ${DEFAULT_BASE_PORT}; below 32768)
  --sync-strict      Patroni's synchronous_mode_strict: writes wait while no synchronous standby is up
  --json             print the endpoints as one JSON object on one line (nothing else on stdout)
  --detach           leave the deployment running in the background and exit once it is ready
  --data-dir DIR     the deployment's directory (empty or missing; default a new one under $TMPDIR)

Agents come from AGENTS_CONFIG_PATH when it is set; otherwise the deployment's mock upstreams back the drill's agents.`;

/** Messages from a detached deployment's process to the command that started it. */
type SupervisorMessage = { type: 'progress'; line: string } | { type: 'ready'; endpoints: TopologyEndpoints } | { type: 'failed'; message: string };

function writePointer(dataDir: string): void {
  mkdirSync(HOME, { recursive: true });
  writeFileSync(POINTER, `${JSON.stringify({ stateFile: stateFileOf(dataDir) })}\n`);
}

/** Removes the pointer if it still names this deployment. */
function clearPointer(dataDir: string): void {
  if (pointedStateFile() === stateFileOf(dataDir)) rmSync(POINTER, { force: true });
}

function refuseIfRunning(): void {
  const current = readPointer();
  if (current !== undefined && stillRunning(current.owner)) {
    throw new Error(`a deployment is already running (process ${current.owner.pid}, ${current.dataDir}): npm run cluster -- stop`);
  }
}

function describe(endpoints: TopologyEndpoints, seconds: number): string {
  const rows: [string, string][] = [
    ['nginx (web app, API)', endpoints.nginx],
    ['admin', `${endpoints.admin.username} / ${endpoints.admin.password}`],
    ['user', `${endpoints.user.username} / ${endpoints.user.password}`],
    ...endpoints.instances.map((i): [string, string] => [i.name, `${i.url} (pid ${String(i.pid)})`]),
    ['database, writes', endpoints.database.write],
    ['database, reads', endpoints.database.read],
    ['HAProxy status', endpoints.haproxy.stats],
    ...endpoints.patroni.map((p): [string, string] => [`Patroni ${p.name}`, `${p.rest} (PostgreSQL ${p.host}:${p.pgPort})`]),
    ['Redis (REDIS_URL)', endpoints.redis.url],
    ['etcd', endpoints.etcd.join(' ')],
    ['logs', endpoints.logs],
  ];
  const width = Math.max(...rows.map(([k]) => k.length));
  return [`LLMChat topology ready in ${seconds.toFixed(0)} s`, ...rows.map(([k, v]) => `  ${k.padEnd(width)}  ${v}`)].join('\n');
}

function printEndpoints(endpoints: TopologyEndpoints, json: boolean, startedAt: number): void {
  process.stdout.write(json ? `${JSON.stringify(endpoints)}\n` : `${describe(endpoints, (Date.now() - startedAt) / 1000)}\n`);
}

/** Runs the deployment in this process until SIGINT/SIGTERM; reports to the parent when started with --detach. */
async function runForeground(options: TopologyOptions, json: boolean): Promise<number> {
  const startedAt = Date.now();
  const report = (message: SupervisorMessage): void => {
    if (process.send !== undefined && process.connected) process.send(message);
  };
  const dataDir = options.dataDir ?? mkdtempSync(path.join(tmpdir(), 'llmchat-topology-'));
  writePointer(dataDir);
  let stopping = false;
  let ready = false;
  const stopped = new Promise<void>((resolve) => {
    for (const signal of ['SIGINT', 'SIGTERM'] as const) {
      process.on(signal, () => {
        if (stopping) return;
        stopping = true;
        console.error(`${signal}: stopping the deployment`);
        if (ready) return resolve();
        // Still starting: end what has started so far, by the state file, and leave.
        void Promise.resolve()
          .then(() => stopDeployment(readState(stateFileOf(dataDir))))
          .catch((err: unknown) => console.error(`could not stop everything: ${String(err)}`))
          .finally(() => {
            clearPointer(dataDir);
            process.exit(1);
          });
      });
    }
  });
  let topology: Awaited<ReturnType<typeof startTopology>>;
  try {
    topology = await startTopology({
      ...options,
      dataDir,
      log: (line) => {
        console.error(line);
        report({ type: 'progress', line });
      },
    });
  } catch (err) {
    clearPointer(dataDir);
    report({ type: 'failed', message: err instanceof Error ? err.message : String(err) });
    throw err;
  }
  ready = true;
  const endpoints = topology.endpoints();
  if (process.send !== undefined && process.connected) report({ type: 'ready', endpoints });
  else printEndpoints(endpoints, json, startedAt);
  if (!json && process.send === undefined) console.error('Stop with Ctrl-C (or `npm run cluster -- stop` from another terminal).');
  await stopped;
  await topology.dispose();
  clearPointer(dataDir);
  return 0;
}

/** Starts the deployment under a background process of its own and returns once it is ready. */
async function runDetached(args: readonly string[], json: boolean): Promise<number> {
  const startedAt = Date.now();
  mkdirSync(HOME, { recursive: true });
  const logFd = openSync(SUPERVISOR_LOG, 'w');
  const child = spawn(process.execPath, [fileURLToPath(import.meta.url), ...args.filter((a) => a !== '--detach')], {
    detached: true,
    stdio: ['ignore', logFd, logFd, 'ipc'],
    env: process.env,
  });
  closeSync(logFd);
  const outcome = await new Promise<SupervisorMessage | undefined>((resolve) => {
    const timer = setTimeout(() => resolve({ type: 'failed', message: `not ready within ${DETACHED_START_TIMEOUT_MS / 1000} s` }), DETACHED_START_TIMEOUT_MS);
    child.on('message', (message: SupervisorMessage) => {
      if (message.type === 'progress') {
        console.error(message.line);
        return;
      }
      clearTimeout(timer);
      resolve(message);
    });
    child.once('exit', () => {
      clearTimeout(timer);
      resolve(undefined);
    });
  });
  if (outcome?.type !== 'ready') {
    console.error(`the deployment did not start: ${outcome?.type === 'failed' ? outcome.message : 'its process exited'} (log: ${SUPERVISOR_LOG})`);
    if (child.exitCode === null && child.pid !== undefined) process.kill(child.pid, 'SIGTERM');
    return 1;
  }
  printEndpoints(outcome.endpoints, json, startedAt);
  if (!json) console.error(`Running in the background (process ${String(child.pid)}); stop it with \`npm run cluster -- stop\`.`);
  child.disconnect();
  child.unref();
  return 0;
}

async function stop(stateFile: string | undefined): Promise<number> {
  const state = stateFile === undefined ? readPointer() : readState(stateFile);
  if (state === undefined) {
    console.error(`no deployment recorded in ${POINTER}`);
    return 1;
  }
  const killed = await stopDeployment(state);
  clearPointer(state.dataDir);
  console.error(`stopped the deployment in ${state.dataDir}${killed.length > 0 ? ` (killed ${killed.length} process${killed.length === 1 ? '' : 'es'} its owner had left running)` : ''}`);
  return 0;
}

function status(stateFile: string | undefined): number {
  const state = stateFile === undefined ? readPointer() : readState(stateFile);
  if (state === undefined || !stillRunning(state.owner) || state.endpoints === undefined) {
    console.error('no deployment is running');
    return 1;
  }
  process.stdout.write(`${JSON.stringify(state.endpoints)}\n`);
  return 0;
}

function integerOption(name: string, value: string | undefined, fallback: number, min: number, max: number): number {
  if (value === undefined) return fallback;
  const n = Number(value);
  if (!Number.isInteger(n) || n < min || n > max) throw new Error(`--${name} must be an integer from ${min} to ${max}, got ${value}`);
  return n;
}

async function main(): Promise<number> {
  const args = process.argv.slice(2);
  const { values, positionals } = parseArgs({
    args,
    allowPositionals: true,
    options: {
      instances: { type: 'string' },
      etcd: { type: 'string' },
      'base-port': { type: 'string' },
      'sync-strict': { type: 'boolean' },
      json: { type: 'boolean' },
      detach: { type: 'boolean' },
      'data-dir': { type: 'string' },
      state: { type: 'string' },
      help: { type: 'boolean', short: 'h' },
    },
  });
  const command = positionals[0] ?? 'start';
  if (values.help === true || !['start', 'stop', 'status'].includes(command) || positionals.length > 1) {
    console.error(USAGE);
    return values.help === true ? 0 : 2;
  }
  if (command === 'stop') return stop(values.state);
  if (command === 'status') return status(values.state);

  const missing = topologyBinariesMissing();
  if (missing.length > 0) throw new Error(`missing: ${missing.join(', ')} (Debian packages; .ci/run installs them)`);
  const etcd = integerOption('etcd', values.etcd, 3, 1, 3);
  if (etcd !== 1 && etcd !== 3) throw new Error('--etcd must be 3 or 1');
  const options: TopologyOptions = {
    instances: integerOption('instances', values.instances, 3, 1, 16),
    etcdMembers: etcd,
    basePort: integerOption('base-port', values['base-port'], DEFAULT_BASE_PORT, 1024, 32000),
    syncStrict: values['sync-strict'] === true,
    ...(values['data-dir'] === undefined ? {} : { dataDir: path.resolve(values['data-dir']) }),
    ...(process.env.AGENTS_CONFIG_PATH ? { agentsConfigPath: process.env.AGENTS_CONFIG_PATH } : {}),
  };
  const json = values.json === true;
  // The background process of a detached start runs the same command without --detach.
  if (process.send === undefined) refuseIfRunning();
  if (values.detach === true) return runDetached(args, json);
  return runForeground(options, json);
}

main().then(
  (code) => process.exit(code),
  (err: unknown) => {
    console.error(`cluster: ${err instanceof Error ? err.message : String(err)}`);
    process.exit(1);
  },
);
