/**
 * What the drill runs against: the small deployment (one PostgreSQL, one
 * Redis; `npm run drill`) or the production-shaped topology (Patroni,
 * HAProxy, Sentinel; `npm run drill -- --topology`). Rows that need one
 * kind's pieces reach them through `single` or `topology`.
 */

import type { LocalCluster } from '../local-cluster/cluster.js';
import type { LlmchatInstance } from '../local-cluster/instance.js';
import type { NginxProxy } from '../local-cluster/nginx.js';
import type { DisposableService } from '../local-cluster/services.js';
import type { Topology } from '../local-cluster/topology.js';

export interface DrillDeployment {
  readonly kind: 'single' | 'topology';
  readonly nginx: NginxProxy;
  readonly instances: readonly LlmchatInstance[];
  /** The mock upstream behind the drill agents' primary endpoint. */
  readonly primary: DisposableService;
  /** A plain user's access token. */
  readonly token: string;
  /** Where the drill reads what was stored: the writer (through HAProxy on the topology). */
  readonly databaseUrl: string;
  readonly single: LocalCluster | undefined;
  readonly topology: Topology | undefined;
  /** Whole again: every instance ready (and on the topology, every engine in place); else why not. */
  whole(): Promise<true | string>;
  dispose(): Promise<void>;
}

export function singleDeployment(cluster: LocalCluster): DrillDeployment {
  return {
    kind: 'single',
    nginx: cluster.nginx,
    instances: cluster.instances,
    primary: cluster.primary,
    token: cluster.token,
    databaseUrl: cluster.postgres.url,
    single: cluster,
    topology: undefined,
    whole: async () => ((await cluster.whole()) ? true : 'an instance is not ready'),
    dispose: () => cluster.dispose(),
  };
}

export function topologyDeployment(topology: Topology): DrillDeployment {
  if (topology.primary === undefined) throw new Error('the drill needs the topology\'s own mock upstreams (unset AGENTS_CONFIG_PATH)');
  return {
    kind: 'topology',
    nginx: topology.nginx,
    instances: topology.instances,
    primary: topology.primary,
    token: topology.token,
    databaseUrl: topology.database.write,
    single: undefined,
    topology,
    whole: () => topology.whole().catch((err: unknown) => `cannot tell: ${(err as Error).message}`),
    dispose: () => topology.dispose(),
  };
}
