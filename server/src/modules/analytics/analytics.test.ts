import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { backendNames } from '../../test/backends.js';
import { bearer, buildTestApp, createUserAndLogin, login, type TestApp } from '../../test/app.js';

interface Usage {
  totals: Record<string, unknown>;
  series: { at: string; conversations: number; questions: number; answers: number; errors: number; tokens: number }[];
  byAgent: { key: string; answers: number; errors: number; tokens: number; firstTokenMs: { p50: number | null } }[];
  byProvider: { key: string; answers: number; errors: number; tokens: number }[];
}

describe.each(await backendNames())('usage and system status on %s', (name) => {
  let t: TestApp;
  let admin: string;
  let user: string;

  beforeAll(async () => {
    t = await buildTestApp(name);
    admin = await login(t.app);
    const alice = await createUserAndLogin(t.app, admin, 'alice');
    user = alice.token;
    // Turns written straight into the tables, so their times, providers, tokens and latencies are known.
    const db = t.backend.database.db;
    const s1 = await db.insertInto('chat_sessions').values({ user_id: alice.userId, agent_id: 'gpt', updated_at: new Date(), created_at: new Date('2026-01-01T10:00:00Z') }).returning('id').executeTakeFirstOrThrow();
    const s2 = await db.insertInto('chat_sessions').values({ user_id: alice.userId, agent_id: 'claude', updated_at: new Date(), created_at: new Date('2026-01-02T05:00:00Z') }).returning('id').executeTakeFirstOrThrow();
    const msg = (session: string, role: 'user' | 'assistant', at: string, extra: Record<string, unknown> = {}) => ({
      session_id: session,
      user_id: alice.userId,
      role,
      status: 'complete' as const,
      content: 'x',
      created_at: new Date(at),
      updated_at: new Date(at),
      ...extra,
    });
    await db
      .insertInto('messages')
      .values([
        msg(s1.id, 'user', '2026-01-01T10:00:00Z'),
        msg(s1.id, 'assistant', '2026-01-01T10:00:01Z', { agent_id: 'gpt', provider: 'openai', total_tokens: 10, prompt_tokens: 4, completion_tokens: 6, first_token_ms: 100, total_ms: 1000 }),
        msg(s1.id, 'user', '2026-01-01T11:30:00Z'),
        msg(s1.id, 'assistant', '2026-01-01T11:30:01Z', { agent_id: 'gpt', provider: 'openai', status: 'error', error_code: 'UPSTREAM_ERROR', total_ms: 50 }),
        msg(s2.id, 'user', '2026-01-02T05:00:00Z'),
        msg(s2.id, 'assistant', '2026-01-02T05:00:01Z', { agent_id: 'claude', provider: 'anthropic', total_tokens: 30, prompt_tokens: 10, completion_tokens: 20, first_token_ms: 300, total_ms: 3000 }),
        // Outside every range asked below.
        msg(s2.id, 'user', '2026-02-01T00:00:00Z'),
      ] as never)
      .execute();
  });
  afterAll(async () => {
    await t.close();
  });

  const usage = (query: string, token = admin) => t.app.inject({ method: 'GET', url: `/api/admin/usage?${query}`, headers: bearer(token) });

  it('reports totals, a daily series with every bucket, and per-agent and per-provider figures', async () => {
    const res = await usage('from=2026-01-01T00:00:00Z&to=2026-01-03T00:00:00Z');
    expect(res.statusCode).toBe(200);
    const body = res.json<{ data: Usage }>().data;
    expect(body.totals).toMatchObject({ conversations: 2, questions: 3, answers: 3, errors: 1, errorRate: 0.3333, promptTokens: 14, completionTokens: 26, totalTokens: 40 });
    expect(body.totals.firstTokenMs).toEqual({ p50: 200, p95: 290, p99: 298 });
    expect(body.series).toEqual([
      { at: '2026-01-01T00:00:00Z', conversations: 1, questions: 2, answers: 2, errors: 1, tokens: 10 },
      { at: '2026-01-02T00:00:00Z', conversations: 1, questions: 1, answers: 1, errors: 0, tokens: 30 },
    ]);
    expect(body.byProvider.map((p) => [p.key, p.answers, p.errors, p.tokens])).toEqual([
      ['openai', 2, 1, 10],
      ['anthropic', 1, 0, 30],
    ]);
    expect(body.byAgent.map((a) => [a.key, a.answers, a.firstTokenMs.p50])).toEqual([
      ['gpt', 2, 100],
      ['claude', 1, 300],
    ]);
  });

  it('gives hourly buckets, empty ones included', async () => {
    const res = await usage('from=2026-01-01T09:00:00Z&to=2026-01-01T12:00:00Z&bucket=hour');
    expect(res.statusCode).toBe(200);
    const { series, totals } = res.json<{ data: Usage }>().data;
    expect(series.map((s) => [s.at, s.conversations, s.questions, s.answers, s.errors])).toEqual([
      ['2026-01-01T09:00:00Z', 0, 0, 0, 0],
      ['2026-01-01T10:00:00Z', 1, 1, 1, 0],
      ['2026-01-01T11:00:00Z', 0, 1, 1, 1],
    ]);
    expect(totals).toMatchObject({ answers: 2, errors: 1, errorRate: 0.5 });
  });

  it('answers an empty range with zeros, not nulls', async () => {
    const res = await usage('from=2025-01-01T00:00:00Z&to=2025-01-02T00:00:00Z');
    const { totals, series, byAgent } = res.json<{ data: Usage }>().data;
    expect(totals).toMatchObject({ conversations: 0, answers: 0, errors: 0, errorRate: 0, totalTokens: 0, firstTokenMs: { p50: null, p95: null, p99: null } });
    expect(series).toHaveLength(1);
    expect(byAgent).toEqual([]);
  });

  it('refuses bad ranges with a 400 that says what to fix', async () => {
    const cases: [string, RegExp][] = [
      ['to=2026-01-02T00:00:00Z', /from/],
      ['from=yesterday&to=2026-01-02T00:00:00Z', /from/],
      ['from=2026-01-02T00:00:00Z&to=2026-01-01T00:00:00Z', /to must be after from/],
      ['from=2026-01-01T00:00:00Z&to=2026-01-01T00:00:00Z', /to must be after from/],
      ['from=2026-01-01T00:00:00Z&to=2026-01-31T00:00:00Z&bucket=hour', /720 hour buckets; at most 168/],
      ['from=2020-01-01T00:00:00Z&to=2026-01-01T00:00:00Z', /day buckets; at most 366/],
      ['from=2026-01-01T00:00:00Z&to=2026-01-02T00:00:00Z&bucket=week', /bucket/],
      ['from=2026-01-01T00:00:00Z&to=2026-01-02T00:00:00Z&extra=1', /extra|additional/i],
    ];
    for (const [query, message] of cases) {
      const res = await usage(query);
      expect(res.statusCode, query).toBe(400);
      const error = res.json<{ error: { code: string; message: string } }>().error;
      expect(error.code, query).toBe('VALIDATION_FAILED');
      expect(error.message, query).toMatch(message);
    }
  });

  it('reports the system: version, uptime, dependencies with latency, agents, running answers', async () => {
    const res = await t.app.inject({ method: 'GET', url: '/api/admin/system', headers: bearer(admin) });
    expect(res.statusCode).toBe(200);
    const data = res.json<{ data: Record<string, unknown> }>().data;
    expect(data).toMatchObject({
      version: '0.1.0',
      node: process.version,
      dependencies: {
        database: { ok: true, kind: name === 'pglite+memory' ? 'pglite' : 'postgres' },
        sharedState: { ok: true, kind: name === 'pglite+memory' ? 'memory' : 'redis' },
      },
      agents: { total: 0, active: 0 },
      generations: { running: 0 },
    });
    expect(typeof (data.dependencies as { database: { latencyMs: unknown } }).database.latencyMs).toBe('number');
    expect(data.uptimeSeconds).toEqual(expect.any(Number));
  });

  it('shows a dependency that is down without failing the page', async () => {
    const original = t.backend.state.ping.bind(t.backend.state);
    t.backend.state.ping = () => Promise.reject(new Error('connection refused redis://secret@host:6379'));
    try {
      const res = await t.app.inject({ method: 'GET', url: '/api/admin/system', headers: bearer(admin) });
      expect(res.statusCode).toBe(200);
      const state = res.json<{ data: { dependencies: { sharedState: { ok: boolean; error: string } } } }>().data.dependencies.sharedState;
      expect(state).toMatchObject({ ok: false, error: 'connection refused <url>' });
    } finally {
      t.backend.state.ping = original;
    }
  });

  it('is for admins only', async () => {
    for (const url of ['/api/admin/usage?from=2026-01-01T00:00:00Z&to=2026-01-02T00:00:00Z', '/api/admin/system']) {
      const asUser = await t.app.inject({ method: 'GET', url, headers: bearer(user) });
      expect(asUser.statusCode, url).toBe(403);
      expect(asUser.json<{ error: { code: string } }>().error.code).toBe('FORBIDDEN');
      const anonymous = await t.app.inject({ method: 'GET', url });
      expect(anonymous.statusCode, url).toBe(401);
    }
  });
});
