import type { FastifyInstance } from 'fastify';
import pino from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createMockUpstream } from '../../../../tools/src/mock-upstream/index.js';
import { buildApp } from '../../app.js';
import { MemoryState } from '../../shared-state/memory-state.js';
import { RedisState } from '../../shared-state/redis-state.js';
import type { SharedState } from '../../shared-state/shared-state.js';
import { backendNames } from '../../test/backends.js';
import { bearer, buildTestApp, login, type TestApp } from '../../test/app.js';
import { createScriptedUpstream, type ScriptedUpstream } from '../../test/scripted-upstream.js';
import { eventually, parseSse } from '../../test/sse.js';

type Mock = Awaited<ReturnType<typeof createMockUpstream>>;

/**
 * Breakers through the chat API across two app instances on one database
 * and one shared state (one MemoryState object, or two Redis clients on one
 * key prefix), and the way back: cool-down, one probe, closed.
 */
describe.each(await backendNames())('breakers shared by instances on %s', (backendName) => {
  let a: TestApp;
  let b: FastifyInstance;
  let bState: SharedState;
  let mock: Mock;
  let admin: string;
  const proxies: ScriptedUpstream[] = [];
  const env = { UPSTREAM_RETRY_BASE_MS: '0', UPSTREAM_MAX_ATTEMPTS: '1', BREAKER_FAILURE_THRESHOLD: '2', BREAKER_COOLDOWN_MS: '3000' };
  const tokens = new Map<FastifyInstance, string>();

  beforeAll(async () => {
    mock = await createMockUpstream({ port: 0, host: '127.0.0.1', defaultChunks: 4, defaultIntervalMs: 1 });
    a = await buildTestApp(backendName, env);
    const { backend } = a;
    bState = backend.state instanceof MemoryState ? backend.state : new RedisState(backend.redisUrl ?? '', backend.redisPrefix ?? '');
    b = await buildApp({ config: a.config, database: backend.database, state: bState, logger: pino({ level: 'silent' }), logRequests: false });
    admin = await login(a.app);
  });

  afterAll(async () => {
    for (const p of proxies) await p.close();
    await b?.close();
    if (bState && bState !== a?.backend.state) await bState.close();
    await a?.close();
    await mock?.close();
  });

  async function agentOn(id: string, primaryUrl: string, model: string): Promise<void> {
    const res = await a.app.inject({
      method: 'POST',
      url: '/api/agents',
      headers: bearer(admin),
      payload: { id, name: id, provider: 'openai', endpoint: primaryUrl, model, apiKey: 'k', fallbacks: [{ provider: 'openai', endpoint: `${mock.url}/v1/chat/completions`, model: `${model}-fallback`, apiKey: 'k' }] },
    });
    expect(res.statusCode).toBe(201);
    // The other instance learns of the agent through the agents-changed notice.
    await eventually(async () => b.deps.agents.find(id), `instance b knows agent ${id}`);
  }

  async function tokenFor(app: FastifyInstance): Promise<string> {
    const known = tokens.get(app);
    if (known) return known;
    const token = await login(app);
    tokens.set(app, token);
    return token;
  }

  async function turnOn(app: FastifyInstance, agentId: string, text: string) {
    const token = await tokenFor(app);
    const res = await app.inject({ method: 'POST', url: '/api/chat/completions', headers: bearer(token), payload: { agentId, stream: true, messages: [{ role: 'user', content: text }] } });
    const events = parseSse(res.body);
    const turnId = (events[0]?.json as { messageId: string }).messageId;
    const row = await a.backend.database.db.selectFrom('messages').selectAll().where('id', '=', turnId).executeTakeFirstOrThrow();
    return { events, row };
  }

  async function breakerState(app: FastifyInstance, agentId: string): Promise<string | undefined> {
    const token = await tokenFor(app);
    const res = await app.inject({ method: 'GET', url: `/api/agents/${agentId}/status`, headers: bearer(token) });
    return res.json<{ data: { endpoints: { breaker?: { state: string } }[] } }>().data.endpoints[0]?.breaker?.state;
  }

  it('failures seen by two instances open one breaker, and both then skip the endpoint', async () => {
    const proxy = await createScriptedUpstream(mock.url, ['status=503', 'status=503']);
    proxies.push(proxy);
    await agentOn('shared', `${proxy.url}/v1/chat/completions`, 'shared');
    // One failure on each instance: together they reach the threshold of 2.
    expect((await turnOn(a.app, 'shared', 'one')).row.model).toBe('shared-fallback');
    expect((await turnOn(b, 'shared', 'two')).row.model).toBe('shared-fallback');
    expect(proxy.count).toBe(2);
    expect(await breakerState(a.app, 'shared')).toBe('open');
    expect(await breakerState(b, 'shared')).toBe('open');
    // Instance a cached the breaker as closed after its own failure; the change notice makes it skip the endpoint too.
    await eventually(async () => (await turnOn(a.app, 'shared', 'three')).row.model === 'shared-fallback' && proxy.count === 2, 'instance a skips the open endpoint');
    expect((await turnOn(b, 'shared', 'four')).row.model).toBe('shared-fallback');
    expect(proxy.count).toBe(2);
  });

  it('after the cool-down one probe reaches the recovered endpoint and closes the breaker for every instance', async () => {
    const proxy = await createScriptedUpstream(mock.url, ['status=503', 'status=503']);
    proxies.push(proxy);
    await agentOn('heals', `${proxy.url}/v1/chat/completions`, 'heals');
    await turnOn(a.app, 'heals', 'one');
    await turnOn(b, 'heals', 'two');
    expect(await breakerState(a.app, 'heals')).toBe('open');
    // The proxy now passes calls through: the endpoint has recovered. Turns go to the fallback until the probe.
    const served = await eventually(async () => {
      const { row } = await turnOn(b, 'heals', 'probe?');
      return row.model === 'heals' ? row : undefined;
    }, 'a turn served by the recovered primary');
    expect(served.status).toBe('complete');
    expect(proxy.count).toBe(3);
    expect(await breakerState(a.app, 'heals')).toBe('closed');
    expect((await turnOn(a.app, 'heals', 'after')).row.model).toBe('heals');
  });
});
