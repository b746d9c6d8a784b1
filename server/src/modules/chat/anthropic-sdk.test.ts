import type { AddressInfo } from 'node:net';
import Anthropic from '@anthropic-ai/sdk';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createMockUpstream } from '../../../../tools/src/mock-upstream/index.js';
import { backendNames } from '../../test/backends.js';
import { bearer, buildTestApp, createUserAndLogin, login, type TestApp } from '../../test/app.js';

/**
 * `/v1/messages` through Anthropic's official TypeScript SDK, against a
 * listening server: what an application built on the SDK sees, errors
 * included (the SDK's error classes come from the HTTP status and
 * Anthropic's error shape). Also the session rule of `/v1` calls: hidden
 * from the key owner's chat list unless asked for.
 */

type Mock = Awaited<ReturnType<typeof createMockUpstream>>;

/** Deadlines no loaded test machine misses. */
const RELAXED = { connectMs: 30_000, firstTokenMs: 30_000, idleMs: 30_000 };

describe.each(await backendNames())('/v1/messages with the official @anthropic-ai/sdk on %s', (backendName) => {
  let t: TestApp;
  let mock: Mock;
  let client: Anthropic;
  let baseURL: string;
  let key: string;
  let alice: string;

  beforeAll(async () => {
    mock = await createMockUpstream({ port: 0, host: '127.0.0.1', defaultChunks: 5, defaultIntervalMs: 2 });
    t = await buildTestApp(backendName, { UPSTREAM_RETRY_BASE_MS: '0', UPSTREAM_MAX_ATTEMPTS: '1', V1_STREAM_HOLD_MS: '30000' });
    await t.app.listen({ port: 0, host: '127.0.0.1' });
    baseURL = `http://127.0.0.1:${(t.app.server.address() as AddressInfo).port}`;
    const admin = await login(t.app);
    const agent = async (id: string, provider: 'openai' | 'anthropic', endpoint: string, model: string) => {
      const res = await t.app.inject({
        method: 'POST',
        url: '/api/agents',
        headers: bearer(admin),
        payload: { id, name: id, description: 'sdk test', capabilities: [], isActive: true, provider, endpoint, model, apiKey: 'k', timeouts: RELAXED },
      });
      if (res.statusCode !== 201) throw new Error(`agent create failed: ${res.statusCode} ${res.body}`);
    };
    await agent('claude', 'anthropic', `${mock.url}/v1/messages`, 'mock-claude');
    await agent('gpt', 'openai', `${mock.url}/v1/chat/completions`, 'mock-gpt-4o');
    await agent('limited', 'anthropic', `${mock.url}/fault/status=429,retryAfter=7/v1/messages`, 'limited-model');
    await agent('broken', 'openai', `${mock.url}/fault/status=500/v1/chat/completions`, 'broken-model');
    alice = (await createUserAndLogin(t.app, admin, 'alice')).token;
    const created = await t.app.inject({ method: 'POST', url: '/api/auth/api-keys', headers: bearer(alice), payload: { name: 'sdk' } });
    if (created.statusCode !== 201) throw new Error(`api key: ${created.statusCode} ${created.body}`);
    key = created.json<{ data: { key: string } }>().data.key;
    // No retries by the SDK: each test sees exactly what one request got. The key goes as x-api-key, as the SDK sends it.
    client = new Anthropic({ apiKey: key, baseURL, maxRetries: 0 });
  });

  afterAll(async () => {
    await t?.close();
    await mock?.close();
  });

  const lastBodyFor = (model: string) => mock.requests.filter((r) => (r.body as { model?: string } | undefined)?.model === model).at(-1)?.body as Record<string, unknown> | undefined;

  it('answers messages.create with text, the serving model, end_turn and usage, for an Anthropic and an OpenAI agent', async () => {
    for (const [model, served] of [['claude', 'mock-claude'], ['gpt', 'mock-gpt-4o']] as const) {
      const { data, response } = await client.messages.create({ model, max_tokens: 256, messages: [{ role: 'user', content: `blocking ${model}` }] }).withResponse();
      expect(data.type).toBe('message');
      expect(data.role).toBe('assistant');
      expect(data.content[0]?.type).toBe('text');
      expect(data.content[0]?.type === 'text' && data.content[0].text).toContain(`Simulated answer to: blocking ${model}`);
      expect(data.model).toBe(served);
      expect(data.stop_reason).toBe('end_turn');
      expect(data.usage.output_tokens).toBeGreaterThan(0);
      expect(data.usage.input_tokens).toBeGreaterThan(0);
      expect(response.headers.get('x-llmchat-agent')).toBe(model);
      expect(response.headers.get('request-id')).toMatch(/.+/);
    }
  });

  it('streams: message_start, one text block of text_deltas, message_delta with stop_reason and usage, message_stop', async () => {
    const stream = client.messages.stream({ model: 'claude', max_tokens: 256, messages: [{ role: 'user', content: 'streaming via sdk' }] });
    const types: string[] = [];
    let text = '';
    for await (const event of stream) {
      types.push(event.type);
      if (event.type === 'content_block_delta' && event.delta.type === 'text_delta') text += event.delta.text;
    }
    const final = await stream.finalMessage();
    expect(text).toContain('Simulated answer to: streaming via sdk');
    expect(types[0]).toBe('message_start');
    expect(types.filter((x) => x === 'content_block_start')).toHaveLength(1);
    expect(types.slice(-3)).toEqual(['content_block_stop', 'message_delta', 'message_stop']);
    expect(final.content).toEqual([expect.objectContaining({ type: 'text', text })]);
    expect(final.model).toBe('mock-claude');
    expect(final.stop_reason).toBe('end_turn');
    expect(final.usage.output_tokens).toBeGreaterThan(0);
  });

  it('maps the stop reason: max_tokens and refusal, streaming and not', async () => {
    for (const [fault, expected] of [['length', 'max_tokens'], ['content_filter', 'refusal']] as const) {
      for (const model of ['claude', 'gpt']) {
        const content = `cut [[mock finish=${fault}]]`;
        const blocking = await client.messages.create({ model, max_tokens: 64, messages: [{ role: 'user', content }] });
        expect(blocking.stop_reason, `${model} ${fault} blocking`).toBe(expected);
        const streamed = await client.messages.stream({ model, max_tokens: 64, messages: [{ role: 'user', content }] }).finalMessage();
        expect(streamed.stop_reason, `${model} ${fault} stream`).toBe(expected);
      }
    }
  });

  it('passes system (string or blocks), max_tokens, temperature, top_p, stop_sequences and metadata.user_id to the provider', async () => {
    // This SDK's types no longer list temperature and top_p (newer Claude models refuse them); older tools still send them.
    await client.messages.create({
      model: 'claude',
      max_tokens: 77,
      system: [{ type: 'text', text: 'Answer in French.' }],
      messages: [
        { role: 'user', content: [{ type: 'text', text: 'first' }] },
        { role: 'assistant', content: 'ok' },
        { role: 'user', content: 'sampling options' },
      ],
      temperature: 0.3,
      top_p: 0.5,
      stop_sequences: ['END'],
      metadata: { user_id: 'caller-1' },
    } as Anthropic.MessageCreateParamsNonStreaming);
    expect(lastBodyFor('mock-claude')).toMatchObject({ system: 'Answer in French.', max_tokens: 77, temperature: 0.3, top_p: 0.5, stop_sequences: ['END'], metadata: { user_id: 'caller-1' } });
    await client.messages.create({ model: 'gpt', max_tokens: 33, system: 'Be brief.', messages: [{ role: 'user', content: 'to openai' }], stop_sequences: ['HALT'], metadata: { user_id: 'caller-2' } });
    const sent = lastBodyFor('mock-gpt-4o');
    expect(sent).toMatchObject({ max_tokens: 33, stop: ['HALT'], user: 'caller-2' });
    expect(sent?.messages).toEqual(expect.arrayContaining([{ role: 'system', content: 'Be brief.' }]));
  });

  it('refuses bad input, images and tools with BadRequestError invalid_request_error, and asks the provider nothing', async () => {
    const before = mock.requests.length;
    const cases: [Record<string, unknown>, RegExp][] = [
      [{ max_tokens: undefined }, /max_tokens/],
      [{ temperature: 1.5 }, /temperature/],
      [{ messages: [{ role: 'user', content: [{ type: 'image', source: { type: 'base64', media_type: 'image/png', data: 'AAAA' } }] }] }, /image/],
      [{ tools: [{ name: 'f', input_schema: { type: 'object' } }] }, /tools/],
    ];
    for (const [extra, message] of cases) {
      const params = { model: 'claude', max_tokens: 10, messages: [{ role: 'user', content: 'x' }], ...extra } as Anthropic.MessageCreateParamsNonStreaming;
      const err = await client.messages.create(params).catch((e: unknown) => e);
      expect(err, JSON.stringify(extra)).toBeInstanceOf(Anthropic.BadRequestError);
      const e = err as InstanceType<typeof Anthropic.BadRequestError>;
      expect(e.status).toBe(400);
      expect((e.error as { type: string; error: { type: string; message: string } }).error.type).toBe('invalid_request_error');
      expect((e.error as { error: { message: string } }).error.message).toMatch(message);
    }
    expect(mock.requests.length).toBe(before);
  });

  it('an unknown model is NotFoundError not_found_error; a bad key is AuthenticationError; a bearer token works too', async () => {
    const missing = await client.messages.create({ model: 'no-such-agent', max_tokens: 10, messages: [{ role: 'user', content: 'x' }] }).catch((e: unknown) => e);
    expect(missing).toBeInstanceOf(Anthropic.NotFoundError);
    expect((missing as InstanceType<typeof Anthropic.NotFoundError>).error).toMatchObject({ type: 'error', error: { type: 'not_found_error' } });
    const stranger = new Anthropic({ apiKey: 'llmc_not-a-real-key', baseURL, maxRetries: 0 });
    const denied = await stranger.messages.create({ model: 'claude', max_tokens: 10, messages: [{ role: 'user', content: 'x' }] }).catch((e: unknown) => e);
    expect(denied).toBeInstanceOf(Anthropic.AuthenticationError);
    expect((denied as InstanceType<typeof Anthropic.AuthenticationError>).error).toMatchObject({ type: 'error', error: { type: 'authentication_error' } });
    const byToken = new Anthropic({ authToken: key, baseURL, maxRetries: 0 });
    const answer = await byToken.messages.create({ model: 'claude', max_tokens: 10, messages: [{ role: 'user', content: 'bearer' }] });
    expect(answer.type).toBe('message');
  });

  it('an upstream rate limit is RateLimitError with the provider\'s Retry-After, streaming or not', async () => {
    for (const stream of [false, true]) {
      const params = { model: 'limited', max_tokens: 10, messages: [{ role: 'user' as const, content: `limited ${String(stream)}` }] };
      const err = await (stream ? client.messages.stream(params).finalMessage() : client.messages.create(params)).catch((e: unknown) => e);
      expect(err, `stream=${String(stream)}`).toBeInstanceOf(Anthropic.RateLimitError);
      const e = err as InstanceType<typeof Anthropic.RateLimitError>;
      expect(e.status).toBe(429);
      expect(e.error).toMatchObject({ type: 'error', error: { type: 'rate_limit_error' } });
      expect(e.headers?.get('retry-after')).toBe('7');
    }
  });

  it('an upstream failure before the first token is an HTTP 5xx (InternalServerError api_error), not a 200 with an error inside', async () => {
    const err = await client.messages.stream({ model: 'broken', max_tokens: 10, messages: [{ role: 'user', content: 'broken stream' }] }).finalMessage().catch((e: unknown) => e);
    expect(err).toBeInstanceOf(Anthropic.InternalServerError);
    expect((err as InstanceType<typeof Anthropic.InternalServerError>).status).toBe(502);
    expect((err as InstanceType<typeof Anthropic.InternalServerError>).error).toMatchObject({ type: 'error', error: { type: 'api_error' } });
  });

  it('is in the OpenAPI document with its answers', async () => {
    const doc = (await t.app.inject({ method: 'GET', url: '/openapi.json' })).json<{ paths: Record<string, Record<string, { responses: Record<string, unknown> }>> }>();
    const post = doc.paths['/v1/messages']?.post;
    expect(Object.keys(post?.responses ?? {})).toEqual(expect.arrayContaining(['200', '4XX', '5XX']));
  });

  describe('sessions of /v1 calls', () => {
    type Listed = { items: { id: string; title: string; hidden: boolean }[]; total: number };
    const list = async (query = '') => (await t.app.inject({ method: 'GET', url: `/api/chat-sessions${query}`, headers: bearer(alice) })).json<{ data: Listed }>().data;
    const titles = (l: Listed) => l.items.map((s) => s.title);

    it('are hidden from the owner\'s chat list unless the call sends X-LLMChat-Session: keep, on both wire formats', async () => {
      await client.messages.create({ model: 'claude', max_tokens: 10, messages: [{ role: 'user', content: 'hidden anthropic call' }] });
      await client.messages.create({ model: 'claude', max_tokens: 10, messages: [{ role: 'user', content: 'kept anthropic call' }] }, { headers: { 'X-LLMChat-Session': 'keep' } });
      const openai = async (content: string, headers: Record<string, string> = {}) => {
        const res = await fetch(`${baseURL}/v1/chat/completions`, { method: 'POST', headers: { 'content-type': 'application/json', authorization: `Bearer ${key}`, ...headers }, body: JSON.stringify({ model: 'gpt', messages: [{ role: 'user', content }] }) });
        expect(res.status).toBe(200);
      };
      await openai('hidden openai call');
      await openai('kept openai call', { 'x-llmchat-session': 'keep' });

      const listed = titles(await list());
      expect(listed).toEqual(expect.arrayContaining(['kept anthropic call', 'kept openai call']));
      expect(listed).not.toContain('hidden anthropic call');
      expect(listed).not.toContain('hidden openai call');
      // The legacy history list and search leave them out too.
      const history = (await t.app.inject({ method: 'GET', url: '/api/chat/history?pageSize=100', headers: bearer(alice) })).json<{ data: { title: string }[] }>().data.map((h) => h.title);
      expect(history).not.toContain('hidden anthropic call');
      expect(history).toContain('kept anthropic call');
      const hits = (await t.app.inject({ method: 'GET', url: '/api/chat-sessions/search?q=anthropic', headers: bearer(alice) })).json<{ data: { title: string }[] }>().data.map((h) => h.title);
      expect(hits).toContain('kept anthropic call');
      expect(hits).not.toContain('hidden anthropic call');

      // Stored all the same: listed on request, and open by id with the answer.
      const hidden = await list('?hidden=only&pageSize=100');
      expect(titles(hidden)).toEqual(expect.arrayContaining(['hidden anthropic call', 'hidden openai call']));
      expect(hidden.items.every((s) => s.hidden)).toBe(true);
      expect(titles(await list('?hidden=include&pageSize=100'))).toEqual(expect.arrayContaining(['hidden anthropic call', 'kept anthropic call']));
      const one = hidden.items.find((s) => s.title === 'hidden anthropic call');
      const opened = await t.app.inject({ method: 'GET', url: `/api/chat-sessions/${one?.id ?? ''}`, headers: bearer(alice) });
      expect(opened.statusCode).toBe(200);
      const answer: unknown = expect.stringContaining('Simulated answer to: hidden anthropic call');
      expect(opened.json<{ data: { hidden: boolean; messages: { role: string; content: string }[] } }>().data).toMatchObject({ hidden: true, messages: [{ role: 'user' }, { role: 'assistant', content: answer }] });
    });

    it('count in the admin\'s usage report as conversations like any other', async () => {
      const admin = await login(t.app);
      const from = new Date(Date.now() - 3_600_000).toISOString();
      const to = new Date(Date.now() + 3_600_000).toISOString();
      const report = async () => (await t.app.inject({ method: 'GET', url: `/api/admin/usage?from=${from}&to=${to}&bucket=hour`, headers: bearer(admin) })).json<{ data: { totals: { conversations: number; answers: number } } }>().data.totals;
      const before = await report();
      await client.messages.create({ model: 'claude', max_tokens: 10, messages: [{ role: 'user', content: 'counted though hidden' }] });
      const after = await report();
      expect(after.conversations).toBe(before.conversations + 1);
      expect(after.answers).toBe(before.answers + 1);
    });

    it('refuses another X-LLMChat-Session value with a 400 and writes nothing', async () => {
      const before = (await list('?hidden=include&pageSize=100')).total;
      const err = await client.messages.create({ model: 'claude', max_tokens: 10, messages: [{ role: 'user', content: 'bad header' }] }, { headers: { 'X-LLMChat-Session': 'sometimes' } }).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(Anthropic.BadRequestError);
      expect((await list('?hidden=include&pageSize=100')).total).toBe(before);
    });
  });
});
