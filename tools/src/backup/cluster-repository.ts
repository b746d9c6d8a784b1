/**
 * One pgBackRest repository for every PostgreSQL node of a cluster on this
 * host, as `npm run cluster` runs it: each node archives into the same
 * stanza with a pgbackrest.conf of its own (pgBackRest reads the node's data
 * directory, pg1-path, to check each segment belongs to the stanza), and a
 * backup runs with the current leader's file.
 */

import { chownSync, mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { archiveSettings, DEFAULT_STANZA } from './archive-settings.js';
import { renderShippedPgbackrestConfig } from './pgbackrest-config.js';
import { databaseOsUser, runPgbackrest, type Stanza } from './pgbackrest.js';

/** Where a node's PostgreSQL lives (the same shape as local-cluster's NodeFiles). */
export interface NodeLocation {
  name: string;
  dataDir: string;
  socketDir: string;
  pgPort: number;
}

export interface ClusterRepository {
  readonly stanza: string;
  readonly repoPath: string;
  /** Every node's pgbackrest.conf written so far, by node name. */
  readonly configs: Readonly<Record<string, string>>;
  /** Writes the node's pgbackrest.conf and returns its archive_command. */
  archive(node: NodeLocation): { archiveCommand: string };
  /** The stanza as seen from one node (its config; as `postgres` when this runs as root). */
  target(nodeName: string): Stanza;
  /** stanza-create through the leader's config: archive-push refuses segments until the stanza exists. */
  createStanza(leaderName: string, timeoutMs: number): Promise<void>;
}

export function clusterRepository(dir: string, stanza = DEFAULT_STANZA): ClusterRepository {
  const owner = databaseOsUser();
  const repoPath = path.join(dir, 'repo');
  for (const sub of ['repo', 'log', 'lock', 'conf']) {
    mkdirSync(path.join(dir, sub), { recursive: true, mode: 0o750 });
    if (owner) chownSync(path.join(dir, sub), owner.uid, owner.gid);
  }
  if (owner) chownSync(dir, owner.uid, owner.gid);
  const configs: Record<string, string> = {};
  const target = (nodeName: string): Stanza => {
    const configPath = configs[nodeName];
    if (configPath === undefined) throw new Error(`no pgbackrest.conf for node ${nodeName}`);
    return { stanza, configPath, ...(owner ? { osUser: owner } : {}) };
  };
  return {
    stanza,
    repoPath,
    configs,
    archive(node) {
      const configPath = path.join(dir, 'conf', `${node.name}.conf`);
      const text = renderShippedPgbackrestConfig({
        pgData: node.dataDir,
        repoPath,
        stanza,
        pgPort: node.pgPort,
        pgSocket: node.socketDir,
        logPath: path.join(dir, 'log'),
        lockPath: path.join(dir, 'lock'),
      });
      writeFileSync(configPath, text, { mode: 0o640 });
      if (owner) chownSync(configPath, owner.uid, owner.gid);
      configs[node.name] = configPath;
      return { archiveCommand: archiveSettings({ stanza, configPath }).archive_command };
    },
    target,
    async createStanza(leaderName, timeoutMs) {
      await runPgbackrest(target(leaderName), 'stanza-create', [], { timeoutMs });
    },
  };
}
