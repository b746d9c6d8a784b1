import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createMockUpstream } from '../../../../tools/src/mock-upstream/index.js';
import { backendNames } from '../../test/backends.js';
import { bearer, buildTestApp, createUserAndLogin, login, type TestApp } from '../../test/app.js';
import { eventually, parseSse } from '../../test/sse.js';

/**
 * Our own queue to an upstream is never an upstream failure: with every
 * slot to the agent's upstream taken (UPSTREAM_CONNECTIONS) for longer than
 * UPSTREAM_QUEUE_TIMEOUT_MS, a new turn is refused before it is
 * acknowledged (503 UPSTREAM_BUSY with Retry-After, nothing written, no
 * failed attempt, no breaker count); once a slot frees up, turns go
 * through again.
 */
describe.each(await backendNames())('a new turn when every upstream slot is taken, on %s', (backendName) => {
  let t: TestApp;
  let mock: Awaited<ReturnType<typeof createMockUpstream>>;
  let admin: string;
  let alice: string;

  beforeAll(async () => {
    mock = await createMockUpstream({ port: 0, host: '127.0.0.1', defaultChunks: 3, defaultIntervalMs: 2 });
    t = await buildTestApp(backendName, { UPSTREAM_CONNECTIONS: '2', UPSTREAM_QUEUE_TIMEOUT_MS: '200', BREAKER_FAILURE_THRESHOLD: '1' });
    admin = await login(t.app);
    alice = (await createUserAndLogin(t.app, admin, 'alice')).token;
    const res = await t.app.inject({
      method: 'POST',
      url: '/api/agents',
      headers: bearer(admin),
      payload: { id: 'queued', name: 'queued', provider: 'openai', endpoint: `${mock.url}/v1/chat/completions`, model: 'queued-m', apiKey: 'k' },
    });
    if (res.statusCode !== 201) throw new Error(`agent create failed: ${res.statusCode} ${res.body}`);
  });
  afterAll(async () => {
    await t?.close();
    await mock?.close();
  });

  const turn = (text: string) => t.app.inject({ method: 'POST', url: '/api/chat/completions', headers: bearer(alice), payload: { agentId: 'queued', stream: true, messages: [{ role: 'user', content: text }] } });
  const counts = async () => {
    const db = t.backend.database.db;
    const messages = await db.selectFrom('messages').select((eb) => eb.fn.countAll<string>().as('n')).executeTakeFirstOrThrow();
    const sessions = await db.selectFrom('chat_sessions').select((eb) => eb.fn.countAll<string>().as('n')).executeTakeFirstOrThrow();
    await t.app.deps.failures.settled();
    const failures = await db.selectFrom('upstream_failures').select((eb) => eb.fn.countAll<string>().as('n')).executeTakeFirstOrThrow();
    return { messages: Number(messages.n), sessions: Number(sessions.n), failures: Number(failures.n) };
  };

  it('is refused with 503 UPSTREAM_BUSY and Retry-After, writes nothing and counts nothing against the upstream; later turns go through', async () => {
    // Two long answers hold both slots.
    const long = [turn('one [[mock chunks=40 interval=100]]'), turn('two [[mock chunks=40 interval=100]]')];
    // Streaming at the mock is not yet written here: a new session's upstream call starts while its turn is written (early start).
    await eventually(async () => mock.stats().inFlight === 2 && (await counts()).messages === 4, 'both long answers streaming and written');
    const before = await counts();

    const refused = await turn('three');
    expect(refused.statusCode).toBe(503);
    expect(refused.headers['retry-after']).toBe('1');
    expect(refused.json()).toMatchObject({ error: { code: 'UPSTREAM_BUSY' } });
    expect(await counts()).toEqual(before);
    expect(mock.stats().requests).toBe(2);

    // The running answers were not disturbed, and once they end the agent takes turns again.
    for (const res of await Promise.all(long)) {
      expect(res.statusCode).toBe(200);
      expect(parseSse(res.body).at(-1)?.json).toMatchObject({ status: 'complete' });
    }
    const later = await turn('four');
    expect(parseSse(later.body).at(-1)?.json).toMatchObject({ status: 'complete' });
    // The breaker (threshold 1) never opened: the refusal was ours, not the upstream's.
    const status = await t.app.inject({ method: 'GET', url: '/api/agents/queued/status', headers: bearer(admin) });
    const endpoints = status.json<{ data: { endpoints: { breaker?: { state: string } }[] } }>().data.endpoints;
    expect(endpoints.map((e) => e.breaker?.state ?? 'closed')).toEqual(['closed']);
    expect((await counts()).failures).toBe(before.failures);
  });

  it('/health/detailed shows the slots per upstream origin and the open file descriptors against the limit', async () => {
    const res = await t.app.inject({ method: 'GET', url: '/health/detailed', remoteAddress: '127.0.0.1' });
    const load = res.json<{ load: { upstreamSlots: { origin: string; capacity: number; used: number; waiting: number }[]; fileDescriptors: { open: number; limit: number | null } | null } }>().load;
    expect(load.upstreamSlots).toContainEqual({ origin: new URL(mock.url).origin, capacity: 2, used: 0, waiting: 0 });
    if (process.platform === 'linux') {
      expect(load.fileDescriptors?.open).toBeGreaterThan(0);
      expect(load.fileDescriptors?.limit ?? Number.POSITIVE_INFINITY).toBeGreaterThan(load.fileDescriptors?.open ?? 0);
    }
  });
});
