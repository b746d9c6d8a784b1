/**
 * Prometheus and promtool (Debian's `prometheus` package) on the shipped
 * `ops/prometheus/` files: promtool checks the scrape config and the rules
 * and runs the rules' unit tests; a real Prometheus runs the shipped scrape
 * config with a test's own targets.
 */

import { execFile } from 'node:child_process';
import { copyFileSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { promisify } from 'node:util';
import { startProcess, type ManagedProcess } from '../bench/processes.js';
import { findBinary } from './binaries.js';
import { failedStart, waitForPort } from './services.js';
import { OPS_DIR } from './template.js';
import { getJson } from './wait-until.js';

const READY_TIMEOUT_MS = 30_000;
export const PROMETHEUS_OPS_DIR = path.join(OPS_DIR, 'prometheus');
/** The files of ops/prometheus/ that go together (the config names the rule files by relative path). */
const SHIPPED = ['prometheus.yml', 'recording-rules.yml', 'alerts.yml', 'alerts.test.yml'];

export function promtoolPath(): string | undefined {
  return findBinary('promtool', 'LLMCHAT_PROMTOOL');
}

export function prometheusPath(): string | undefined {
  return findBinary('prometheus', 'LLMCHAT_PROMETHEUS');
}

/** Runs promtool with `args` in `cwd`; resolves with its output, rejects with it when promtool fails. */
export async function promtool(args: readonly string[], cwd = PROMETHEUS_OPS_DIR): Promise<string> {
  const binary = promtoolPath();
  if (binary === undefined) throw new Error('promtool not found (install Debian package prometheus, or set LLMCHAT_PROMTOOL)');
  try {
    const { stdout, stderr } = await promisify(execFile)(binary, args, { cwd, timeout: 120_000, maxBuffer: 16 * 1024 * 1024 });
    return `${stdout}${stderr}`;
  } catch (err) {
    const { stdout, stderr } = err as { stdout?: string; stderr?: string };
    throw new Error(`promtool ${args.join(' ')} failed:\n${stdout ?? ''}${stderr ?? String(err)}`, { cause: err });
  }
}

/** Copies ops/prometheus/ into `dir` (a test may then break one file and check that promtool notices). */
export function copyShippedPrometheusFiles(dir: string): void {
  mkdirSync(dir, { recursive: true });
  for (const file of SHIPPED) copyFileSync(path.join(PROMETHEUS_OPS_DIR, file), path.join(dir, file));
}

/**
 * The shipped scrape config with the llmchat job's targets replaced by
 * `targets` and every interval by `intervalSeconds` (a test cannot wait 15 s
 * per scrape). Anything else stays as shipped.
 */
export function renderPrometheusConfig(targets: readonly string[], intervalSeconds: number): string {
  const shipped = readFileSync(path.join(PROMETHEUS_OPS_DIR, 'prometheus.yml'), 'utf8');
  const targetList = /( *)- targets:\n(?:\1 {4}- .*\n)+/;
  if (!targetList.test(shipped)) throw new Error('ops/prometheus/prometheus.yml: no `- targets:` list to replace');
  return shipped
    .replace(targetList, (_whole, indent: string) => `${indent}- targets:\n${targets.map((t) => `${indent}    - ${t}\n`).join('')}`)
    .replace(/^(\s*)(scrape_interval|evaluation_interval): \d+s$/gm, `$1$2: ${intervalSeconds}s`)
    .replace(/^(\s*)scrape_timeout: \d+s$/gm, `$1scrape_timeout: ${intervalSeconds}s`);
}

export interface RunningPrometheus {
  readonly url: string;
  /** Prometheus's HTTP API: an instant query's result vector. */
  query(expr: string): Promise<{ metric: Record<string, string>; value: [number, string] }[]>;
  stop(): Promise<void>;
}

/** Runs Prometheus on 127.0.0.1:`port` with the shipped files in `dir` (its TSDB there too), scraping `targets`. */
export async function startPrometheus(spec: { port: number; dir: string; targets: readonly string[]; intervalSeconds: number }): Promise<RunningPrometheus> {
  const binary = prometheusPath();
  if (binary === undefined) throw new Error('prometheus not found (install Debian package prometheus, or set LLMCHAT_PROMETHEUS)');
  copyShippedPrometheusFiles(spec.dir);
  const configFile = path.join(spec.dir, 'prometheus.yml');
  writeFileSync(configFile, renderPrometheusConfig(spec.targets, spec.intervalSeconds));
  await promtool(['check', 'config', configFile], spec.dir);
  const url = `http://127.0.0.1:${spec.port}`;
  const child: ManagedProcess = startProcess(
    'prometheus',
    binary,
    [`--config.file=${configFile}`, `--storage.tsdb.path=${path.join(spec.dir, 'data')}`, `--web.listen-address=127.0.0.1:${spec.port}`, '--log.level=warn'],
    { env: { PATH: process.env.PATH }, cwd: spec.dir, logFile: path.join(spec.dir, 'prometheus.log') },
  );
  try {
    await waitForPort(spec.port, READY_TIMEOUT_MS, child, async () => (await getJson(`${url}/-/ready`, 1_000)).status === 200);
  } catch (err) {
    return failedStart(child, err);
  }
  return {
    url,
    async query(expr) {
      const { status, body } = await getJson(`${url}/api/v1/query?query=${encodeURIComponent(expr)}`, 5_000);
      const answer = body as { status?: string; data?: { resultType?: string; result?: { metric: Record<string, string>; value: [number, string] }[] }; error?: string } | undefined;
      if (status !== 200 || answer?.status !== 'success' || answer.data?.resultType !== 'vector') throw new Error(`query ${expr} failed: ${status} ${JSON.stringify(answer)}`);
      return answer.data.result ?? [];
    },
    async stop() {
      await child.stop(5_000);
    },
  };
}
