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
