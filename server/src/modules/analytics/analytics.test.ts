import { sql } from 'kysely';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { bearer, buildTestApp, createUserAndLogin, login, type TestApp } from '../../test/app.js';
import { backendNames } from '../../test/backends.js';
import { resolveRange, type UsageReport } from './analytics-service.js';

const DAY = '2026-01-01T00:00:00.000Z';
const NEXT_DAY = '2026-01-02T00:00:00.000Z';

describe('resolveRange', () => {
  const now = new Date('2026-03-10T12:34:56.000Z');
  it('defaults to the last 7 days by day, and to hours for ranges up to two days', () => {
    expect(resolveRange({}, now)).toMatchObject({ from: new Date('2026-03-03T12:34:56.000Z'), to: now, bucket: 'day' });
    expect(resolveRange({ from: '2026-03-09T12:00:00Z' }, now).bucket).toBe('hour');
    expect(resolveRange({ from: '2026-03-01T00:00:00Z', bucket: 'hour' }, now).bucket).toBe('hour');
  });
  it('refuses an empty or reversed range and one with too many points', () => {
    expect(() => resolveRange({ from: DAY, to: DAY })).toThrow(/from must be before to/);
    expect(() => resolveRange({ from: NEXT_DAY, to: DAY })).toThrow(/from must be before to/);
    expect(() => resolveRange({ from: '2026-01-01T00:00:00Z', to: '2026-03-01T00:00:00Z', bucket: 'hour' })).toThrow(/use bucket=day/);
    expect(() => resolveRange({ from: '2020-01-01T00:00:00Z', to: '2026-01-01T00:00:00Z' })).toThrow(/narrow the range/);
  });
});

