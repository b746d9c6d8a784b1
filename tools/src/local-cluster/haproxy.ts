/**
 * HAProxy in front of the Patroni nodes, running the shipped
 * `ops/haproxy/haproxy.cfg.template`: a write port that follows the leader
 * and a read port over the replicas.
 */

import { execFile } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { promisify } from 'node:util';
import { startProcess } from '../bench/processes.js';
import { findBinary } from './binaries.js';
import type { PatroniNodeSpec } from './patroni.js';
import { disposableService, failedStart, waitForPort, type DisposableService } from './services.js';
import { renderOpsTemplate } from './template.js';
import { getJson } from './wait-until.js';

const READY_TIMEOUT_MS = 15_000;

export function haproxyPath(): string | undefined {
  return findBinary('haproxy', 'LLMCHAT_HAPROXY');
}

export interface HaproxyPorts {
  write: number;
  read: number;
  stats: number;
}

/** The shipped config for three nodes, every port on 127.0.0.1. */
export function renderHaproxyConfig(ports: HaproxyPorts, nodes: readonly PatroniNodeSpec[]): string {
  if (nodes.length !== 3) throw new Error(`the shipped HAProxy config names three PostgreSQL nodes, got ${nodes.length}`);
  const values: Record<string, string> = {
    WRITE_BIND: `127.0.0.1:${ports.write}`,
    READ_BIND: `127.0.0.1:${ports.read}`,
    STATS_BIND: `127.0.0.1:${ports.stats}`,
  };
  for (const [i, node] of nodes.entries()) {
    values[`NODE${i + 1}_NAME`] = node.name;
    values[`NODE${i + 1}_ADDRESS`] = `${node.host}:${node.pgPort}`;
    values[`NODE${i + 1}_REST_PORT`] = String(node.restPort);
  }
  return renderOpsTemplate('haproxy/haproxy.cfg.template', values);
}

/** `haproxy -c`: HAProxy's own check of a config file; rejects with its output when the file is not valid. */
export async function checkHaproxyConfig(configFile: string): Promise<string> {
  const binary = haproxyPath();
  if (binary === undefined) throw new Error('haproxy not found (install Debian package haproxy, or set LLMCHAT_HAPROXY)');
  try {
    const { stdout, stderr } = await promisify(execFile)(binary, ['-c', '-f', configFile], { timeout: 15_000 });
    return `${stdout}${stderr}`;
  } catch (err) {
    const { stdout, stderr } = err as { stdout?: string; stderr?: string };
    throw new Error(`haproxy -c -f ${configFile} failed:\n${stdout ?? ''}${stderr ?? String(err)}`, { cause: err });
  }
}

export interface Haproxy extends DisposableService {
  readonly ports: HaproxyPorts;
  /** The status page (which node each port sends to). */
  readonly statsUrl: string;
}

export async function startHaproxy(spec: { ports: HaproxyPorts; nodes: readonly PatroniNodeSpec[]; dir: string; logFile: string; env: NodeJS.ProcessEnv }): Promise<Haproxy> {
  const binary = haproxyPath();
  if (binary === undefined) throw new Error('haproxy not found (install Debian package haproxy, or set LLMCHAT_HAPROXY)');
  mkdirSync(spec.dir, { recursive: true });
  const configFile = path.join(spec.dir, 'haproxy.cfg');
  writeFileSync(configFile, renderHaproxyConfig(spec.ports, spec.nodes));
  await checkHaproxyConfig(configFile);
  const statsUrl = `http://127.0.0.1:${spec.ports.stats}/`;
  const service = await disposableService({
    port: spec.ports.write,
    url: `tcp://127.0.0.1:${spec.ports.write}`,
    dir: spec.dir,
    stopSignal: 'SIGTERM',
    async launch() {
      // -db: in the foreground, logging to stdout, as under systemd.
      const child = startProcess('haproxy', binary, ['-db', '-f', configFile], { env: spec.env, cwd: spec.dir, logFile: spec.logFile });
      try {
        await waitForPort(spec.ports.stats, READY_TIMEOUT_MS, child, async () => (await getJson(statsUrl, 1_000)).status === 200);
      } catch (err) {
        return failedStart(child, err);
      }
      return child;
    },
  });
  return Object.assign(service, { ports: spec.ports, statsUrl });
}
