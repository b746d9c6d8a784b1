/**
 * A throw-away nginx in front of LLMChat instances, running the shipped
 * config (`ops/nginx/llmchat.conf.template`) on a loopback port, with its
 * own prefix directory for the pid file, logs and temp files.
 */

import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { freePort, startProcess, type ExitInfo, type ManagedProcess } from '../bench/processes.js';
import { findBinary } from './binaries.js';
import { waitForPort } from './services.js';
import { renderTemplate as renderPlaceholders } from './template.js';

const here = path.dirname(fileURLToPath(import.meta.url));
/** The shipped config, from tools/dist/local-cluster or tools/src/local-cluster alike. */
export const NGINX_TEMPLATE = path.resolve(here, '../../../ops/nginx/llmchat.conf.template');
const READY_TIMEOUT_MS = 15_000;

export function nginxPath(): string | undefined {
  return findBinary('nginx', 'LLMCHAT_NGINX');
}

/** One request as nginx logged it: what the client got, and what each instance tried answered. */
export interface AccessLogEntry {
  method: string;
  uri: string;
  status: number;
  /** One per instance tried, in order, e.g. [503, 200] for a request that moved on. */
  upstreamStatuses: string[];
  /** When nginx finished the request (Date.now() scale). */
  at: number;
}

export interface NginxProxy {
  readonly port: number;
  readonly url: string;
  /** The master process. */
  readonly pid: number | undefined;
  /** Every request logged so far. */
  accessLog(): AccessLogEntry[];
  stop(): Promise<ExitInfo | undefined>;
  dispose(): Promise<void>;
  tail(): string[];
}

/** Renders the shipped template: only the `${LLMCHAT_*}` placeholders are replaced. */
export function renderTemplate(template: string, values: { listen: string; upstreamsFile: string }): string {
  return renderPlaceholders(template, { LISTEN: values.listen, UPSTREAMS: values.upstreamsFile });
}

function upstreamLines(ports: readonly number[]): string {
  return ports.map((port) => `server 127.0.0.1:${port} max_fails=0;\n`).join('');
}

const LOG_FORMAT = `log_format drill escape=json '{"t":$msec,"method":"$request_method","uri":"$request_uri","status":$status,"upstream":"$upstream_status"}';`;

export async function startNginx(options: {
  instancePorts: readonly number[];
  port?: number;
  /** Where its prefix directory is made (default: the system's temp directory). */
  parentDir?: string;
  /** Extra environment of the nginx process. */
  env?: NodeJS.ProcessEnv;
}): Promise<NginxProxy> {
  const binary = nginxPath();
  if (binary === undefined) throw new Error('nginx not found (install Debian package nginx, or set LLMCHAT_NGINX)');
  const port = options.port ?? (await freePort());
  const dir = mkdtempSync(path.join(options.parentDir ?? tmpdir(), 'llmchat-nginx-'));
  const upstreamsFile = path.join(dir, 'upstreams.conf');
  const accessLogFile = path.join(dir, 'access.log');
  writeFileSync(upstreamsFile, upstreamLines(options.instancePorts));
  writeFileSync(path.join(dir, 'llmchat.conf'), renderTemplate(readFileSync(NGINX_TEMPLATE, 'utf8'), { listen: `127.0.0.1:${port}`, upstreamsFile }));
  const asRoot = process.getuid?.() === 0;
  writeFileSync(
    path.join(dir, 'nginx.conf'),
    [
      // As root, workers would otherwise switch to `nobody`, who cannot write the temp directories here.
      asRoot ? 'user root;' : '',
      'daemon off;',
      'worker_processes 1;',
      `pid ${dir}/nginx.pid;`,
      `error_log ${dir}/error.log warn;`,
      'events { worker_connections 8192; }',
      'http {',
      `  ${LOG_FORMAT}`,
      `  access_log ${accessLogFile} drill;`,
      ...['client_body', 'proxy', 'fastcgi', 'uwsgi', 'scgi'].map((kind) => `  ${kind}_temp_path ${dir}/${kind}_temp;`),
      `  include ${dir}/llmchat.conf;`,
      '}',
      '',
    ].join('\n'),
  );
  const child: ManagedProcess = startProcess(`nginx:${port}`, binary, ['-p', dir, '-c', path.join(dir, 'nginx.conf'), '-e', path.join(dir, 'error.log')], {
    env: { PATH: process.env.PATH, ...options.env },
    cwd: dir,
  });
  try {
    await waitForPort(port, READY_TIMEOUT_MS, child);
  } catch (err) {
    if (child.exitInfo() === undefined && child.pid !== undefined) process.kill(-child.pid, 'SIGKILL');
    await child.exited;
    rmSync(dir, { recursive: true, force: true });
    throw new Error(`${(err as Error).message}\n${readIfExists(path.join(dir, 'error.log'))}`, { cause: err });
  }
  return {
    port,
    url: `http://127.0.0.1:${port}`,
    pid: child.pid,
    accessLog: () => parseAccessLog(readIfExists(accessLogFile)),
    // SIGQUIT: graceful shutdown.
    stop: async () => (child.exitInfo() === undefined ? child.kill('SIGQUIT') : child.exitInfo()),
    async dispose() {
      // Workers outlive a killed master (and hold its output pipes): kill the whole process group.
      if (child.exitInfo() === undefined && child.pid !== undefined) process.kill(-child.pid, 'SIGKILL');
      await child.exited;
      rmSync(dir, { recursive: true, force: true });
    },
    tail: () => [...child.tail(), ...readIfExists(path.join(dir, 'error.log')).split('\n').slice(-20)],
  };
}

function readIfExists(file: string): string {
  return existsSync(file) ? readFileSync(file, 'utf8') : '';
}

export function parseAccessLog(text: string): AccessLogEntry[] {
  const entries: AccessLogEntry[] = [];
  for (const line of text.split('\n')) {
    if (line.trim() === '') continue;
    const raw = JSON.parse(line) as { t: number; method: string; uri: string; status: number; upstream: string };
    entries.push({
      method: raw.method,
      uri: raw.uri,
      status: raw.status,
      upstreamStatuses: raw.upstream === '' ? [] : raw.upstream.split(/,\s*|\s*:\s*/).filter((s) => s !== ''),
      at: Math.round(raw.t * 1000),
    });
  }
  return entries;
}
