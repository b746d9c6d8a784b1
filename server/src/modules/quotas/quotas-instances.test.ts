import type { FastifyInstance } from 'fastify';
import pino from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createMockUpstream, type MockUpstream } from '../../../../tools/src/mock-upstream/index.js';
import { buildApp } from '../../app.js';
import { bearer, buildTestApp, createUserAndLogin, login, testConfig, type TestApp } from '../../test/app.js';
import { backendNames, createBackend, type Backend } from '../../test/backends.js';
import { eventually } from '../../test/sse.js';
import { MemoryState } from '../../shared-state/memory-state.js';
import { RedisState } from '../../shared-state/redis-state.js';
import type { SharedState } from '../../shared-state/shared-state.js';
import { estimatePromptTokens } from './token-budgets.js';

/**
 * Budgets hold across instances: a quota set on one instance is enforced by
 * the other (the users-changed notice reloads its in-memory copy), and both
 * count in the one shared counter, so turns spread over two instances at the
 * edge of a budget still overshoot it by at most one turn's estimate.
 */
describe.each(await backendNames())('token budgets across two instances on %s', (backendName) => {
  let a: TestApp;
  let b: FastifyInstance;
  let bState: SharedState;
  let mock: MockUpstream;
  let admin: string;

  beforeAll(async () => {
    mock = await createMockUpstream({ port: 0, host: '127.0.0.1', defaultChunks: 5, defaultIntervalMs: 1 });
    a = await buildTestApp(backendName, { QUOTA_RESERVE_OUTPUT_TOKENS: '50' });
    const { backend } = a;
    bState = backend.state instanceof MemoryState ? backend.state : new RedisState(backend.redisUrl ?? '', backend.redisPrefix ?? '');
    b = await buildApp({ config: a.config, database: backend.database, state: bState, logger: pino({ level: 'silent' }), logRequests: false });
    admin = await login(a.app);
    const res = await a.app.inject({ method: 'POST', url: '/api/agents', headers: bearer(admin), payload: { id: 'plain', name: 'plain', provider: 'openai', endpoint: `${mock.url}/v1/chat/completions`, apiKey: 'k', model: 'm' } });
    expect(res.statusCode).toBe(201);
    await eventually(async () => b.deps.agents.find('plain'), 'instance b to know the agent');
  });

  afterAll(async () => {
    await b?.close();
    if (bState && bState !== a?.backend.state) await bState.close();
    await a?.close();
    await mock?.close();
  });

  const turn = (app: FastifyInstance, token: string, question: string, maxTokens?: number) =>
    app.inject({ method: 'POST', url: '/api/chat/completions', headers: bearer(token), payload: { agentId: 'plain', messages: [{ role: 'user', content: question }], ...(maxTokens ? { maxTokens } : {}) } });

  it('a quota set on one instance is enforced by the other, against the one shared count', async () => {
    const { token, userId } = await createUserAndLogin(a.app, admin, 'spread1');
    const patched = await a.app.inject({ method: 'PATCH', url: `/api/admin/users/${userId}`, headers: bearer(admin), payload: { dailyTokenQuota: 1 } });
    expect(patched.statusCode).toBe(200);
    await eventually(async () => b.deps.budgets.of(userId)?.daily === 1, 'instance b to hear of the new quota');
    expect((await turn(a.app, token, 'on a')).statusCode).toBe(200);
    const refused = await turn(b, token, 'on b');
    expect(refused.statusCode).toBe(429);
    expect(refused.json<{ error: { code: string } }>().error.code).toBe('QUOTA_EXCEEDED');

    // Lifting it on b frees the user on a.
    expect((await b.inject({ method: 'PATCH', url: `/api/admin/users/${userId}`, headers: bearer(admin), payload: { dailyTokenQuota: 0 } })).statusCode).toBe(200);
    await eventually(async () => a.app.deps.budgets.of(userId)?.daily === 0, 'instance a to hear the quota was lifted');
    expect((await turn(a.app, token, 'free again')).statusCode).toBe(200);
  });

  it('20 concurrent turns over both instances at the edge of a budget overshoot it by at most one estimate', async () => {
    const LIMIT = 150;
    const { token, userId } = await createUserAndLogin(a.app, admin, 'spread2');
    expect((await a.app.inject({ method: 'PATCH', url: `/api/admin/users/${userId}`, headers: bearer(admin), payload: { dailyTokenQuota: LIMIT } })).statusCode).toBe(200);
    await eventually(async () => b.deps.budgets.of(userId)?.daily === LIMIT && a.app.deps.budgets.of(userId)?.daily === LIMIT, 'both instances to hold the quota');
    const question = 'spread [[mock firstTokenDelay=100]]';
    const estimate = estimatePromptTokens([{ content: question }]) + 30;
    const results = await Promise.all(Array.from({ length: 20 }, (_, i) => turn(i % 2 === 0 ? a.app : b, token, question, 30)));
    const admitted = results.filter((r) => r.statusCode === 200).length;
    expect(results.every((r) => r.statusCode === 200 || r.statusCode === 429)).toBe(true);
    expect(admitted).toBeGreaterThan(0);
    expect(admitted).toBeLessThan(20);
    const stored = await a.backend.database.db
      .selectFrom('messages')
      .select((eb) => [eb.fn.countAll<number>().as('n'), eb.fn.sum<number>('total_tokens').as('tokens')])
      .where('user_id', '=', userId)
      .executeTakeFirstOrThrow();
    expect(Number(stored.n)).toBe(2 * admitted);
    expect(Number(stored.tokens) - LIMIT).toBeLessThanOrEqual(estimate);
  });
});

