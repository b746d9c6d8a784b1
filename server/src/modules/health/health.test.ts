import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { backendNames } from '../../test/backends.js';
import { buildTestApp, type TestApp } from '../../test/app.js';

describe.each(await backendNames())('health on %s', (name) => {
  let t: TestApp;
  beforeAll(async () => {
    t = await buildTestApp(name);
  });
  afterAll(async () => {
    await t.close();
  });

  it('live answers without checking dependencies', async () => {
    const res = await t.app.inject({ method: 'GET', url: '/health/live' });
    expect(res.statusCode).toBe(200);
    expect(res.json<{ status: string }>().status).toBe('ok');
  });

  it('ready reports the database, shared state and migrations', async () => {
    const res = await t.app.inject({ method: 'GET', url: '/health/ready' });
    expect(res.statusCode).toBe(200);
    const body = res.json<{ status: string; checks: Record<string, { ok: boolean; kind?: string }> }>();
    expect(body.status).toBe('ok');
    expect(body.checks.database).toMatchObject({ ok: true, kind: name === 'pglite+memory' ? 'pglite' : 'postgres' });
    expect(body.checks.sharedState).toMatchObject({ ok: true, kind: name === 'pglite+memory' ? 'memory' : 'redis' });
    expect(body.checks.migrations).toMatchObject({ ok: true });
  });

  it('ready turns 503 when the shared state is unreachable', async () => {
    const original = t.backend.state.ping.bind(t.backend.state);
    t.backend.state.ping = () => Promise.reject(new Error('connection refused'));
    try {
      const res = await t.app.inject({ method: 'GET', url: '/health/ready' });
      expect(res.statusCode).toBe(503);
      expect(res.json<{ checks: { sharedState: { ok: boolean; error: string } } }>().checks.sharedState).toMatchObject({ ok: false, error: 'connection refused' });
    } finally {
      t.backend.state.ping = original;
    }
  });

  it('unknown routes get a 404 with a stable code', async () => {
    const res = await t.app.inject({ method: 'GET', url: '/health/nope' });
    expect(res.statusCode).toBe(404);
    expect(res.json<{ error: { code: string } }>().error.code).toBe('NOT_FOUND');
  });
});
