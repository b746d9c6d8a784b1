import crypto from 'node:crypto';
import { sql } from 'kysely';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createMockUpstream, type MockUpstream } from '../../../tools/src/mock-upstream/index.js';
import { portAllocator } from '../../../tools/src/local-cluster/ports.js';
import { createChatRepository } from '../modules/chat/chat-repository.js';
import { bearer, buildTestApp, login, type TestApp } from '../test/app.js';
import { backendNames } from '../test/backends.js';
import { startOtlpReceiver, type OtlpReceiver, type ReceivedSpan } from '../../../tools/src/otlp-sink/receiver.js';
import { eventually, parseSse } from '../test/sse.js';

/**
 * Tracing end to end: a real app exports over OTLP/HTTP (JSON) to an
 * in-process receiver; the mock upstream records the `traceparent` each
 * upstream call carried. One turn with a retry and a fallback gives one
 * trace whose tree is checked span by span; a takeover and a resume get
 * spans of their own, linked to the original turn.
 */

/** Building an app (a database, migrations, the first admin) on a loaded 2-core machine can take most of a minute. */
const BUILD_TIMEOUT_MS = 180_000;

const SERVER = 2;
const CLIENT = 3;
const ERROR = 2;

const hex = (bytes: number) => crypto.randomBytes(bytes).toString('hex');