/** Calls of the limit-related shared-state commands, made through a wrapper around the real state. */
function countingState(state: SharedState): { state: SharedState; calls: Map<string, number> } {
  const calls = new Map<string, number>();
  const counted = new Set(['admitTurn', 'settleTurn', 'hit', 'readCounters']);
  const proxy = new Proxy(state, {
    get(target, prop) {
      const value: unknown = Reflect.get(target, prop, target);
      if (typeof value !== 'function') return value;
      return (...args: unknown[]) => {
        if (counted.has(String(prop))) calls.set(String(prop), (calls.get(String(prop)) ?? 0) + 1);
        return (value as (...a: unknown[]) => unknown).apply(target, args);
      };
    },
  });
  return { state: proxy, calls };
}

describe.each(await backendNames())('what a chat turn costs in shared-state round trips on %s', (backendName) => {
  let backend: Backend;
  let mock: MockUpstream;
  let app: FastifyInstance;
  let calls: Map<string, number>;
  let admin: string;

  beforeAll(async () => {
    mock = await createMockUpstream({ port: 0, host: '127.0.0.1', defaultChunks: 3, defaultIntervalMs: 1 });
    backend = await createBackend(backendName);
    const counting = countingState(backend.state);
    calls = counting.calls;
    app = await buildApp({ config: testConfig(), database: backend.database, state: counting.state, logger: pino({ level: 'silent' }), logRequests: false });
    admin = await login(app);
    for (const [id, rateLimit] of [['free', undefined], ['per-minute', { requestsPerMinute: 1000 }]] as const) {
      const res = await app.inject({ method: 'POST', url: '/api/agents', headers: bearer(admin), payload: { id, name: id, provider: 'openai', endpoint: `${mock.url}/v1/chat/completions`, apiKey: 'k', model: 'm', ...(rateLimit ? { rateLimit } : {}) } });
      expect(res.statusCode).toBe(201);
    }
  });

  afterAll(async () => {
    await app?.close();
    await backend?.dispose();
    await mock?.close();
  });

  /** Limit-related calls a finished turn made, its settlement included. */
  async function callsOfTurn(token: string, agentId: string): Promise<Record<string, number>> {
    calls.clear();
    const res = await app.inject({ method: 'POST', url: '/api/chat/completions', headers: bearer(token), payload: { agentId, messages: [{ role: 'user', content: 'how much' }] } });
    expect(res.statusCode).toBe(200);
    // The settlement is sent as the answer is stored, before this response.
    return Object.fromEntries(calls);
  }

  it('no budget and no per-minute limit: none', async () => {
    const { token } = await createUserAndLogin(app, admin, 'nobudget');
    expect(await callsOfTurn(token, 'free')).toEqual({});
  });

  it('only a per-minute limit: one admission, no settlement', async () => {
    const { token } = await createUserAndLogin(app, admin, 'limited');
    expect(await callsOfTurn(token, 'per-minute')).toEqual({ admitTurn: 1 });
  });

  it('a budget and a per-minute limit: one admission that does both, and one settlement', async () => {
    const { token, userId } = await createUserAndLogin(app, admin, 'budgeted');
    expect((await app.inject({ method: 'PATCH', url: `/api/admin/users/${userId}`, headers: bearer(admin), payload: { dailyTokenQuota: 100_000 } })).statusCode).toBe(200);
    await eventually(async () => app.deps.budgets.of(userId)?.daily === 100_000, 'the directory to hold the quota');
    expect(await callsOfTurn(token, 'per-minute')).toEqual({ admitTurn: 1, settleTurn: 1 });
  });
});
