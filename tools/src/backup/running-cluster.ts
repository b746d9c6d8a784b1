/**
 * The stanza of the deployment `npm run cluster` is running: its state file
 * names each node's pgbackrest.conf, and Patroni names the leader, whose
 * file a backup runs with (a backup reads the primary's data directory).
 */

import { readPointer, CURRENT_POINTER } from '../local-cluster/deployment-state.js';
import type { TopologyEndpoints } from '../local-cluster/topology.js';
import { databaseOsUser, type Stanza } from './pgbackrest.js';

const REST_TIMEOUT_MS = 3_000;

export async function clusterStanza(): Promise<Stanza> {
  const state = readPointer();
  const endpoints = state?.endpoints as Partial<TopologyEndpoints> | undefined;
  if (endpoints?.backup === undefined || endpoints.patroni === undefined) throw new Error(`no running deployment with a backup repository recorded in ${CURRENT_POINTER} (start one with npm run cluster)`);
  let leader: string | undefined;
  for (const node of endpoints.patroni) {
    try {
      const response = await fetch(`${node.rest}/cluster`, { signal: AbortSignal.timeout(REST_TIMEOUT_MS) });
      const body = (await response.json()) as { members?: { name: string; role: string }[] };
      leader = body.members?.find((m) => m.role === 'leader')?.name;
      if (leader !== undefined) break;
    } catch {
      // This node's Patroni is down: ask the next one.
    }
  }
  if (leader === undefined) throw new Error('the deployment has no Patroni leader right now; try again once it has one');
  const configPath = endpoints.backup.configs[leader];
  if (configPath === undefined) throw new Error(`the deployment records no pgbackrest.conf for its leader ${leader}`);
  const osUser = databaseOsUser();
  return { stanza: endpoints.backup.stanza, configPath, ...(osUser ? { osUser } : {}) };
}