describe.each(await backendNames())('tracing on %s', (backendName) => {
  let receiver: OtlpReceiver;
  let mock: MockUpstream;
  let t: TestApp;
  let token: string;

  beforeAll(async () => {
    // Its own range below 32768 (ports.ts).
    const ports = portAllocator(backendName === 'pglite+memory' ? 25_700 : 25_800);
    receiver = await startOtlpReceiver({ port: await ports.next() });
    mock = await createMockUpstream({ port: await ports.next(), host: '127.0.0.1', defaultChunks: 3, defaultIntervalMs: 1 });
    t = await buildTestApp(backendName, {
      OTEL_EXPORTER_OTLP_ENDPOINT: receiver.url,
      OTEL_SERVICE_NAME: 'llmchat-under-test',
      UPSTREAM_RETRY_BASE_MS: '0',
      UPSTREAM_MAX_ATTEMPTS: '2',
      INSTANCE_HEARTBEAT_TTL_SECONDS: '2',
      TAKEOVER_SCAN_INTERVAL_MS: '60000',
    });
    token = await login(t.app);
    const agents = [
      // The primary always answers 503: tried twice (a retry), then the fallback answers.
      { id: 'traced', endpoint: `${mock.url}/fault/status=503/v1/chat/completions`, model: 'tr-primary', fallbacks: [{ provider: 'openai', endpoint: `${mock.url}/v1/chat/completions`, model: 'tr-fallback', apiKey: 'k' }] },
      { id: 'plain', endpoint: `${mock.url}/v1/chat/completions`, model: 'tr-plain', fallbacks: [] },
    ];
    for (const a of agents) {
      const res = await t.app.inject({ method: 'POST', url: '/api/agents', headers: bearer(token), payload: { id: a.id, name: a.id, provider: 'openai', endpoint: a.endpoint, model: a.model, apiKey: 'k', fallbacks: a.fallbacks } });
      expect(res.statusCode).toBe(201);
    }
  }, BUILD_TIMEOUT_MS);

  afterAll(async () => {
    await t?.close();
    await mock?.close();
    await receiver?.close();
  });

  /** The spans of one trace once `names` all arrived (exports are batched: flushed here). */
  async function traceOf(traceId: string, names: string[]): Promise<ReceivedSpan[]> {
    return eventually(async () => {
      await t.app.deps.tracing?.flush();
      const spans = receiver.spans.filter((s) => s.traceId === traceId);
      return names.every((n) => spans.some((s) => s.name === n)) ? spans : undefined;
    }, `spans ${names.join(', ')} of trace ${traceId}`);
  }

  const one = (spans: ReceivedSpan[], name: string) => {
    const found = spans.filter((s) => s.name === name);
    expect(found, `exactly one span named ${name}`).toHaveLength(1);
    return found[0] as ReceivedSpan;
  };

  const upstreamCalls = (model: string) => mock.requests.filter((r) => (r.body as { model?: string } | undefined)?.model === model);

  let turnId: string;
  let turnSpan: ReceivedSpan;
  let traceId: string;

  it('one turn with a retry and a fallback is one trace: request, authentication, turn write, three attempts, relay, final write', async () => {
    traceId = hex(16);
    const callerSpanId = hex(8);
    const res = await t.app.inject({
      method: 'POST',
      url: '/api/chat/completions',
      headers: { ...bearer(token), traceparent: `00-${traceId}-${callerSpanId}-01` },
      payload: { agentId: 'traced', stream: true, messages: [{ role: 'user', content: 'trace me' }] },
    });
    expect(res.statusCode).toBe(200);
    const events = parseSse(res.body);
    expect((events.at(-1)?.json as { status: string }).status).toBe('complete');
    turnId = (events[0]?.json as { messageId: string }).messageId;

    const spans = await traceOf(traceId, ['POST /api/chat/completions', 'authenticate', 'chat turn', 'turn write', 'chat tr-primary', 'chat tr-fallback', 'relay', 'turn finish write']);
    const request = one(spans, 'POST /api/chat/completions');
    expect(request).toMatchObject({ parentSpanId: callerSpanId, kind: SERVER });
    expect(request.attributes).toMatchObject({ 'http.request.method': 'POST', 'http.route': '/api/chat/completions', 'http.response.status_code': 200 });
    expect(request.resource).toMatchObject({ 'service.name': 'llmchat-under-test' });
    expect(one(spans, 'authenticate').parentSpanId).toBe(request.spanId);

    turnSpan = one(spans, 'chat turn');
    expect(turnSpan.parentSpanId).toBe(request.spanId);
    expect(turnSpan.attributes).toMatchObject({ 'llmchat.turn.id': turnId, 'llmchat.agent.id': 'traced', 'llmchat.turn.status': 'complete', 'llmchat.turn.attempts': 3, 'gen_ai.provider.name': 'openai' });
    expect(turnSpan.attributes['gen_ai.usage.output_tokens']).toBeGreaterThan(0);
    for (const phase of ['turn write', 'relay', 'turn finish write']) expect(one(spans, phase).parentSpanId, phase).toBe(turnSpan.spanId);

    const attempts = spans.filter((s) => s.name.startsWith('chat tr-')).sort((a, b) => Number(a.attributes['llmchat.attempt']) - Number(b.attributes['llmchat.attempt']));
    expect(attempts.map((a) => [a.name, a.attributes['llmchat.attempt'], a.attributes['llmchat.endpoint.position']])).toEqual([
      ['chat tr-primary', 1, 0],
      ['chat tr-primary', 2, 0],
      ['chat tr-fallback', 3, 1],
    ]);
    for (const failed of attempts.slice(0, 2)) {
      expect(failed).toMatchObject({ parentSpanId: turnSpan.spanId, kind: CLIENT, statusCode: ERROR });
      expect(failed.attributes).toMatchObject({ 'error.type': 'server', 'llmchat.upstream.failure_kind': 'http', 'http.response.status_code': 503, 'gen_ai.request.model': 'tr-primary' });
      expect(failed.events).not.toContain('first_token');
    }
    const served = attempts[2] as ReceivedSpan;
    expect(served).toMatchObject({ parentSpanId: turnSpan.spanId, kind: CLIENT });
    expect(served.attributes['error.type']).toBeUndefined();
    expect(served.events).toEqual(['first_token']);

    // Each upstream call carried its own attempt span as the parent, in this trace.
    const seen = [...upstreamCalls('tr-primary'), ...upstreamCalls('tr-fallback')].map((r) => r.headers.traceparent);
    expect(seen).toEqual(attempts.map((a) => `00-${traceId}-${a.spanId}-01`));

    // The turn's trace context is stored with the answer, for a takeover or a resume to link to.
    const row = await t.backend.database.db.selectFrom('messages').select('metadata').where('id', '=', turnId).executeTakeFirstOrThrow();
    expect(row.metadata).toMatchObject({ traceparent: `00-${traceId}-${turnSpan.spanId}-01` });
  });

  it('a resume is a span of the reconnecting request, linked to the original turn', async () => {
    const resumeTrace = hex(16);
    const res = await t.app.inject({ method: 'GET', url: `/api/chat/stream?messageId=${turnId}`, headers: { ...bearer(token), traceparent: `00-${resumeTrace}-${hex(8)}-01` } });
    expect(res.statusCode).toBe(200);
    const spans = await traceOf(resumeTrace, ['GET /api/chat/stream', 'chat turn resume']);
    const resume = one(spans, 'chat turn resume');
    expect(resume.parentSpanId).toBe(one(spans, 'GET /api/chat/stream').spanId);
    expect(resume.attributes['llmchat.turn.id']).toBe(turnId);
    expect(resume.links).toEqual([{ traceId, spanId: turnSpan.spanId, attributes: { 'llmchat.link': 'original_turn' } }]);
  });

  it('a takeover is a new trace linked to the original turn, with its own attempts', async () => {
    const originalTrace = hex(16);
    const originalSpan = hex(8);
    const userId = (await t.backend.database.db.selectFrom('users').select('id').where('username', '=', 'admin').executeTakeFirstOrThrow()).id;
    const repo = createChatRepository(t.backend.database, 'dead-instance');
    const orphan = { userId, agentId: 'plain', sessionId: undefined, userMessageId: crypto.randomUUID(), assistantMessageId: crypto.randomUUID(), userContent: 'take me over', title: 'take me over', traceparent: `00-${originalTrace}-${originalSpan}-01` };
    await repo.createTurn(orphan);
    await sql`UPDATE messages SET updated_at = now() - interval '1 minute' WHERE id = ${orphan.assistantMessageId}`.execute(t.backend.database.db);
    // The dead instance held a lease and lost it: the app's next beat takes its answers over.
    await t.backend.state.beatInstance('dead-instance', 60_000, 60_000);
    await t.backend.state.expireInstance('dead-instance');

    const takeover = await eventually(async () => {
      await t.app.deps.tracing?.flush();
      return receiver.spans.find((s) => s.name === 'chat turn takeover' && s.attributes['llmchat.turn.id'] === orphan.assistantMessageId);
    }, 'the takeover span');
    expect(takeover.traceId).not.toBe(originalTrace);
    expect(takeover.parentSpanId).toBeUndefined();
    expect(takeover.attributes).toMatchObject({ 'llmchat.takeover.previous_owner': 'dead-instance', 'llmchat.turn.status': 'complete' });
    expect(takeover.links).toEqual([{ traceId: originalTrace, spanId: originalSpan, attributes: { 'llmchat.link': 'original_turn' } }]);
    const spans = await traceOf(takeover.traceId, ['chat tr-plain', 'turn finish write']);
    expect(one(spans, 'chat tr-plain')).toMatchObject({ parentSpanId: takeover.spanId, events: ['first_token'] });
  });

  it('an incoming traceparent that is not sampled is followed: nothing exported, the upstream still gets the trace id, unsampled', async () => {
    const unsampled = hex(16);
    const res = await t.app.inject({
      method: 'POST',
      url: '/api/chat/completions',
      headers: { ...bearer(token), traceparent: `00-${unsampled}-${hex(8)}-00` },
      payload: { agentId: 'plain', stream: false, messages: [{ role: 'user', content: 'not sampled' }] },
    });
    expect(res.statusCode).toBe(200);
    const call = upstreamCalls('tr-plain').find((r) => JSON.stringify(r.body).includes('not sampled'));
    expect(call?.headers.traceparent).toMatch(new RegExp(`^00-${unsampled}-[0-9a-f]{16}-00$`));
    await t.app.deps.tracing?.flush();
    expect(receiver.spans.filter((s) => s.traceId === unsampled)).toEqual([]);
  });

  it('a hedged turn has both calls as attempt spans side by side: the winner holds the first token, the cancelled one ends aborted', async () => {
    const created = await t.app.inject({
      method: 'POST',
      url: '/api/agents',
      headers: bearer(token),
      payload: { id: 'hedged', name: 'hedged', provider: 'openai', endpoint: `${mock.url}/fault/firstTokenDelay=20000/v1/chat/completions`, model: 'th-primary', apiKey: 'k', hedge: { afterMs: 300 }, fallbacks: [{ provider: 'openai', endpoint: `${mock.url}/v1/chat/completions`, model: 'th-fallback', apiKey: 'k' }] },
    });
    expect(created.statusCode).toBe(201);
    const hedgedTrace = hex(16);
    const res = await t.app.inject({ method: 'POST', url: '/api/chat/completions', headers: { ...bearer(token), traceparent: `00-${hedgedTrace}-${hex(8)}-01` }, payload: { agentId: 'hedged', stream: true, messages: [{ role: 'user', content: 'hedge me' }] } });
    expect((parseSse(res.body).at(-1)?.json as { status: string }).status).toBe('complete');
    const spans = await traceOf(hedgedTrace, ['chat turn', 'chat th-primary', 'chat th-fallback']);
    const turn = one(spans, 'chat turn');
    expect(turn.attributes).toMatchObject({ 'llmchat.turn.attempts': 2, 'gen_ai.response.model': 'th-fallback' });
    const lost = one(spans, 'chat th-primary');
    expect(lost).toMatchObject({ parentSpanId: turn.spanId, statusCode: ERROR, events: [] });
    expect(lost.attributes).toMatchObject({ 'error.type': 'aborted', 'llmchat.attempt': 1 });
    const won = one(spans, 'chat th-fallback');
    expect(won).toMatchObject({ parentSpanId: turn.spanId, events: ['first_token'] });
    expect(won.attributes).toMatchObject({ 'llmchat.attempt': 2 });
    expect(won.attributes['error.type']).toBeUndefined();
  });

  it('exports OTLP/HTTP JSON', () => {
    expect(new Set(receiver.contentTypes)).toEqual(new Set(['application/json']));
  });
});

