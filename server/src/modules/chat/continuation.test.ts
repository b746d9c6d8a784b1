import type { AddressInfo } from 'node:net';
import OpenAI from 'openai';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createMockUpstream } from '../../../../tools/src/mock-upstream/index.js';
import { backendNames } from '../../test/backends.js';
import { bearer, buildTestApp, createUserAndLogin, login, type TestApp } from '../../test/app.js';
import { parseSse, readSse, type ParsedEvent } from '../../test/sse.js';
import { ONE_PIXEL_PNG } from '../attachments/test-files.js';
import { partialAnswer } from './continuation.js';

/**
 * Mid-answer continuation (README, "Continuation per provider"): an answer
 * that breaks off after some text is continued by the next attempt, on
 * `/api/chat/completions` and on `/v1` (through the official `openai` SDK
 * against a listening server), for every provider kind and the mock's
 * cut, stall and malformed faults. The mock continues a prefilled answer
 * deterministically, so the joined text is checked exactly.
 */

type Mock = Awaited<ReturnType<typeof createMockUpstream>>;

/** Deadlines no loaded test machine misses (the stalled primary gets a short idle deadline of its own). */
const RELAXED = { connectMs: 30_000, firstTokenMs: 30_000, idleMs: 30_000 };

/** The question every test asks. With 6 chunks its answer's first two end in a space, which Anthropic refuses in a prefill. */
const QUESTION = 'go on please';
const ANSWER = 'Simulated answer to: go on please lorem ipsum dolor sit amet consectetur.';
const FIRST_TWO_CHUNKS = 'Simulated answer to: go ';

const FAULTS = [
  ['cut', 'cutAfter=2'],
  ['stall', 'stallAfter=2'],
  ['malformed', 'malformedAfter=2,malformed=4'],
] as const;

const PROVIDERS = {
  openai: { path: '/v1/chat/completions', extra: { model: 'm' } },
  anthropic: { path: '/v1/messages', extra: { model: 'claude-mock' } },
  fastgpt: { path: '/api/v1/chat/completions', extra: { appId: '0123456789abcdef01234567' } },
  dify: { path: '/v1', extra: {} },
} as const;
type Provider = keyof typeof PROVIDERS;

const chunkText = (events: ParsedEvent[]) =>
  events
    .filter((e) => e.event === 'chunk')
    .map((e) => (e.json as { content: string }).content)
    .join('');
const keptText = (events: ParsedEvent[]) => chunkText(events.slice(events.map((e) => e.event).lastIndexOf('reset') + 1));

