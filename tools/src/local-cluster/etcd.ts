/**
 * etcd for Patroni's leader key: a cluster of members on loopback ports,
 * each a process that can be stopped, killed and started again on its own
 * data, as a host of a real cluster would be.
 */

import { mkdirSync } from 'node:fs';
import path from 'node:path';
import { startProcess } from '../bench/processes.js';
import { findBinary } from './binaries.js';
import { disposableService, failedStart, waitForPort, type DisposableService } from './services.js';
import { allSettledOrThrow, getJson } from './wait-until.js';

const READY_TIMEOUT_MS = 30_000;

export interface EtcdMember extends DisposableService {
  readonly name: string;
  /** Where clients (Patroni) connect: http://127.0.0.1:port. */
  readonly url: string;
}

export function etcdPath(): string | undefined {
  return findBinary('etcd', 'LLMCHAT_ETCD');
}

/** Whether the member answers and sees a leader (etcd's /health is false without a quorum). */
async function healthy(url: string): Promise<boolean> {
  const { status, body } = await getJson(`${url}/health`, 1_000);
  const health = (body as { health?: unknown } | undefined)?.health;
  return status === 200 && (health === 'true' || health === true);
}

/**
 * Starts every member at once (none is healthy before a majority runs) and
 * resolves when each answers healthy. `token` keeps members of another
 * cluster on the same ports from joining this one.
 */
export async function startEtcdCluster(spec: {
  members: readonly { name: string; clientPort: number; peerPort: number }[];
  token: string;
  dir: string;
  logDir: string;
  env: NodeJS.ProcessEnv;
}): Promise<EtcdMember[]> {
  const binary = etcdPath();
  if (binary === undefined) throw new Error('etcd not found (install Debian package etcd-server, or set LLMCHAT_ETCD)');
  const peerUrl = (port: number): string => `http://127.0.0.1:${port}`;
  const initialCluster = spec.members.map((m) => `${m.name}=${peerUrl(m.peerPort)}`).join(',');
  const members: EtcdMember[] = [];
  const started = allSettledOrThrow(
    spec.members.map(async (member): Promise<void> => {
      const url = `http://127.0.0.1:${member.clientPort}`;
      const dataDir = path.join(spec.dir, member.name);
      mkdirSync(dataDir, { recursive: true, mode: 0o700 });
      const args = [
        `--name=${member.name}`,
        `--data-dir=${dataDir}`,
        `--listen-client-urls=${url}`,
        `--advertise-client-urls=${url}`,
        `--listen-peer-urls=${peerUrl(member.peerPort)}`,
        `--initial-advertise-peer-urls=${peerUrl(member.peerPort)}`,
        `--initial-cluster=${initialCluster}`,
        // Read only at the first start; a restarted member rejoins from its data directory.
        '--initial-cluster-state=new',
        `--initial-cluster-token=${spec.token}`,
        '--logger=zap',
        '--log-level=warn',
        // Patroni writes a few keys every second: keep one hour of history, not all of it.
        '--auto-compaction-mode=periodic',
        '--auto-compaction-retention=1h',
      ];
      const service = await disposableService({
        port: member.clientPort,
        url,
        dir: dataDir,
        stopSignal: 'SIGTERM',
        async launch() {
          const child = startProcess(member.name, binary, args, { env: spec.env, cwd: spec.dir, logFile: path.join(spec.logDir, `${member.name}.log`) });
          try {
            await waitForPort(member.clientPort, READY_TIMEOUT_MS, child, () => healthy(url));
          } catch (err) {
            return failedStart(child, err);
          }
          return child;
        },
      });
      members.push(Object.assign(service, { name: member.name }));
    }),
  );
  try {
    await started;
  } catch (err) {
    await Promise.all(members.map((m) => m.dispose()));
    throw new Error(`etcd did not start: ${String(err)}`, { cause: err });
  }
  return members.sort((a, b) => a.port - b.port);
}