describe.each(await backendNames())('usage analytics on %s', (backendName) => {
  let t: TestApp;
  let adminToken: string;
  let userToken: string;

  beforeAll(async () => {
    t = await buildTestApp(backendName);
    adminToken = await login(t.app);
    const other = await createUserAndLogin(t.app, adminToken, 'analyst');
    userToken = other.token;
    for (const [id, provider] of [
      ['alpha', 'openai'],
      ['beta', 'anthropic'],
    ] as const) {
      const res = await t.app.inject({
        method: 'POST',
        url: '/api/agents',
        headers: bearer(adminToken),
        payload: { id, name: `Agent ${id}`, provider, endpoint: 'https://llm.example.com/v1', apiKey: 'k', model: 'm' },
      });
      expect(res.statusCode).toBe(201);
    }
    const db = t.backend.database.db;
    const admin = await db.selectFrom('users').select('id').where('username', '=', 'admin').executeTakeFirstOrThrow();
    const session = async (userId: string, agentId: string, at: string): Promise<string> =>
      (await db.insertInto('chat_sessions').values({ user_id: userId, agent_id: agentId, title: 't', created_at: new Date(at), updated_at: new Date(at) }).returning('id').executeTakeFirstOrThrow()).id;
    const message = (sessionId: string, userId: string, at: string, m: Record<string, unknown>) =>
      sql`INSERT INTO messages (session_id, user_id, role, content, status, agent_id, provider, prompt_tokens, completion_tokens, total_tokens, first_token_ms, total_ms, created_at)
          VALUES (${sessionId}, ${userId}, ${m.role}, 'x', ${m.status ?? 'complete'}, ${m.agent ?? null}, ${m.provider ?? null}, ${m.prompt ?? null}, ${m.completion ?? null}, ${m.total ?? null}, ${m.ftt ?? null}, ${m.ms ?? null}, ${new Date(at)})`.execute(db);

    const s1 = await session(admin.id, 'alpha', '2026-01-01T01:10:00Z');
    await message(s1, admin.id, '2026-01-01T01:10:00Z', { role: 'user' });
    await message(s1, admin.id, '2026-01-01T01:10:01Z', { role: 'assistant', agent: 'alpha', provider: 'openai', prompt: 10, completion: 20, total: 30, ftt: 100, ms: 1000 });
    await message(s1, admin.id, '2026-01-01T03:00:00Z', { role: 'user' });
    await message(s1, admin.id, '2026-01-01T03:00:01Z', { role: 'assistant', agent: 'alpha', provider: 'openai', status: 'error', ms: 50 });
    const s2 = await session(other.userId, 'beta', '2026-01-01T03:30:00Z');
    await message(s2, other.userId, '2026-01-01T03:30:00Z', { role: 'user' });
    await message(s2, other.userId, '2026-01-01T03:30:01Z', { role: 'assistant', agent: 'beta', provider: 'anthropic', prompt: 5, completion: 5, total: 10, ftt: 300, ms: 3000 });
    await message(s2, other.userId, '2026-01-01T05:00:00Z', { role: 'user' });
    await message(s2, other.userId, '2026-01-01T05:00:01Z', { role: 'assistant', agent: 'beta', provider: 'anthropic', status: 'stopped', ftt: 200, ms: 500 });
    // Outside the range on both sides.
    const s3 = await session(admin.id, 'alpha', '2025-12-31T23:00:00Z');
    await message(s3, admin.id, '2025-12-31T23:30:00Z', { role: 'user' });
    await message(s3, admin.id, '2025-12-31T23:30:01Z', { role: 'assistant', agent: 'alpha', provider: 'openai', total: 999, ftt: 1, ms: 1 });
    await message(s3, admin.id, NEXT_DAY, { role: 'assistant', agent: 'alpha', provider: 'openai', total: 999, ftt: 1, ms: 1 });
  });
  afterAll(async () => {
    await t.close();
  });

  const usage = async (query: string, token = adminToken) => t.app.inject({ method: 'GET', url: `/api/admin/analytics/usage?${query}`, headers: bearer(token) });
  const report = async (query: string): Promise<UsageReport> => {
    const res = await usage(query);
    expect(res.statusCode, res.body).toBe(200);
    return res.json<{ data: UsageReport }>().data;
  };
  const range = `from=${encodeURIComponent(DAY)}&to=${encodeURIComponent(NEXT_DAY)}`;

  it('totals a range: turns, errors, tokens, people and latency percentiles', async () => {
    const r = await report(range);
    expect(r.range).toEqual({ from: DAY, to: NEXT_DAY, bucket: 'hour', agentId: null });
    expect(r.totals).toEqual({
      turns: 4,
      errors: 1,
      stopped: 1,
      errorRate: 0.25,
      promptTokens: 15,
      completionTokens: 25,
      totalTokens: 40,
      // First token over answers that had one (100, 200, 300); total time over complete answers (1000, 3000).
      firstTokenMs: { p50: 200, p95: 290, p99: 298 },
      totalMs: { p50: 2000, p95: 2900, p99: 2980 },
      conversations: 2,
      messages: 8,
      activeUsers: 2,
    });
  });

  it('gives one point per bucket, empty ones included', async () => {
    const r = await report(range);
    expect(r.series).toHaveLength(24);
    expect(r.series[0]?.t).toBe(DAY);
    const at = (hour: number) => r.series[hour];
    expect(at(1)).toEqual({ t: '2026-01-01T01:00:00.000Z', conversations: 1, messages: 2, turns: 1, errors: 0, totalTokens: 30 });
    expect(at(3)).toEqual({ t: '2026-01-01T03:00:00.000Z', conversations: 1, messages: 4, turns: 2, errors: 1, totalTokens: 10 });
    expect(at(5)).toMatchObject({ conversations: 0, messages: 2, turns: 1, errors: 0 });
    expect(r.series.reduce((n, p) => n + p.turns, 0)).toBe(4);
    expect(at(0)).toMatchObject({ conversations: 0, messages: 0, turns: 0 });

    const daily = await report(`${range}&bucket=day`);
    expect(daily.series).toEqual([{ t: DAY, conversations: 2, messages: 8, turns: 4, errors: 1, totalTokens: 40 }]);
  });

  it('breaks figures down per agent (with its name) and per provider', async () => {
    const r = await report(range);
    expect(r.byAgent.map((a) => [a.agentId, a.name, a.turns, a.errors, a.stopped, a.totalTokens])).toEqual([
      ['alpha', 'Agent alpha', 2, 1, 0, 30],
      ['beta', 'Agent beta', 2, 0, 1, 10],
    ]);
    expect(r.byAgent[0]?.errorRate).toBe(0.5);
    expect(r.byAgent[0]?.totalMs).toEqual({ p50: 1000, p95: 1000, p99: 1000 });
    expect(r.byProvider.map((p) => [p.provider, p.turns, p.firstTokenMs.p50])).toEqual([
      ['anthropic', 2, 250],
      ['openai', 2, 100],
    ]);
  });

  it('narrows everything to one agent', async () => {
    const r = await report(`${range}&agentId=beta`);
    expect(r.totals).toMatchObject({ turns: 2, errors: 0, stopped: 1, conversations: 1, messages: 4, activeUsers: 1, totalTokens: 10 });
    expect(r.byAgent.map((a) => a.agentId)).toEqual(['beta']);
    expect(r.byProvider.map((p) => p.provider)).toEqual(['anthropic']);
    const none = await report(`${range}&agentId=nobody`);
    expect(none.totals).toMatchObject({ turns: 0, errorRate: 0, firstTokenMs: { p50: null, p95: null, p99: null } });
  });

  it('defaults to the last 7 days by day', async () => {
    const r = await report('');
    expect(r.range.bucket).toBe('day');
    expect(r.series).toHaveLength(8);
    expect(r.totals.turns).toBe(0);
  });

  it('refuses bad ranges and unknown parameters with 400 and a stable code', async () => {
    const cases: [string, string][] = [
      [`from=${encodeURIComponent(NEXT_DAY)}&to=${encodeURIComponent(DAY)}`, 'INVALID_RANGE'],
      [`from=2026-01-01T00:00:00Z&to=2026-03-01T00:00:00Z&bucket=hour`, 'INVALID_RANGE'],
      ['from=yesterday', 'VALIDATION_FAILED'],
      ['bucket=week', 'VALIDATION_FAILED'],
      ['agentId=', 'VALIDATION_FAILED'],
      ['extra=1', 'VALIDATION_FAILED'],
    ];
    for (const [query, code] of cases) {
      const res = await usage(query);
      expect(res.statusCode, query).toBe(400);
      expect(res.json<{ error: { code: string } }>().error.code, query).toBe(code);
    }
  });

  it('is for admins only', async () => {
    expect((await usage(range, userToken)).statusCode).toBe(403);
    expect((await t.app.inject({ method: 'GET', url: `/api/admin/analytics/usage?${range}` })).statusCode).toBe(401);
  });
});
