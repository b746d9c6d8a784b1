import { describe, expect, it } from 'vitest';
import { readiness, type ReadinessInput } from './readiness.js';

const up = { ok: true, kind: 'postgres' };
const down = { ok: false, kind: 'redis', error: 'connection refused' };
const healthy: ReadinessInput = { database: up, sharedState: { ok: true, kind: 'redis' }, migrated: true, draining: false };

describe('readiness', () => {
  it('is ready and ok when every dependency answers', () => {
    expect(readiness(healthy)).toEqual({ ready: true, status: 'ok', degraded: [] });
  });

  it('stays ready while shared state is down, saying degraded and naming it', () => {
    expect(readiness({ ...healthy, sharedState: down })).toEqual({ ready: true, status: 'degraded', degraded: ['sharedState'] });
  });

  it('is not ready without the database or before migrations, whatever shared state does', () => {
    expect(readiness({ ...healthy, database: { ...down, kind: 'postgres' } })).toEqual({ ready: false, status: 'unavailable', degraded: [] });
    expect(readiness({ ...healthy, migrated: false, sharedState: down })).toEqual({ ready: false, status: 'unavailable', degraded: ['sharedState'] });
  });

  it('is not ready while draining, which wins over every other state', () => {
    expect(readiness({ ...healthy, draining: true })).toEqual({ ready: false, status: 'draining', degraded: [] });
    expect(readiness({ ...healthy, draining: true, database: { ...down, kind: 'postgres' }, sharedState: down })).toEqual({ ready: false, status: 'draining', degraded: ['sharedState'] });
  });
});
