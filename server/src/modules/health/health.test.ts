import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { backendNames } from '../../test/backends.js';
import { bearer, buildTestApp, createUserAndLogin, login, type TestApp } from '../../test/app.js';

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

  it('ready stays 200 but says degraded and names shared state when it is unreachable (chat works without it)', async () => {
    const original = t.backend.state.ping.bind(t.backend.state);
    t.backend.state.ping = () => Promise.reject(new Error('connection refused'));
    try {
      const res = await t.app.inject({ method: 'GET', url: '/health/ready' });
      expect(res.statusCode).toBe(200);
      const body = res.json<{ status: string; degraded: string[]; checks: { sharedState: { ok: boolean; error: string } } }>();
      expect(body.status).toBe('degraded');
      expect(body.degraded).toEqual(['sharedState']);
      expect(body.checks.sharedState).toMatchObject({ ok: false, error: 'connection refused' });
      // /health/detailed reports the same.
      const detailed = await t.app.inject({ method: 'GET', url: '/health/detailed', remoteAddress: '127.0.0.1' });
      expect(detailed.json<{ status: string; degraded: string[]; dependencies: { sharedState: { ok: boolean } } }>()).toMatchObject({ status: 'degraded', degraded: ['sharedState'], dependencies: { sharedState: { ok: false } } });
    } finally {
      t.backend.state.ping = original;
    }
    const after = await t.app.inject({ method: 'GET', url: '/health/ready' });
    expect(after.json<{ status: string; degraded: string[] }>()).toMatchObject({ status: 'ok', degraded: [] });
  });

  it('ready turns 503 when the database is unreachable', async () => {
    const original = t.backend.database.ping.bind(t.backend.database);
    t.backend.database.ping = () => Promise.reject(new Error('database gone'));
    try {
      const res = await t.app.inject({ method: 'GET', url: '/health/ready' });
      expect(res.statusCode).toBe(503);
      expect(res.json<{ status: string; checks: { database: { ok: boolean; error: string } } }>()).toMatchObject({ status: 'unavailable', checks: { database: { ok: false, error: 'database gone' } } });
    } finally {
      t.backend.database.ping = original;
    }
  });

  it('unknown routes get a 404 with a stable code', async () => {
    const res = await t.app.inject({ method: 'GET', url: '/health/nope' });
    expect(res.statusCode).toBe(404);
    expect(res.json<{ error: { code: string } }>().error.code).toBe('NOT_FOUND');
  });
});

describe.each(await backendNames())('health for operators on %s', (name) => {
  let t: TestApp;
  let admin: string;
  let user: string;
  beforeAll(async () => {
    t = await buildTestApp(name);
    admin = await login(t.app);
    user = (await createUserAndLogin(t.app, admin, 'operator-user')).token;
    const res = await t.app.inject({
      method: 'POST',
      url: '/api/agents',
      headers: bearer(admin),
      payload: { id: 'watched', name: 'Watched', provider: 'openai', endpoint: 'http://127.0.0.1:9/v1/chat/completions?token=url-secret', model: 'm', apiKey: 'sk-very-secret-key', fallbacks: [{ provider: 'openai', endpoint: 'http://127.0.0.1:9/fallback', apiKey: 'sk-other-secret' }] },
    });
    expect(res.statusCode).toBe(201);
  });
  afterAll(async () => {
    await t.close();
  });

  it('startup answers once migrations are done', async () => {
    const res = await t.app.inject({ method: 'GET', url: '/health/startup' });
    expect(res.statusCode).toBe(200);
    expect(res.json<{ checks: { migrations: { ok: boolean } } }>().checks.migrations.ok).toBe(true);
  });

  it('detailed reports each dependency with its latency, the breakers, version and uptime to the internal network', async () => {
    const res = await t.app.inject({ method: 'GET', url: '/health/detailed', remoteAddress: '127.0.0.1' });
    expect(res.statusCode).toBe(200);
    const body = res.json<{ status: string; version: string; pid: number; uptimeSeconds: number; dependencies: Record<string, { ok: boolean; latencyMs?: number }>; breakers: { agentId: string; position: number; host: string; breaker: { state: string } }[] }>();
    expect(body.status).toBe('ok');
    expect(body.version).toMatch(/^\d+\.\d+\.\d+/);
    expect(body.uptimeSeconds).toBeGreaterThanOrEqual(0);
    // Which process answered: behind a proxy, operators (and the drill) tell instances apart by it.
    expect(body.pid).toBe(process.pid);
    expect(body.dependencies.database?.ok).toBe(true);
    expect(typeof body.dependencies.database?.latencyMs).toBe('number');
    expect(typeof body.dependencies.sharedState?.latencyMs).toBe('number');
    expect(body.breakers.filter((b) => b.agentId === 'watched').map((b) => [b.position, b.host, b.breaker.state])).toEqual([
      [0, '127.0.0.1:9', 'closed'],
      [1, '127.0.0.1:9', 'closed'],
    ]);
    expect(res.body).not.toContain('secret');
    // The database's connection pools (PostgreSQL: the writer, and the reader with DATABASE_READ_URL; PGlite has none).
    const pools = res.json<{ dependencies: { databasePools: { pool: string; total: number; idle: number; waiting: number }[] } }>().dependencies.databasePools;
    if (name.startsWith('postgres')) expect(pools.map((p) => p.pool)).toEqual(['writer']);
    else expect(pools).toEqual([]);
    pools.forEach((p) => expect(p.total).toBeGreaterThanOrEqual(p.idle));
  });

  it('detailed refuses other addresses unless the caller is an admin, with stable codes', async () => {
    const outside = '203.0.113.7';
    const anonymous = await t.app.inject({ method: 'GET', url: '/health/detailed', remoteAddress: outside });
    expect(anonymous.statusCode).toBe(403);
    expect(anonymous.json<{ error: { code: string } }>().error.code).toBe('FORBIDDEN');
    const asUser = await t.app.inject({ method: 'GET', url: '/health/detailed', remoteAddress: outside, headers: bearer(user) });
    expect(asUser.statusCode).toBe(403);
    const badToken = await t.app.inject({ method: 'GET', url: '/health/detailed', remoteAddress: outside, headers: bearer('nonsense') });
    expect(badToken.statusCode).toBe(401);
    const asAdmin = await t.app.inject({ method: 'GET', url: '/health/detailed', remoteAddress: outside, headers: bearer(admin) });
    expect(asAdmin.statusCode).toBe(200);
    // Through a local proxy with TRUST_PROXY off, the loopback address is the proxy's, not the caller's.
    const proxied = await t.app.inject({ method: 'GET', url: '/health/detailed', remoteAddress: '127.0.0.1', headers: { 'x-forwarded-for': outside } });
    expect(proxied.statusCode).toBe(403);
  });

  it('ready turns 503 while the instance drains; live and startup stay up', async () => {
    t.app.deps.lifecycle.draining = true;
    try {
      const ready = await t.app.inject({ method: 'GET', url: '/health/ready' });
      expect(ready.statusCode).toBe(503);
      expect(ready.json<{ status: string; checks: { draining: { ok: boolean } } }>()).toMatchObject({ status: 'draining', checks: { draining: { ok: false } } });
      expect((await t.app.inject({ method: 'GET', url: '/health/live' })).statusCode).toBe(200);
      expect((await t.app.inject({ method: 'GET', url: '/health/startup' })).statusCode).toBe(200);
    } finally {
      t.app.deps.lifecycle.draining = false;
    }
    expect((await t.app.inject({ method: 'GET', url: '/health/ready' })).statusCode).toBe(200);
  });
});
