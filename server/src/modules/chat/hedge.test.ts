import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createMockUpstream } from '../../../../tools/src/mock-upstream/index.js';
import { backendNames } from '../../test/backends.js';
import { bearer, buildTestApp, createUserAndLogin, login, type TestApp } from '../../test/app.js';
import { eventually, parseSse, type ParsedEvent } from '../../test/sse.js';

/**
 * Hedged first token (issue 17, item 3) through the chat API, against the
 * mock upstream's slow-first-token fault: who answered, what was stored and
 * billed, which upstream calls were aborted, and what the failure log
 * shows. No timed assertion: a 20 s first token that is not waited out is
 * proved by the fallback's answer and the primary's aborted request.
 */

type Mock = Awaited<ReturnType<typeof createMockUpstream>>;

/** Deadlines no loaded test machine misses. */
const RELAXED = { connectMs: 30_000, firstTokenMs: 60_000, idleMs: 30_000 };

function chunkText(events: ParsedEvent[]): string {
  return events
    .filter((e) => e.event === 'chunk')
    .map((e) => (e.json as { content: string }).content)
    .join('');
}

describe.each(await backendNames())('hedged first token on %s', (backendName) => {
  let t: TestApp;
  let mock: Mock;
  let admin: string;
  let alice: string;

  beforeAll(async () => {
    mock = await createMockUpstream({ port: 0, host: '127.0.0.1', defaultChunks: 4, defaultIntervalMs: 2 });
    t = await buildTestApp(backendName, { UPSTREAM_RETRY_BASE_MS: '0', UPSTREAM_MAX_ATTEMPTS: '2' });
    admin = await login(t.app);
    alice = (await createUserAndLogin(t.app, admin, 'alice')).token;
  });

  afterAll(async () => {
    await t?.close();
    await mock?.close();
  });

  const openai = (fault = '') => `${mock.url}${fault ? `/fault/${fault}` : ''}/v1/chat/completions`;

  async function agent(id: string, primary: { fault: string; model: string }, fallback: { fault: string; model: string }, hedge: unknown): Promise<void> {
    const res = await t.app.inject({
      method: 'POST',
      url: '/api/agents',
      headers: bearer(admin),
      payload: {
        id,
        name: id,
        provider: 'openai',
        endpoint: openai(primary.fault),
        model: primary.model,
        apiKey: 'k',
        timeouts: RELAXED,
        fallbacks: [{ provider: 'openai', endpoint: openai(fallback.fault), model: fallback.model, apiKey: 'k', timeouts: RELAXED }],
        ...(hedge === undefined ? {} : { hedge }),
      },
    });
    if (res.statusCode !== 201) throw new Error(`agent create failed: ${res.statusCode} ${res.body}`);
  }

  async function turn(agentId: string, stream = true) {
    const res = await t.app.inject({ method: 'POST', url: '/api/chat/completions', headers: bearer(alice), payload: { agentId, stream, messages: [{ role: 'user', content: 'hello' }] } });
    const events = stream ? parseSse(res.body) : [];
    const turnId = stream ? (events[0]?.json as { messageId: string } | undefined)?.messageId : res.json<{ data?: { messageId: string } }>().data?.messageId;
    if (!turnId) throw new Error(`no turn id: ${res.body.slice(0, 300)}`);
    return { res, events, turnId };
  }

  const callsTo = (model: string) => mock.requests.filter((r) => (r.body as { model?: string } | undefined)?.model === model).length;
  const stored = (turnId: string) => t.backend.database.db.selectFrom('messages').selectAll().where('id', '=', turnId).executeTakeFirstOrThrow();
  async function attempts(turnId: string) {
    await t.app.deps.failures.settled();
    return t.backend.database.db.selectFrom('upstream_failures').selectAll().where('message_id', '=', turnId).orderBy('id').execute();
  }
  const endOf = (events: ParsedEvent[]) => (events.at(-1)?.json as { status: string }).status;
  const endpointIds = async (agentId: string) => (await t.backend.database.db.selectFrom('agent_endpoints').select(['id', 'position']).where('agent_id', '=', agentId).orderBy('position').execute()).map((e) => e.id);

  it('a 20 s first token is answered by the fallback after the hedge wait; the slow call is aborted, recorded as hedge_lost and not a breaker failure', async () => {
    await agent('hedge-slow', { fault: 'firstTokenDelay=20000', model: 'hs-p' }, { fault: '', model: 'hs-f' }, { afterMs: 2000 });
    const abortedBefore = mock.stats().aborted;
    const { events, turnId } = await turn('hedge-slow');
    expect(endOf(events)).toBe('complete');
    // One seamless answer: the primary never sent a token, so there is nothing to take back.
    expect(events.map((e) => e.event)).not.toContain('reset');
    expect(callsTo('hs-p')).toBe(1);
    expect(callsTo('hs-f')).toBe(1);
    const row = await stored(turnId);
    expect(row).toMatchObject({ status: 'complete', model: 'hs-f', content: chunkText(events) });
    const [primaryId, fallbackId] = await endpointIds('hedge-slow');
    expect(row.endpoint_id).toBe(fallbackId);
    // The primary's request was cancelled (the mock saw its client go away), well before its 20 s first token.
    await eventually(() => Promise.resolve(mock.stats().aborted > abortedBefore), 'the slow call aborted');
    const failed = await attempts(turnId);
    expect(failed).toHaveLength(1);
    expect(failed[0]).toMatchObject({ endpoint_id: primaryId, kind: 'hedge_lost', error_code: 'HEDGE_LOST', mid_answer: false });
    const status = await t.app.inject({ method: 'GET', url: '/api/agents/hedge-slow/status', headers: bearer(admin) });
    const breakers = status.json<{ data: { endpoints: { breaker?: { state: string } }[] } }>().data.endpoints.map((e) => e.breaker?.state);
    expect(breakers).toEqual(['closed', 'closed']);
    const snapshot = (await t.app.deps.breakers.snapshots([primaryId as string]))[0];
    expect(snapshot?.failures ?? 0).toBe(0);
  });

  it('a blocking turn is hedged the same way', async () => {
    await agent('hedge-block', { fault: 'firstTokenDelay=20000', model: 'hb-p' }, { fault: '', model: 'hb-f' }, { afterMs: 2000 });
    const { res, turnId } = await turn('hedge-block', false);
    expect(res.statusCode).toBe(200);
    expect((await stored(turnId)).model).toBe('hb-f');
    expect((await attempts(turnId)).map((f) => f.kind)).toEqual(['hedge_lost']);
  });

  it('without hedging the slow first token is waited out: no second call', async () => {
    await agent('hedge-off', { fault: 'firstTokenDelay=3000', model: 'ho-p' }, { fault: '', model: 'ho-f' }, undefined);
    const { events, turnId } = await turn('hedge-off');
    expect(endOf(events)).toBe('complete');
    expect(callsTo('ho-p')).toBe(1);
    expect(callsTo('ho-f')).toBe(0);
    expect((await stored(turnId)).model).toBe('ho-p');
    expect(await attempts(turnId)).toEqual([]);
  });

  it('a primary that answers first after all serves and is billed; the slower fallback is aborted', async () => {
    // The hedge starts the fallback at 1 s; the primary's token comes at 3 s, the fallback's at 20 s.
    await agent('hedge-primary', { fault: 'firstTokenDelay=3000', model: 'hp-p' }, { fault: 'firstTokenDelay=20000', model: 'hp-f' }, { afterMs: 1000 });
    const abortedBefore = mock.stats().aborted;
    const { events, turnId } = await turn('hedge-primary');
    expect(endOf(events)).toBe('complete');
    expect(callsTo('hp-p')).toBe(1);
    expect(callsTo('hp-f')).toBe(1);
    const row = await stored(turnId);
    const [primaryId, fallbackId] = await endpointIds('hedge-primary');
    expect(row).toMatchObject({ model: 'hp-p', endpoint_id: primaryId, content: chunkText(events) });
    expect(row.prompt_tokens).toBeGreaterThan(0);
    const usage = events.find((e) => e.event === 'usage')?.json as { prompt_tokens: number } | undefined;
    expect(usage?.prompt_tokens).toBe(row.prompt_tokens);
    await eventually(() => Promise.resolve(mock.stats().aborted > abortedBefore), 'the slower fallback aborted');
    expect((await attempts(turnId)).map((f) => [f.endpoint_id, f.kind])).toEqual([[fallbackId, 'hedge_lost']]);
  });

  it('both calls failing ends with the usual error', async () => {
    // The primary fails after the hedge started, the fallback fails too: the turn ends as without hedging.
    await agent('hedge-both', { fault: 'headersDelay=1500,status=500', model: 'hx-p' }, { fault: 'status=500', model: 'hx-f' }, { afterMs: 500 });
    const { events, turnId } = await turn('hedge-both');
    expect(endOf(events)).toBe('error');
    const error = events.find((e) => e.event === 'error')?.json as { code: string };
    expect(error.code).toBe('UPSTREAM_ERROR');
    const row = await stored(turnId);
    expect(row.status).toBe('error');
    const failed = await attempts(turnId);
    expect(failed.every((f) => f.kind === 'http' && f.status === 500)).toBe(true);
    expect(failed.length).toBeGreaterThanOrEqual(2);
    expect(callsTo('hx-f')).toBe(1);
  });

  it('rejects a bad hedge setting with 400 and accepts null to switch it off', async () => {
    for (const hedge of [{ afterMs: 0 }, { afterMs: 'p50' }, { afterMs: 1000, extra: 1 }, { after: 1000 }]) {
      const res = await t.app.inject({ method: 'POST', url: '/api/agents', headers: bearer(admin), payload: { id: 'hedge-bad', name: 'x', provider: 'openai', endpoint: openai(), model: 'm', hedge } });
      expect(res.statusCode, JSON.stringify(hedge)).toBe(400);
    }
    await agent('hedge-edit', { fault: '', model: 'he-p' }, { fault: '', model: 'he-f' }, { afterMs: 'p95' });
    const view = async () => (await t.app.inject({ method: 'GET', url: '/api/agents/hedge-edit', headers: bearer(admin) })).json<{ data: { hedge?: unknown } }>().data.hedge;
    expect(await view()).toEqual({ afterMs: 'p95' });
    const patched = await t.app.inject({ method: 'PATCH', url: '/api/agents/hedge-edit', headers: bearer(admin), payload: { hedge: null } });
    expect(patched.statusCode).toBe(200);
    expect(await view()).toBeUndefined();
  });
});
