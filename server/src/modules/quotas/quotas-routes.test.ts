import crypto from 'node:crypto';
import { sql } from 'kysely';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createMockUpstream, type MockUpstream } from '../../../../tools/src/mock-upstream/index.js';
import { bearer, buildTestApp, createUserAndLogin, login, type TestApp } from '../../test/app.js';
import { backendNames } from '../../test/backends.js';
import { eventually, parseSse } from '../../test/sse.js';
import { createChatRepository } from '../chat/chat-repository.js';
import { estimatePromptTokens, estimateTokens, turnBudgets } from './token-budgets.js';

/**
 * Finding 4 of issue 14, tried as an attack against the running app: a user
 * with a daily quota of 1 ran three turns of 26 tokens each. Budgets (the
 * user's own, else the platform's; daily and monthly; the agent's) are now
 * reserved before the upstream call, settled to the real usage after it,
 * and refused with 429 QUOTA_EXCEEDED once used up.
 */
describe.each(await backendNames())('token quotas and budgets on %s', (backendName) => {
  let t: TestApp;
  let mock: MockUpstream;
  let admin: string;
  const PLATFORM_DAILY = 5_000;

  beforeAll(async () => {
    mock = await createMockUpstream({ port: 0, host: '127.0.0.1', defaultChunks: 5, defaultIntervalMs: 1 });
    t = await buildTestApp(backendName, { DAILY_TOKEN_QUOTA: String(PLATFORM_DAILY), QUOTA_RESERVE_OUTPUT_TOKENS: '50' });
    admin = await login(t.app);
    await agent('plain');
  });
  afterAll(async () => {
    await t?.close();
    await mock?.close();
  });

  async function agent(id: string, rateLimit?: Record<string, number>): Promise<void> {
    const res = await t.app.inject({
      method: 'POST',
      url: '/api/agents',
      headers: bearer(admin),
      payload: { id, name: id, provider: 'openai', endpoint: `${mock.url}/v1/chat/completions`, apiKey: 'k', model: 'm', isActive: true, ...(rateLimit ? { rateLimit } : {}) },
    });
    expect(res.statusCode, res.body).toBe(201);
  }

  /** A new user with the given own budgets, once every part of this instance sees them. */
  async function user(budgets: { dailyTokenQuota?: number | null; monthlyTokenQuota?: number | null } = {}): Promise<{ token: string; userId: string }> {
    const u = await createUserAndLogin(t.app, admin, `q${crypto.randomBytes(5).toString('hex')}`);
    if (Object.keys(budgets).length > 0) {
      const res = await t.app.inject({ method: 'PATCH', url: `/api/admin/users/${u.userId}`, headers: bearer(admin), payload: budgets });
      expect(res.statusCode, res.body).toBe(200);
      await eventually(async () => {
        const own = t.app.deps.budgets.of(u.userId);
        return (budgets.dailyTokenQuota === undefined || own?.daily === budgets.dailyTokenQuota) && (budgets.monthlyTokenQuota === undefined || own?.monthly === budgets.monthlyTokenQuota);
      }, 'the budget directory to hold the new budgets');
    }
    return u;
  }

  function turn(token: string, agentId: string, question: string, extra: Record<string, unknown> = {}) {
    return t.app.inject({ method: 'POST', url: '/api/chat/completions', headers: bearer(token), payload: { agentId, messages: [{ role: 'user', content: question }], ...extra } });
  }

  async function messagesOf(userId: string, agentId?: string): Promise<{ n: number; tokens: number }> {
    let query = t.backend.database.db
      .selectFrom('messages')
      .select((eb) => [eb.fn.countAll<number>().as('n'), eb.fn.sum<number>('total_tokens').as('tokens')])
      .where('user_id', '=', userId);
    if (agentId !== undefined) query = query.where('agent_id', '=', agentId);
    const row = await query.executeTakeFirstOrThrow();
    return { n: Number(row.n), tokens: Number(row.tokens ?? 0) };
  }

  /** What the shared counter of a user's budget holds now. */
  async function counted(userId: string, agentId: string, scope: string, own: { daily: number | null; monthly: number | null }, rateLimit?: Record<string, number>): Promise<number> {
    const budget = turnBudgets(userId, agentId, own, rateLimit, t.config).find((b) => b.scope === scope);
    if (!budget) throw new Error(`no ${scope} budget applies`);
    const [n] = await t.backend.state.readCounters([budget.key]);
    return n ?? 0;
  }

  function secondsToUtcMidnight(at: number): number {
    const d = new Date(at);
    return Math.ceil((Date.UTC(d.getUTCFullYear(), d.getUTCMonth(), d.getUTCDate() + 1) - at) / 1000);
  }

  it('the reported attack: a daily quota of 1 lets one turn through, then refuses with 429 QUOTA_EXCEEDED until 00:00 UTC and writes nothing', async () => {
    const { token, userId } = await user({ dailyTokenQuota: 1 });
    const first = await turn(token, 'plain', 'first question');
    expect(first.statusCode, first.body).toBe(200);
    const afterFirst = await messagesOf(userId);
    expect(afterFirst.n).toBe(2);

    for (const url of ['/api/chat/completions', '/v1/chat/completions']) {
      const before = Date.now();
      const payload = url === '/v1/chat/completions' ? { model: 'plain', messages: [{ role: 'user', content: 'again' }] } : { agentId: 'plain', messages: [{ role: 'user', content: 'again' }], stream: true };
      const res = await t.app.inject({ method: 'POST', url, headers: bearer(token), payload });
      const after = Date.now();
      expect(res.statusCode, res.body).toBe(429);
      expect(res.json<{ error: { code: string } }>().error.code).toBe('QUOTA_EXCEEDED');
      const retryAfter = Number(res.headers['retry-after']);
      expect(retryAfter).toBeGreaterThanOrEqual(secondsToUtcMidnight(after));
      expect(retryAfter).toBeLessThanOrEqual(secondsToUtcMidnight(before));
      expect(res.headers['x-ratelimit-limit']).toBe('1');
      expect(res.headers['x-ratelimit-remaining']).toBe('0');
      expect(Number(res.headers['x-ratelimit-reset'])).toBe(Math.ceil(Date.UTC(new Date(after).getUTCFullYear(), new Date(after).getUTCMonth(), new Date(after).getUTCDate() + 1) / 1000));
    }
    // Neither regenerating the answer nor a personal API key gets around it.
    const chatId = first.json<{ data: { chatId: string } }>().data.chatId;
    const regenerate = await t.app.inject({ method: 'POST', url: `/api/chat/history/${chatId}/retry`, headers: bearer(token), payload: {} });
    expect(regenerate.statusCode, regenerate.body).toBe(429);
    expect(regenerate.json<{ error: { code: string } }>().error.code).toBe('QUOTA_EXCEEDED');
    const key = await t.app.inject({ method: 'POST', url: '/api/auth/api-keys', headers: bearer(token), payload: { name: 'script' } });
    expect(key.statusCode, key.body).toBe(201);
    const viaKey = await t.app.inject({ method: 'POST', url: '/v1/chat/completions', headers: bearer(key.json<{ data: { key: string } }>().data.key), payload: { model: 'plain', messages: [{ role: 'user', content: 'by key' }] } });
    expect(viaKey.statusCode, viaKey.body).toBe(429);
    // Refused before the turn is acknowledged: no question, no answer, no upstream call.
    expect(await messagesOf(userId)).toEqual(afterFirst);
    // The counter holds what the one answer used, as stored.
    expect(await counted(userId, 'plain', 'user-day', { daily: 1, monthly: null })).toBe(afterFirst.tokens);
  });

  it('a user without a quota of their own gets the platform one; their own 0 means unlimited', async () => {
    const platform = await user();
    const res = await turn(platform.token, 'plain', 'hello');
    expect(res.statusCode).toBe(200);
    expect(res.headers['x-ratelimit-limit']).toBe(String(PLATFORM_DAILY));
    expect(res.headers['x-ratelimit-remaining']).toBe(String(PLATFORM_DAILY));
    expect(res.headers['x-ratelimit-scope']).toBe('tokens-user-day');
    const firstTokens = (await messagesOf(platform.userId)).tokens;
    expect(firstTokens).toBeGreaterThan(0);
    const second = await turn(platform.token, 'plain', 'hello again');
    expect(second.headers['x-ratelimit-remaining']).toBe(String(PLATFORM_DAILY - firstTokens));

    const unlimited = await user({ dailyTokenQuota: 0 });
    const free = await turn(unlimited.token, 'plain', 'hello');
    expect(free.statusCode).toBe(200);
    // No limit applies (CHAT_RATE_LIMIT_PER_MINUTE is 0 in tests): no headers, and nothing was counted.
    expect(free.headers['x-ratelimit-limit']).toBeUndefined();
    expect(await counted(unlimited.userId, 'plain', 'user-day', { daily: null, monthly: null })).toBe(0);
  });

  it('a monthly quota refuses until the first of next month', async () => {
    const { token, userId } = await user({ monthlyTokenQuota: 1, dailyTokenQuota: 0 });
    expect((await turn(token, 'plain', 'one')).statusCode).toBe(200);
    const res = await turn(token, 'plain', 'two');
    const now = new Date();
    expect(res.statusCode).toBe(429);
    expect(res.json<{ error: { code: string } }>().error.code).toBe('QUOTA_EXCEEDED');
    expect(res.headers['x-ratelimit-scope']).toBe('tokens-user-month');
    expect(Number(res.headers['x-ratelimit-reset'])).toBe(Date.UTC(now.getUTCFullYear(), now.getUTCMonth() + 1, 1) / 1000);
    expect(Number(res.headers['retry-after'])).toBeGreaterThan(0);
    expect((await messagesOf(userId)).n).toBe(2);
  });

  it("an agent's tokensPerMinute is enforced for all users together, with Retry-After within the minute", async () => {
    await agent('tpm', { tokensPerMinute: 1 });
    const a = await user({ dailyTokenQuota: 0 });
    const b = await user({ dailyTokenQuota: 0 });
    const first = await turn(a.token, 'tpm', 'one');
    expect(first.statusCode).toBe(200);
    expect(first.headers['x-ratelimit-scope']).toBe('tokens-agent-minute');
    const res = await turn(b.token, 'tpm', 'two');
    expect(res.statusCode).toBe(429);
    expect(res.json<{ error: { code: string } }>().error.code).toBe('QUOTA_EXCEEDED');
    const retryAfter = Number(res.headers['retry-after']);
    expect(retryAfter).toBeGreaterThanOrEqual(1);
    expect(retryAfter).toBeLessThanOrEqual(60);
    expect((await messagesOf(b.userId)).n).toBe(0);
  });

  it("an agent's per-user daily budget stops one user and not another", async () => {
    const rateLimit = { tokensPerUserPerDay: 1 };
    await agent('per-user', rateLimit);
    const a = await user({ dailyTokenQuota: 0 });
    const b = await user({ dailyTokenQuota: 0 });
    expect((await turn(a.token, 'per-user', 'one')).statusCode).toBe(200);
    expect((await turn(a.token, 'per-user', 'two')).statusCode).toBe(429);
    expect((await turn(b.token, 'per-user', 'one')).statusCode).toBe(200);
    // The same user on another agent is not held by this agent's budget.
    expect((await turn(a.token, 'plain', 'elsewhere')).statusCode).toBe(200);
    expect(await counted(a.userId, 'per-user', 'agent-user-day', { daily: 0, monthly: null }, rateLimit)).toBe((await messagesOf(a.userId, 'per-user')).tokens);
  });

  it("an agent's daily total stops every user once used up", async () => {
    await agent('total', { tokensPerDay: 1 });
    const a = await user({ dailyTokenQuota: 0 });
    const b = await user({ dailyTokenQuota: 0 });
    expect((await turn(a.token, 'total', 'one')).statusCode).toBe(200);
    const res = await turn(b.token, 'total', 'one');
    expect(res.statusCode).toBe(429);
    expect(res.headers['x-ratelimit-scope']).toBe('tokens-agent-day');
  });

  it('20 concurrent turns at the edge of a budget overshoot it by at most one turn\'s estimate, and the counter ends at what is stored', async () => {
    const LIMIT = 200;
    const { token, userId } = await user({ dailyTokenQuota: LIMIT });
    const question = 'concurrent [[mock firstTokenDelay=100]]';
    const maxTokens = 30;
    const estimate = estimatePromptTokens([{ content: question }]) + maxTokens;
    const results = await Promise.all(Array.from({ length: 20 }, () => turn(token, 'plain', question, { maxTokens })));
    const statuses = results.map((r) => r.statusCode);
    const admitted = statuses.filter((s) => s === 200).length;
    expect(statuses.every((s) => s === 200 || s === 429), statuses.join(',')).toBe(true);
    expect(admitted).toBeGreaterThan(0);
    expect(admitted).toBeLessThan(20);
    for (const r of results.filter((x) => x.statusCode === 429)) expect(r.json<{ error: { code: string } }>().error.code).toBe('QUOTA_EXCEEDED');
    const stored = await messagesOf(userId);
    // Only admitted turns were written, each a question and an answer.
    expect(stored.n).toBe(2 * admitted);
    expect(stored.tokens).toBeGreaterThan(0);
    expect(stored.tokens - LIMIT).toBeLessThanOrEqual(estimate);
    // Every reservation was settled to the real usage: the counter is what the stored answers used.
    expect(await counted(userId, 'plain', 'user-day', { daily: LIMIT, monthly: null })).toBe(stored.tokens);
    // And no further turn gets through once it is spent.
    if (stored.tokens >= LIMIT) expect((await turn(token, 'plain', 'one more')).statusCode).toBe(429);
  });

  it('an answer that fails releases its reservation: a failed turn counts nothing', async () => {
    await agent('broken', undefined);
    const { token, userId } = await user({ dailyTokenQuota: 1_000 });
    const res = await turn(token, 'broken', 'fail please [[mock status=400]]');
    expect(res.statusCode).toBeGreaterThanOrEqual(400);
    const answer = await t.backend.database.db.selectFrom('messages').select(['id', 'status', 'total_tokens']).where('user_id', '=', userId).where('role', '=', 'assistant').executeTakeFirstOrThrow();
    expect(answer.status).toBe('error');
    expect(await counted(userId, 'broken', 'user-day', { daily: 1_000, monthly: null })).toBe(answer.total_tokens ?? 0);
    // Settled once: there is no reservation left to settle.
    expect(await t.backend.state.settleTurn(answer.id, 999)).toBe(false);
  });

  it('a stopped answer is settled to what it produced, not left at its reservation', async () => {
    const { token, userId } = await user({ dailyTokenQuota: 100_000 });
    const question = 'stop me [[mock chunks=3 stallAfter=2]]';
    // The stalled stream never ends by itself; inject returns once it does, so it is stopped from the side.
    const streaming = t.app.inject({ method: 'POST', url: '/api/chat/completions', headers: bearer(token), payload: { agentId: 'plain', stream: true, messages: [{ role: 'user', content: question }] } });
    // Stopped only once text went out: a stop before the first chunk would store an empty answer (a CI flake).
    const answer = await eventually(async () => {
      const m = await t.backend.database.db.selectFrom('messages').select('id').where('user_id', '=', userId).where('role', '=', 'assistant').executeTakeFirst();
      const generation = m && t.app.deps.chat.localGeneration(m.id);
      if (!generation) return undefined;
      let sentText = false;
      generation.subscribe(0, (event) => {
        if (event.event === 'chunk') sentText = true;
      })();
      return sentText ? m : undefined;
    }, 'the answer to have sent text');
    const stop = await t.app.inject({ method: 'POST', url: '/api/chat/stop', headers: bearer(token), payload: { messageId: answer.id } });
    expect(stop.statusCode).toBe(200);
    expect((await streaming).statusCode).toBe(200);
    const stored = await t.backend.database.db.selectFrom('messages').select(['status', 'content', 'total_tokens']).where('id', '=', answer.id).executeTakeFirstOrThrow();
    expect(stored.status).toBe('stopped');
    expect(stored.content.length).toBeGreaterThan(0);
    // Without the provider's figure, what was sent and received counts (never the 50-token answer reserved, never nothing).
    const expected = stored.total_tokens ?? estimatePromptTokens([{ content: question }]) + estimateTokens(stored.content);
    await eventually(async () => (await counted(userId, 'plain', 'user-day', { daily: 100_000, monthly: null })) === expected, 'the stopped answer to be settled');
    expect(await t.backend.state.settleTurn(answer.id, 999)).toBe(false);
  });

  it('a taken-over answer settles the reservation its dead instance made', async () => {
    const own = { daily: 100_000, monthly: null };
    const { userId } = await user({ dailyTokenQuota: own.daily });
    const repo = createChatRepository(t.backend.database, 'dead-instance');
    const turnId = crypto.randomUUID();
    await repo.createTurn({ userId, agentId: 'plain', sessionId: undefined, userMessageId: crypto.randomUUID(), assistantMessageId: turnId, userContent: 'finish me', title: 'finish me' });
    // The dead instance's admission: the same reservation it would have made.
    const buckets = turnBudgets(userId, 'plain', own, undefined, t.config);
    const reserved = 777;
    const admitted = await t.backend.state.admitTurn({ counters: [], buckets, reserve: reserved, reservationId: turnId, reservationTtlSeconds: 600 });
    expect(admitted.admitted).toBe(true);
    expect(await counted(userId, 'plain', 'user-day', own)).toBe(reserved);
    await sql`UPDATE messages SET updated_at = now() - interval '1 minute' WHERE id = ${turnId}`.execute(t.backend.database.db);
    await t.app.deps.chat.takeOverOrphans();
    const done = await eventually(async () => {
      const m = await t.backend.database.db.selectFrom('messages').select(['status', 'total_tokens']).where('id', '=', turnId).executeTakeFirstOrThrow();
      return m.status === 'streaming' ? undefined : m;
    }, 'the answer to be taken over and finished');
    expect(done.status).toBe('complete');
    const tokens = done.total_tokens ?? 0;
    expect(tokens).toBeGreaterThan(0);
    await eventually(async () => (await counted(userId, 'plain', 'user-day', own)) === tokens, 'the reservation to be settled to the stored usage');
  });

  it('rate-limit headers go with streamed and OpenAI-compatible answers too', async () => {
    const { token } = await user({ dailyTokenQuota: 10_000 });
    const streamed = await turn(token, 'plain', 'stream it', { stream: true });
    expect(streamed.statusCode).toBe(200);
    expect(parseSse(streamed.body).at(-1)?.event).toBe('end');
    expect(streamed.headers['x-ratelimit-limit']).toBe('10000');
    expect(streamed.headers['x-ratelimit-scope']).toBe('tokens-user-day');
    for (const stream of [false, true]) {
      const res = await t.app.inject({ method: 'POST', url: '/v1/chat/completions', headers: bearer(token), payload: { model: 'plain', stream, messages: [{ role: 'user', content: 'compat' }] } });
      expect(res.statusCode).toBe(200);
      expect(res.headers['x-ratelimit-limit']).toBe('10000');
      expect(Number(res.headers['x-ratelimit-remaining'])).toBeLessThan(10_000);
      expect(Number(res.headers['x-ratelimit-reset'])).toBeGreaterThan(Date.now() / 1000);
    }
  });

  it('users see their own usage and remaining budget in their profile; admins see everyone\'s', async () => {
    const { token, userId } = await user({ dailyTokenQuota: 10_000, monthlyTokenQuota: 0 });
    expect((await turn(token, 'plain', 'count me')).statusCode).toBe(200);
    const used = (await messagesOf(userId)).tokens;
    const profile = await t.app.inject({ method: 'GET', url: '/api/auth/profile', headers: bearer(token) });
    expect(profile.statusCode).toBe(200);
    const usage = profile.json<{ data: { tokenUsage: { daily: { limit: number; used: number; remaining: number; own: boolean }; monthly: { limit: number | null; used: number | null } } } }>().data.tokenUsage;
    expect(usage.daily).toMatchObject({ limit: 10_000, used, remaining: 10_000 - used, own: true });
    expect(usage.monthly).toMatchObject({ limit: null, used: null });

    const list = await t.app.inject({ method: 'GET', url: `/api/admin/users?pageSize=100`, headers: bearer(admin) });
    const row = list.json<{ data: { items: { id: string; tokenUsage: { daily: { used: number } } }[] } }>().data.items.find((i) => i.id === userId);
    expect(row?.tokenUsage.daily.used).toBe(used);
    // Not another user's business.
    expect((await t.app.inject({ method: 'GET', url: '/api/admin/users', headers: bearer(token) })).statusCode).toBe(403);
  });
});
