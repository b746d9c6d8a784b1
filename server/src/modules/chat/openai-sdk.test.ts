import type { AddressInfo } from 'node:net';
import OpenAI from 'openai';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createMockUpstream } from '../../../../tools/src/mock-upstream/index.js';
import { backendNames } from '../../test/backends.js';
import { bearer, buildTestApp, createUserAndLogin, login, type TestApp } from '../../test/app.js';

/**
 * `/v1` through OpenAI's official TypeScript SDK, against a listening
 * server: what an application built on the SDK sees, errors included (the
 * SDK's error classes come from the HTTP status and OpenAI's error shape).
 */

type Mock = Awaited<ReturnType<typeof createMockUpstream>>;

/** Deadlines no loaded test machine misses. */
const RELAXED = { connectMs: 30_000, firstTokenMs: 30_000, idleMs: 30_000 };

describe.each(await backendNames())('/v1 with the official openai SDK on %s', (backendName) => {
  let t: TestApp;
  let mock: Mock;
  let client: OpenAI;
  let baseURL: string;

  beforeAll(async () => {
    mock = await createMockUpstream({ port: 0, host: '127.0.0.1', defaultChunks: 5, defaultIntervalMs: 2 });
    t = await buildTestApp(backendName, { UPSTREAM_RETRY_BASE_MS: '0', UPSTREAM_MAX_ATTEMPTS: '1', V1_STREAM_HOLD_MS: '30000' });
    await t.app.listen({ port: 0, host: '127.0.0.1' });
    baseURL = `http://127.0.0.1:${(t.app.server.address() as AddressInfo).port}/v1`;
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
    await agent('gpt', 'openai', `${mock.url}/v1/chat/completions`, 'mock-gpt-4o');
    await agent('claude', 'anthropic', `${mock.url}/v1/messages`, 'mock-claude');
    await agent('limited', 'openai', `${mock.url}/fault/status=429,retryAfter=7/v1/chat/completions`, 'limited-model');
    await agent('broken', 'openai', `${mock.url}/fault/status=500/v1/chat/completions`, 'broken-model');
    const alice = (await createUserAndLogin(t.app, admin, 'alice')).token;
    const key = await t.app.inject({ method: 'POST', url: '/api/auth/api-keys', headers: bearer(alice), payload: { name: 'sdk' } });
    if (key.statusCode !== 201) throw new Error(`api key: ${key.statusCode} ${key.body}`);
    // No retries by the SDK: each test sees exactly what one request got.
    client = new OpenAI({ apiKey: key.json<{ data: { key: string } }>().data.key, baseURL, maxRetries: 0 });
  });

  afterAll(async () => {
    await t?.close();
    await mock?.close();
  });

  const lastBodyFor = (model: string) => mock.requests.filter((r) => (r.body as { model?: string } | undefined)?.model === model).at(-1)?.body as Record<string, unknown> | undefined;

  it('lists and retrieves models, and an unknown one is NotFoundError model_not_found', async () => {
    const ids: string[] = [];
    for await (const m of client.models.list()) ids.push(m.id);
    expect(ids).toEqual(expect.arrayContaining(['gpt', 'claude']));
    const one = await client.models.retrieve('gpt');
    expect(one).toMatchObject({ id: 'gpt', object: 'model' });
    const err = await client.models.retrieve('no-such-agent').catch((e: unknown) => e);
    expect(err).toBeInstanceOf(OpenAI.NotFoundError);
    expect((err as InstanceType<typeof OpenAI.NotFoundError>).code).toBe('model_not_found');
    const completion = await client.chat.completions.create({ model: 'no-such-agent', messages: [{ role: 'user', content: 'x' }] }).catch((e: unknown) => e);
    expect(completion).toBeInstanceOf(OpenAI.NotFoundError);
    expect((completion as InstanceType<typeof OpenAI.NotFoundError>).param).toBe('model');
  });

  it('answers a blocking completion with the serving model, the finish reason, usage and the agent header', async () => {
    const { data, response } = await client.chat.completions.create({ model: 'gpt', messages: [{ role: 'user', content: 'blocking via sdk' }] }).withResponse();
    expect(data.object).toBe('chat.completion');
    expect(data.choices[0]?.message.content).toContain('Simulated answer to: blocking via sdk');
    expect(data.choices[0]?.finish_reason).toBe('stop');
    // The model that served, not the agent id the caller named.
    expect(data.model).toBe('mock-gpt-4o');
    expect(data.usage?.total_tokens).toBeGreaterThan(0);
    expect(response.headers.get('x-llmchat-agent')).toBe('gpt');
    expect(response.headers.get('x-llmchat-endpoint')).toMatch(/.+/);
  });

  it('streams with include_usage: text, finish reason, the serving model and usage in the last chunk', async () => {
    const stream = await client.chat.completions.create({ model: 'gpt', stream: true, stream_options: { include_usage: true }, messages: [{ role: 'user', content: 'streaming via sdk' }] });
    let text = '';
    const finishReasons: string[] = [];
    const models = new Set<string>();
    let usage: OpenAI.CompletionUsage | undefined | null;
    for await (const chunk of stream) {
      models.add(chunk.model);
      for (const choice of chunk.choices) {
        text += choice.delta.content ?? '';
        if (choice.finish_reason) finishReasons.push(choice.finish_reason);
      }
      if (chunk.usage) usage = chunk.usage;
    }
    expect(text).toContain('Simulated answer to: streaming via sdk');
    expect(finishReasons).toEqual(['stop']);
    expect([...models]).toEqual(['mock-gpt-4o']);
    expect(usage?.total_tokens).toBeGreaterThan(0);
  });

  it('maps the provider\'s finish reason: length and content_filter from OpenAI, max_tokens and refusal from Anthropic', async () => {
    const cases: [string, string, string][] = [
      ['gpt', 'length', 'length'],
      ['gpt', 'content_filter', 'content_filter'],
      ['claude', 'length', 'length'],
      ['claude', 'content_filter', 'content_filter'],
    ];
    for (const [model, fault, expected] of cases) {
      const blocking = await client.chat.completions.create({ model, messages: [{ role: 'user', content: `cut [[mock finish=${fault}]]` }] });
      expect(blocking.choices[0]?.finish_reason, `${model} ${fault} blocking`).toBe(expected);
      const stream = await client.chat.completions.create({ model, stream: true, messages: [{ role: 'user', content: `cut [[mock finish=${fault}]]` }] });
      const reasons: string[] = [];
      for await (const chunk of stream) for (const choice of chunk.choices) if (choice.finish_reason) reasons.push(choice.finish_reason);
      expect(reasons, `${model} ${fault} stream`).toEqual([expected]);
    }
  });

  it('passes sampling options and the developer role through to the provider', async () => {
    await client.chat.completions.create({
      model: 'gpt',
      messages: [
        { role: 'developer', content: 'Answer in French.' },
        { role: 'user', content: 'sampling options' },
      ],
      top_p: 0.5,
      stop: ['END', 'STOP'],
      seed: 42,
      response_format: { type: 'json_object' },
      max_completion_tokens: 64,
    });
    const sent = lastBodyFor('mock-gpt-4o');
    expect(sent).toMatchObject({ top_p: 0.5, stop: ['END', 'STOP'], seed: 42, response_format: { type: 'json_object' }, max_tokens: 64 });
    expect(sent?.messages).toEqual(expect.arrayContaining([{ role: 'system', content: 'Answer in French.' }]));

    await client.chat.completions.create({ model: 'claude', messages: [{ role: 'user', content: 'anthropic sampling' }], top_p: 0.25, stop: 'HALT' });
    expect(lastBodyFor('mock-claude')).toMatchObject({ top_p: 0.25, stop_sequences: ['HALT'] });
  });

  it('refuses bad input, n > 1 and the deprecated functions with BadRequestError naming the parameter, and asks the provider nothing', async () => {
    const before = mock.requests.length;
    const cases: [Record<string, unknown>, string][] = [
      [{ temperature: 5 }, 'temperature'],
      [{ n: 2 }, 'n'],
      // Function calling is `tools` (openai-tools.test.ts); its deprecated form is refused.
      [{ functions: [{ name: 'f', parameters: { type: 'object' } }] }, 'functions'],
    ];
    for (const [extra, param] of cases) {
      const err = await client.chat.completions.create({ model: 'gpt', messages: [{ role: 'user', content: 'x' }], ...extra } as OpenAI.ChatCompletionCreateParamsNonStreaming).catch((e: unknown) => e);
      expect(err, param).toBeInstanceOf(OpenAI.BadRequestError);
      const e = err as InstanceType<typeof OpenAI.BadRequestError>;
      expect(e.type).toBe('invalid_request_error');
      expect(e.param).toBe(param);
    }
    expect(mock.requests.length).toBe(before);
  });

  it('a bad key is AuthenticationError', async () => {
    const stranger = new OpenAI({ apiKey: 'llmc_not-a-real-key', baseURL, maxRetries: 0 });
    const err = await stranger.chat.completions.create({ model: 'gpt', messages: [{ role: 'user', content: 'x' }] }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(OpenAI.AuthenticationError);
    expect((err as InstanceType<typeof OpenAI.AuthenticationError>).type).toBe('authentication_error');
  });

  it('an upstream rate limit is RateLimitError with the provider\'s Retry-After, streaming or not', async () => {
    for (const stream of [false, true]) {
      const err = await client.chat.completions
        .create({ model: 'limited', stream, messages: [{ role: 'user', content: `limited ${String(stream)}` }] } as OpenAI.ChatCompletionCreateParams)
        .then(async (r) => {
          // A stream that opened would be a 200: read it so the failure shows.
          if (stream) for await (const _ of r as AsyncIterable<unknown>) void _;
          return r;
        })
        .catch((e: unknown) => e);
      expect(err, `stream=${String(stream)}`).toBeInstanceOf(OpenAI.RateLimitError);
      const e = err as InstanceType<typeof OpenAI.RateLimitError>;
      expect(e.status).toBe(429);
      expect(e.code).toBe('rate_limit_exceeded');
      expect(e.headers?.get('retry-after')).toBe('7');
    }
  });

  it('an upstream failure before the first token is an HTTP 5xx (InternalServerError), not a 200 with an error inside', async () => {
    const err = await client.chat.completions
      .create({ model: 'broken', stream: true, messages: [{ role: 'user', content: 'broken stream' }] })
      .then(async (r) => {
        for await (const _ of r) void _;
        return r;
      })
      .catch((e: unknown) => e);
    expect(err).toBeInstanceOf(OpenAI.InternalServerError);
    expect((err as InstanceType<typeof OpenAI.InternalServerError>).status).toBe(502);
  });
});
