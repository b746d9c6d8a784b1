import type { DatabaseHandle } from '../../db/database.js';
import type { Lifecycle } from '../../lifecycle.js';
import type { PressureMonitor } from '../../plugins/load-shedding.js';
import { degradedFeatures, dependencyFailures } from '../../shared-state/degraded.js';
import type { SharedState } from '../../shared-state/shared-state.js';
import type { AgentsService } from '../agents/agents-service.js';
import { readiness } from '../health/readiness.js';
import type { ChatService } from '../chat/chat-service.js';
import { activeEventStreams } from '../chat/sse.js';
import type { BreakerService } from '../resilience/breakers.js';
import type { MetricSources } from './metrics.js';

const PING_TIMEOUT_MS = 1_000;

function withTimeout<T>(promise: Promise<T>): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  return Promise.race([
    promise,
    new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error('timed out')), PING_TIMEOUT_MS);
    }),
  ]).finally(() => clearTimeout(timer));
}

/** Whether a ping answers within PING_TIMEOUT_MS. */
function answers(ping: () => Promise<number>): Promise<boolean> {
  return withTimeout(ping()).then(
    () => true,
    () => false,
  );
}

/** The database's pools and read replica, as metrics read them. */
export function databaseSources(database: DatabaseHandle): Pick<MetricSources, 'pools' | 'replica'> {
  return {
    pools: () => database.pools(),
    replica: () => {
      const route = database.readRoute();
      return route && { lagSeconds: route.lagMs === null ? null : route.lagMs / 1000, usingReplica: route.using === 'replica' };
    },
  };
}

/** Where the scrape reads the app's own figures: what the services already keep, nothing added to the chat path. */
export function appMetricSources(deps: {
  database: DatabaseHandle;
  state: SharedState;
  chat: ChatService;
  agents: AgentsService;
  breakers: BreakerService;
  pressure: PressureMonitor;
  lifecycle: Lifecycle;
}): MetricSources {
  return {
    runningGenerations: () => deps.chat.runningCount,
    activeStreams: activeEventStreams,
    followers: () => deps.state.followCount,
    draining: () => deps.lifecycle.draining || deps.chat.draining,
    ready: async () => {
      const [database, sharedState] = await Promise.all([answers(() => deps.database.ping()), answers(() => deps.state.ping())]);
      return readiness({ database: { ok: database, kind: deps.database.kind }, sharedState: { ok: sharedState, kind: deps.state.kind }, migrated: deps.lifecycle.migrated, draining: deps.lifecycle.draining || deps.chat.draining }).ready;
    },
    sharedStateDegraded: () => degradedFeatures('shared state'),
    ...databaseSources(deps.database),
    groupWriters: () => deps.chat.writerStats(),
    breakers: async () => {
      const endpoints = deps.agents.listActive().flatMap((a) => deps.agents.find(a.id)?.endpoints ?? []);
      if (endpoints.length === 0) return [];
      const snapshots = await deps.breakers.snapshots(endpoints.map((e) => e.id));
      return endpoints.flatMap((e, i) => {
        const s = snapshots[i];
        return s ? [{ agent: e.agentId, endpoint: String(e.position), provider: e.provider, state: s.state }] : [];
      });
    },
    redisPing: deps.state.kind === 'redis' ? () => withTimeout(deps.state.ping()) : undefined,
    sharedStateErrors: () => dependencyFailures('shared state'),
    pressure: () => deps.pressure.last,
  };
}