describe.each(await backendNames())('mid-answer continuation on %s', (backendName) => {
  let t: TestApp;
  let mock: Mock;
  let admin: string;
  let alice: string;
  let client: OpenAI;

  beforeAll(async () => {
    mock = await createMockUpstream({ port: 0, host: '127.0.0.1', defaultChunks: 6, defaultIntervalMs: 2 });
    t = await buildTestApp(backendName, { UPSTREAM_RETRY_BASE_MS: '0', UPSTREAM_MAX_ATTEMPTS: '2', V1_STREAM_HOLD_MS: '30000', BREAKER_FAILURE_THRESHOLD: '100' });
    await t.app.listen({ port: 0, host: '127.0.0.1' });
    admin = await login(t.app);
    alice = (await createUserAndLogin(t.app, admin, 'alice')).token;
    const key = await t.app.inject({ method: 'POST', url: '/api/auth/api-keys', headers: bearer(alice), payload: { name: 'sdk' } });
    if (key.statusCode !== 201) throw new Error(`api key: ${key.statusCode} ${key.body}`);
    client = new OpenAI({ apiKey: key.json<{ data: { key: string } }>().data.key, baseURL: `http://127.0.0.1:${(t.app.server.address() as AddressInfo).port}/v1`, maxRetries: 0 });
  });

  afterAll(async () => {
    await t?.close();
    await mock?.close();
  });

  const url = (provider: Provider, fault = '') => `${mock.url}${fault ? `/fault/${fault}` : ''}${PROVIDERS[provider].path}`;

  interface EndpointSpec {
    provider: Provider;
    fault?: string;
    model?: string;
    continuation?: string;
    timeouts?: Record<string, number>;
  }

  /** An agent whose endpoints each have their own model name (so their calls can be told apart at the mock). */
  async function agent(id: string, primary: EndpointSpec, fallbacks: EndpointSpec[] = [], features?: { supportsImages: boolean }): Promise<void> {
    const endpoint = (e: EndpointSpec) => ({
      provider: e.provider,
      endpoint: url(e.provider, e.fault),
      apiKey: 'k',
      ...PROVIDERS[e.provider].extra,
      ...(e.model ? { model: e.model } : {}),
      ...(e.continuation ? { continuation: e.continuation } : {}),
      timeouts: e.timeouts ?? RELAXED,
    });
    const { endpoint: primaryUrl, ...primaryRest } = endpoint(primary);
    const res = await t.app.inject({
      method: 'POST',
      url: '/api/agents',
      headers: bearer(admin),
      payload: { id, name: id, endpoint: primaryUrl, ...primaryRest, fallbacks: fallbacks.map(endpoint), ...(features ? { features } : {}) },
    });
    if (res.statusCode !== 201) throw new Error(`agent create failed: ${res.statusCode} ${res.body}`);
  }

  /** A primary that breaks off after two chunks with `fault`, and a healthy fallback of `fallback`'s kind. */
  async function brokenThenHealthy(id: string, provider: Provider, fault: string, fallback: Partial<EndpointSpec> = {}): Promise<void> {
    const stall = fault.startsWith('stall');
    await agent(id, { provider, fault, model: provider === 'openai' || provider === 'anthropic' ? `${id}-p` : undefined, timeouts: stall ? { ...RELAXED, idleMs: 300 } : RELAXED }, [
      { provider, model: provider === 'openai' || provider === 'anthropic' ? `${id}-f` : undefined, ...fallback },
    ]);
  }

  async function turn(agentId: string) {
    const res = await t.app.inject({ method: 'POST', url: '/api/chat/completions', headers: bearer(alice), payload: { agentId, stream: true, messages: [{ role: 'user', content: QUESTION }] } });
    const events = parseSse(res.body);
    const turnId = (events[0]?.json as { messageId: string }).messageId;
    const row = await t.backend.database.db.selectFrom('messages').selectAll().where('id', '=', turnId).executeTakeFirstOrThrow();
    return { events, names: events.map((e) => e.event), row, turnId };
  }

  /** Streams through the SDK; returns the text joined from the chunks, or the error the stream ended with. */
  async function v1Stream(model: string): Promise<{ text: string; error: unknown }> {
    let text = '';
    try {
      const stream = await client.chat.completions.create({ model, stream: true, messages: [{ role: 'user', content: QUESTION }] });
      for await (const chunk of stream) text += chunk.choices[0]?.delta.content ?? '';
      return { text, error: undefined };
    } catch (error) {
      return { text, error };
    }
  }

  const bodiesFor = (model: string) => mock.requests.filter((r) => (r.body as { model?: string } | undefined)?.model === model).map((r) => r.body as Record<string, unknown>);
  const lastMessage = (body: Record<string, unknown> | undefined) => (body?.messages as { role: string; content: unknown }[] | undefined)?.at(-1);

  describe.each(FAULTS)('after a %s', (faultName, fault) => {
    it.each(['openai', 'anthropic'] as const)('%s: the fallback continues the answer; /api gets one answer with no reset, stored whole', async (provider) => {
      const id = `api-${provider}-${faultName}`;
      await brokenThenHealthy(id, provider, fault);
      const { events, names, row } = await turn(id);
      expect(names).not.toContain('reset');
      expect(names).not.toContain('error');
      expect(chunkText(events)).toBe(ANSWER);
      expect(row).toMatchObject({ status: 'complete', content: ANSWER, model: `${id}-f` });
      // The fallback got the question and, as the last message, the two chunks already sent
      // (Anthropic: without the trailing space it refuses; the space it says again is dropped).
      const sent = bodiesFor(`${id}-f`);
      expect(sent).toHaveLength(1);
      expect(lastMessage(sent[0])).toEqual({ role: 'assistant', content: provider === 'anthropic' ? FIRST_TWO_CHUNKS.trimEnd() : FIRST_TWO_CHUNKS });
    });

    it.each(['openai', 'anthropic'] as const)('%s: /v1 streams one seamless answer', async (provider) => {
      const id = `v1-${provider}-${faultName}`;
      await brokenThenHealthy(id, provider, fault);
      const { text, error } = await v1Stream(id);
      expect(error).toBeUndefined();
      expect(text).toBe(ANSWER);
    });

    it.each(['fastgpt', 'dify'] as const)('%s: the answer starts over (no continuation there); /api gets a reset, /v1 goes on past the repeated text', async (provider) => {
      const id = `restart-${provider}-${faultName}`;
      await brokenThenHealthy(id, provider, fault);
      const { events, names, row } = await turn(id);
      expect(names).toContain('reset');
      expect(keptText(events)).toBe(ANSWER);
      expect(row.content).toBe(ANSWER);
      // /v1 cannot take text back: the restart repeats the text sent, which is suppressed, and the answer goes on.
      const { text, error } = await v1Stream(id);
      expect(error).toBeUndefined();
      expect(text).toBe(ANSWER);
    });
  });

  it.each(['openai', 'anthropic'] as const)('%s: a stream that closes after text with neither end marker nor finish reason is continued', async (provider) => {
    const id = `ended-${provider}`;
    await brokenThenHealthy(id, provider, 'endAfter=2');
    const { names, row } = await turn(id);
    expect(names).not.toContain('reset');
    expect(row).toMatchObject({ status: 'complete', content: ANSWER, model: `${id}-f` });
    expect(lastMessage(bodiesFor(`${id}-f`)[0])).toEqual({ role: 'assistant', content: provider === 'anthropic' ? FIRST_TWO_CHUNKS.trimEnd() : FIRST_TWO_CHUNKS });
  });

  it('an in-stream error after text is continued too', async () => {
    await brokenThenHealthy('inerror', 'openai', 'errorAfter=2');
    const { names, row } = await turn('inerror');
    expect(names).not.toContain('reset');
    expect(row.content).toBe(ANSWER);
  });

  it('continue_final_message sends vLLM\'s flags with the partial answer', async () => {
    await brokenThenHealthy('vllm', 'openai', 'cutAfter=2', { continuation: 'continue_final_message' });
    const { names, row } = await turn('vllm');
    expect(names).not.toContain('reset');
    expect(row.content).toBe(ANSWER);
    const [body] = bodiesFor('vllm-f');
    expect(body).toMatchObject({ continue_final_message: true, add_generation_prompt: false });
    expect(lastMessage(body)).toEqual({ role: 'assistant', content: FIRST_TWO_CHUNKS });
    // The primary's first call, with nothing to continue, has neither.
    expect(bodiesFor('vllm-p')[0]).not.toHaveProperty('continue_final_message');
  });

  it('an endpoint set to restart starts over with a reset, and is sent no partial answer', async () => {
    await brokenThenHealthy('norestart', 'openai', 'cutAfter=2', { continuation: 'restart' });
    const { events, names, row } = await turn('norestart');
    expect(names).toContain('reset');
    expect(keptText(events)).toBe(ANSWER);
    expect(row.content).toBe(ANSWER);
    expect(lastMessage(bodiesFor('norestart-f')[0])).toEqual({ role: 'user', content: QUESTION });
  });

  describe('a fallback that refuses the prefill (HTTP 400)', () => {
    it('is called again at once without it: /api gets a reset and the whole answer, never the refusal', async () => {
      await brokenThenHealthy('refuse', 'openai', 'cutAfter=2', { fault: 'prefill=refuse' });
      const { events, names, row, turnId } = await turn('refuse');
      expect(names).toContain('reset');
      expect(names).not.toContain('error');
      expect(keptText(events)).toBe(ANSWER);
      expect(row).toMatchObject({ status: 'complete', content: ANSWER, model: 'refuse-f' });
      const calls = bodiesFor('refuse-f');
      expect(calls.map(lastMessage)).toEqual([{ role: 'assistant', content: FIRST_TWO_CHUNKS }, { role: 'user', content: QUESTION }]);
      // The refusal is no failure of the endpoint: only the primary's cut is recorded.
      await t.app.deps.failures.settled();
      const failures = await t.backend.database.db.selectFrom('upstream_failures').select(['position', 'mid_answer']).where('message_id', '=', turnId).execute();
      expect(failures).toEqual([{ position: 0, mid_answer: true }]);
    });

    it('/v1: the restart repeats the text already sent, so the stream goes on past it seamlessly', async () => {
      await brokenThenHealthy('refusev1', 'openai', 'cutAfter=2', { fault: 'prefill=refuse' });
      const { text, error } = await v1Stream('refusev1');
      expect(error).toBeUndefined();
      expect(text).toBe(ANSWER);
    });

    it('/v1: a restart that says something else ends the stream with a clean error; the restarted answer is stored', async () => {
      await brokenThenHealthy('diverge', 'openai', 'cutAfter=2', { fault: 'prefill=refuse,answer=A%20different%20answer.' });
      const { text, error } = await v1Stream('diverge');
      expect(text).toBe(FIRST_TWO_CHUNKS);
      expect(error).toBeInstanceOf(OpenAI.APIError);
      expect((error as InstanceType<typeof OpenAI.APIError>).message).toContain('restarted differently');
      // On /api the same turn restarts with a reset.
      const { events, names, row } = await turn('diverge');
      expect(names).toContain('reset');
      expect(keptText(events)).toBe('A different answer.');
      expect(row.content).toBe('A different answer.');
    });
  });

  describe('the endpoint setting', () => {
    it('is shown to admins, validated against the provider kind, and can be cleared', async () => {
      await agent('setting', { provider: 'openai', model: 'setting-m', continuation: 'continue_final_message' }, [{ provider: 'anthropic', model: 'c', continuation: 'restart' }]);
      const view = await t.app.inject({ method: 'GET', url: '/api/agents/setting', headers: bearer(admin) });
      const data = view.json<{ data: { continuation?: string; fallbacks: { continuation?: string }[] } }>().data;
      expect(data.continuation).toBe('continue_final_message');
      expect(data.fallbacks[0]?.continuation).toBe('restart');

      const unsupported = await t.app.inject({ method: 'POST', url: '/api/agents', headers: bearer(admin), payload: { id: 'badcont', name: 'x', provider: 'fastgpt', endpoint: url('fastgpt'), appId: '0123456789abcdef01234567', continuation: 'prefill' } });
      expect(unsupported.statusCode).toBe(400);
      expect(unsupported.json<{ error: { code: string } }>().error.code).toBe('VALIDATION_FAILED');
      expect(unsupported.body).toContain('continuation');
      const unknown = await t.app.inject({ method: 'PATCH', url: '/api/agents/setting', headers: bearer(admin), payload: { continuation: 'rewind' } });
      expect(unknown.statusCode).toBe(400);
      expect((await t.app.inject({ method: 'GET', url: '/api/agents/badcont', headers: bearer(admin) })).statusCode).toBe(404);

      const cleared = await t.app.inject({ method: 'PATCH', url: '/api/agents/setting', headers: bearer(admin), payload: { continuation: null } });
      expect(cleared.statusCode).toBe(200);
      const after = await t.app.inject({ method: 'GET', url: '/api/agents/setting', headers: bearer(admin) });
      expect(after.json<{ data: { continuation?: string; fallbacks: { continuation?: string }[] } }>().data).toMatchObject({ fallbacks: [{ continuation: 'restart' }] });
      expect(after.json<{ data: { continuation?: string } }>().data.continuation).toBeUndefined();
    });
  });
  describe('continuing an answer its asker stopped (POST /api/chat/history/:chatId/continue)', () => {
    const base = () => `http://127.0.0.1:${(t.app.server.address() as AddressInfo).port}`;

    /**
     * The first call stalls after two chunks, later calls are served whole. `times` counts per spec on
     * the mock, so each agent gets a spec of its own: a stall that would end after `n` extra ms past ten
     * minutes, long after its turn is stopped.
     */
    const stallOnce = (n: number) => `stallAfter=2,stall=${600_000 + n},times=1`;

    /** A turn whose first call stalls after two chunks (later calls are served whole); stopped by its asker once both arrived. */
    async function stoppedTurn(agentId: string, content: unknown = QUESTION, expectedText = FIRST_TWO_CHUNKS): Promise<{ chatId: string; messageId: string }> {
      const res = await fetch(`${base()}/api/chat/completions`, {
        method: 'POST',
        headers: { ...bearer(alice), 'content-type': 'application/json' },
        body: JSON.stringify({ agentId, stream: true, messages: [{ role: 'user', content }] }),
      });
      let ids = { chatId: '', messageId: '' };
      let chunks = 0;
      const events = await readSse(res.body!, (event) => {
        if (event.event === 'start') ids = { chatId: (event.json as { chatId: string }).chatId, messageId: (event.json as { messageId: string }).messageId };
        if (event.event === 'chunk' && ++chunks === 2) void t.app.inject({ method: 'POST', url: '/api/chat/stop', headers: bearer(alice), payload: { messageId: ids.messageId } });
      });
      expect(events.at(-1)?.json).toMatchObject({ status: 'stopped' });
      const row = await t.backend.database.db.selectFrom('messages').selectAll().where('id', '=', ids.messageId).executeTakeFirstOrThrow();
      expect(row.status).toBe('stopped');
      if (expectedText) expect(row.content).toBe(expectedText);
      return ids;
    }

    const continueTurn = (chatId: string, token = alice, payload: Record<string, unknown> = { stream: true }) =>
      t.app.inject({ method: 'POST', url: `/api/chat/history/${chatId}/continue`, headers: bearer(token), payload });
    const rowOf = (id: string) => t.backend.database.db.selectFrom('messages').selectAll().where('id', '=', id).executeTakeFirstOrThrow();

    it.each(['openai', 'anthropic'] as const)('%s: the answer goes on from its stored text, is stored whole as one answer, and a replay shows the continued run', async (provider) => {
      const id = `continue-${provider}`;
      await agent(id, { provider, fault: stallOnce(provider === 'openai' ? 1 : 2), model: `${id}-m` });
      const { chatId, messageId } = await stoppedTurn(id);

      const res = await continueTurn(chatId);
      expect(res.statusCode, res.body).toBe(200);
      const events = parseSse(res.body);
      // A new block of ids, past every id of the stopped run; `reset` (continue), the stored text, then what follows.
      expect(events[0]).toMatchObject({ event: 'reset', json: { reason: 'continue', messageId } });
      expect(events.every((e) => Number(e.id?.split(':').at(-1)) > 1_000_000)).toBe(true);
      expect((events[1]?.json as { content: string }).content).toBe(FIRST_TWO_CHUNKS);
      expect(keptText(events)).toBe(ANSWER);
      expect(events.at(-1)?.json).toMatchObject({ status: 'complete', messageId });
      expect(await rowOf(messageId)).toMatchObject({ status: 'complete', content: ANSWER });
      // The provider got the question and, as the last message, the stopped text (Anthropic: without its trailing space).
      const sent = bodiesFor(`${id}-m`);
      expect(sent).toHaveLength(2);
      expect(lastMessage(sent[1])).toEqual({ role: 'assistant', content: provider === 'anthropic' ? FIRST_TWO_CHUNKS.trimEnd() : FIRST_TWO_CHUNKS });
      // A client that reconnects from the start (a reload) gets the continued run, not the stopped run's end.
      const replay = parseSse((await t.app.inject({ method: 'GET', url: `/api/chat/stream?messageId=${messageId}`, headers: bearer(alice) })).body);
      expect(keptText(replay)).toBe(ANSWER);
      expect(replay.at(-1)?.json).toMatchObject({ status: 'complete' });
      // The session holds one answer to the question, not two.
      const history = await t.app.inject({ method: 'GET', url: `/api/chat-sessions/${chatId}`, headers: bearer(alice) });
      const messages = history.json<{ data: { messages: { role: string; content: string }[] } }>().data.messages;
      expect(messages.map((m) => [m.role, m.content])).toEqual([['user', QUESTION], ['assistant', ANSWER]]);
    });

    it('continues an answer to a question with an attachment: the provider gets the image again with the stopped text', async () => {
      await agent('continue-image', { provider: 'openai', fault: stallOnce(4), model: 'continue-image-m' }, [], { supportsImages: true });
      const upload = await t.app.inject({ method: 'POST', url: '/api/attachments?name=dot.png', headers: { ...bearer(alice), 'content-type': 'image/png' }, payload: ONE_PIXEL_PNG });
      expect(upload.statusCode, upload.body).toBe(201);
      const image = upload.json<{ data: { url: string } }>().data;
      const question = [{ type: 'text', text: QUESTION }, { type: 'image_url', image_url: { url: image.url } }];
      const { chatId, messageId } = await stoppedTurn('continue-image', question, '');
      const stopped = (await rowOf(messageId)).content;
      expect(stopped.length).toBeGreaterThan(0);

      const res = await continueTurn(chatId, alice, { stream: false });
      expect(res.statusCode, res.body).toBe(200);
      expect(await rowOf(messageId)).toMatchObject({ status: 'complete' });
      const [first, continued] = bodiesFor('continue-image-m');
      const dataUrl = `data:image/png;base64,${ONE_PIXEL_PNG.toString('base64')}`;
      for (const body of [first, continued]) {
        expect((body?.messages as { role: string; content: unknown }[])[0]).toEqual({ role: 'user', content: [{ type: 'text', text: QUESTION }, { type: 'image_url', image_url: { url: dataUrl } }] });
      }
      expect(lastMessage(continued)).toEqual({ role: 'assistant', content: stopped });
    });

    it('refuses, changing nothing, what cannot be continued: a finished answer, an agent whose provider cannot continue, another user\'s chat', async () => {
      await agent('continue-done', { provider: 'openai' });
      const done = await turn('continue-done');
      const finished = await continueTurn(done.row.session_id);
      expect(finished.statusCode).toBe(409);
      expect(finished.json<{ error: { code: string } }>().error.code).toBe('NOTHING_TO_CONTINUE');

      await agent('continue-fastgpt', { provider: 'fastgpt', fault: stallOnce(3) });
      const { chatId, messageId } = await stoppedTurn('continue-fastgpt');
      // The agent list says which agents can continue, so the web app offers the action only there.
      const canContinue = async (agentId: string) => (await t.app.inject({ method: 'GET', url: `/api/agents/${agentId}`, headers: bearer(alice) })).json<{ data: { canContinue: boolean } }>().data.canContinue;
      expect(await canContinue('continue-fastgpt')).toBe(false);
      expect(await canContinue('continue-done')).toBe(true);
      const calls = mock.requests.length;
      const refused = await continueTurn(chatId);
      expect(refused.statusCode).toBe(409);
      expect(refused.json<{ error: { code: string } }>().error.code).toBe('CANNOT_CONTINUE');
      expect(await rowOf(messageId)).toMatchObject({ status: 'stopped', content: FIRST_TWO_CHUNKS });
      expect(mock.requests.length).toBe(calls);

      const bob = (await createUserAndLogin(t.app, admin, 'bob-continue')).token;
      const stranger = await continueTurn(chatId, bob);
      expect(stranger.statusCode).toBe(404);
      expect(await rowOf(messageId)).toMatchObject({ status: 'stopped' });
      const bad = await continueTurn(chatId, alice, { dataId: 'not-a-uuid' });
      expect(bad.statusCode).toBe(400);
    });
  });
});

describe('the text a taken-over answer goes on from (partialAnswer)', () => {
  const event = (id: number, name: string, payload: unknown) => ({ id, event: name, data: JSON.stringify(payload) });

  it('is what the buffer shows since its last reset when that extends the checkpoint, else the checkpoint', () => {
    const buffered = [event(1, 'chunk', { content: 'old' }), event(2, 'reset', {}), event(3, 'chunk', { content: 'Hello ' }), event(4, 'chunk', { content: 'world' })];
    expect(partialAnswer('Hello', buffered)).toEqual({ content: 'Hello world', reasoning: '' });
    expect(partialAnswer('Hello there', buffered)).toEqual({ content: 'Hello there', reasoning: '' });
  });

  it('is none once the answer began calling functions since its last reset: a call cannot be prefilled, so it starts over', () => {
    const calling = [event(1, 'chunk', { content: 'Looking it up.' }), event(2, 'toolCall', { index: 0, id: 'call_1', name: 'f', arguments: '' })];
    expect(partialAnswer('Looking it up.', calling)).toBeUndefined();
    expect(partialAnswer('', [...calling, event(3, 'reset', {}), event(4, 'chunk', { content: 'Again' })])).toEqual({ content: 'Again', reasoning: '' });
  });
});
