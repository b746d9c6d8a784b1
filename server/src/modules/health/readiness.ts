/** One dependency as the health endpoints report it. */
export interface DependencyCheck {
  ok: boolean;
  latencyMs?: number;
  error?: string;
  kind: string;
}

export interface ReadinessInput {
  database: DependencyCheck;
  sharedState: DependencyCheck;
  migrated: boolean;
  draining: boolean;
}

export type ReadinessStatus = 'ok' | 'degraded' | 'draining' | 'unavailable';

export interface Readiness {
  /** Whether a load balancer should send this instance new work (200 vs 503). */
  ready: boolean;
  status: ReadinessStatus;
  /** Dependencies that are down while the instance still serves (in degraded mode). */
  degraded: string[];
}

/**
 * Whether this instance should get traffic. PostgreSQL, migrations and
 * draining decide. Shared state does not: without Redis chat keeps working
 * (resumption, takeover and shared breakers pause; rate limits fail open or
 * closed as configured), and since every instance shares the one Redis, a
 * load balancer that took instances out for it would take out all of them at
 * once. So Redis down is `degraded`, still ready.
 */
export function readiness(input: ReadinessInput): Readiness {
  const degraded = input.sharedState.ok ? [] : ['sharedState'];
  if (input.draining) return { ready: false, status: 'draining', degraded };
  if (!input.database.ok || !input.migrated) return { ready: false, status: 'unavailable', degraded };
  return { ready: true, status: degraded.length > 0 ? 'degraded' : 'ok', degraded };
}