describe('tracing off', () => {
  let mock: MockUpstream;
  let t: TestApp;

  beforeAll(async () => {
    mock = await createMockUpstream({ port: await portAllocator(25_900).next(), host: '127.0.0.1', defaultChunks: 2, defaultIntervalMs: 1 });
    t = await buildTestApp('pglite+memory');
  }, BUILD_TIMEOUT_MS);
  afterAll(async () => {
    await t?.close();
    await mock?.close();
  });

  it('without an OTLP endpoint there is no tracer and no traceparent goes upstream, even when the caller sent one', async () => {
    expect(t.app.deps.tracing).toBeUndefined();
    const token = await login(t.app);
    expect((await t.app.inject({ method: 'POST', url: '/api/agents', headers: bearer(token), payload: { id: 'untraced', name: 'untraced', provider: 'openai', endpoint: `${mock.url}/v1/chat/completions`, model: 'untraced-m', apiKey: 'k' } })).statusCode).toBe(201);
    const res = await t.app.inject({
      method: 'POST',
      url: '/api/chat/completions',
      headers: { ...bearer(token), traceparent: `00-${hex(16)}-${hex(8)}-01` },
      payload: { agentId: 'untraced', stream: false, messages: [{ role: 'user', content: 'hello' }] },
    });
    expect(res.statusCode).toBe(200);
    expect(mock.requests).toHaveLength(1);
    expect(mock.requests[0]?.headers.traceparent).toBeUndefined();
    const row = await t.backend.database.db.selectFrom('messages').select('metadata').where('role', '=', 'assistant').executeTakeFirstOrThrow();
    expect(row.metadata).toBeNull();
  });
});
