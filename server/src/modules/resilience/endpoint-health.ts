import type { BreakerSnapshot } from '../../shared-state/breaker.js';
import type { ResolvedEndpoint } from '../providers/types.js';
import type { BreakerService } from './breakers.js';
import type { FailureLog } from './failure-log.js';

/** One endpoint's breaker and recent failed attempts, as admins and /health/detailed see them. */
export interface EndpointHealth {
  endpointId: string;
  breaker: { state: BreakerSnapshot['state']; opens: number; openUntil?: string | undefined; lastFailureAt?: string | undefined } | { state: 'unknown'; error: string };
  failures?: { lastHour: number } | undefined;
}

const HOUR_MS = 3_600_000;

function breakerView(s: BreakerSnapshot): EndpointHealth['breaker'] {
  return {
    state: s.state,
    opens: s.opens,
    openUntil: s.state === 'open' ? new Date(s.openUntilMs).toISOString() : undefined,
    lastFailureAt: s.lastFailureMs > 0 ? new Date(s.lastFailureMs).toISOString() : undefined,
  };
}

/**
 * Breaker states (shared state) and failed attempts in the last hour
 * (database) of some endpoints. Either source being down shows as such
 * instead of failing the whole answer.
 */
export async function endpointHealth(deps: { breakers: BreakerService; failures?: FailureLog | undefined }, endpoints: readonly Pick<ResolvedEndpoint, 'id'>[], now = Date.now()): Promise<EndpointHealth[]> {
  const ids = endpoints.map((e) => e.id);
  const [breakers, failures] = await Promise.all([
    deps.breakers.snapshots(ids).then(
      (list) => list.map(breakerView),
      (err: unknown) => ids.map((): EndpointHealth['breaker'] => ({ state: 'unknown', error: (err as Error).message.slice(0, 200) })),
    ),
    deps.failures ? deps.failures.countsSince(ids, new Date(now - HOUR_MS)).catch(() => undefined) : Promise.resolve(undefined),
  ]);
  return ids.map((endpointId, i) => ({
    endpointId,
    breaker: breakers[i] ?? { state: 'unknown', error: 'missing' },
    failures: failures ? { lastHour: failures[i]?.failures ?? 0 } : undefined,
  }));
}
