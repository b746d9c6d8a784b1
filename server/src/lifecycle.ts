/**
 * The instance's own life: when it started, whether migrations are done,
 * whether it is draining. Health endpoints read it; main.ts flips `draining`
 * on SIGTERM, before anything closes, so `/health/ready` turns 503 at once.
 */
export interface Lifecycle {
  readonly startedAt: Date;
  migrated: boolean;
  draining: boolean;
}

export function createLifecycle(): Lifecycle {
  return { startedAt: new Date(), migrated: false, draining: false };
}

/**
 * After DRAIN_TIMEOUT_MS, how long the shutdown may still take (handing the
 * remaining answers over, closing pools) before the process exits anyway. A
 * supervisor's stop timeout (Kubernetes' terminationGracePeriodSeconds,
 * systemd's TimeoutStopSec) must exceed DRAIN_TIMEOUT_MS plus this.
 */
export const SHUTDOWN_HANDOVER_MS = 15_000;
