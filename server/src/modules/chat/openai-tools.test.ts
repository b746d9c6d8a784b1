import type { AddressInfo } from 'node:net';
import OpenAI from 'openai';
import type { RunnableToolFunctionWithParse } from 'openai/lib/RunnableFunction';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createMockUpstream } from '../../../../tools/src/mock-upstream/index.js';
import { backendNames } from '../../test/backends.js';
import { bearer, buildTestApp, createUserAndLogin, login, type TestApp } from '../../test/app.js';

/**
 * Function calling on `/v1` through OpenAI's official SDK against a
 * listening server: tools reach OpenAI-compatible endpoints unchanged and
 * Anthropic translated, calls come back as OpenAI sends them (blocking and
 * streamed in pieces), the SDK's `stream()` and `runTools()` helpers work,
 * and the calls are stored with the answer.
 */

type Mock = Awaited<ReturnType<typeof createMockUpstream>>;

const RELAXED = { connectMs: 30_000, firstTokenMs: 30_000, idleMs: 30_000 };

const weather: OpenAI.ChatCompletionTool = {
  type: 'function',
  function: { name: 'get_weather', description: 'Weather in a city', parameters: { type: 'object', properties: { city: { type: 'string' } } } },
};
const clock: OpenAI.ChatCompletionTool = { type: 'function', function: { name: 'get_time', parameters: { type: 'object', properties: {} } } };

describe.each(await backendNames())('/v1 function calling with the official openai SDK on %s', (backendName) => {
  let t: TestApp;
  let mock: Mock;
  let client: OpenAI;
  let apiKey: string;

  beforeAll(async () => {
    mock = await createMockUpstream({ port: 0, host: '127.0.0.1', defaultChunks: 3, defaultIntervalMs: 2 });
    t = await buildTestApp(backendName, { UPSTREAM_RETRY_BASE_MS: '0', UPSTREAM_MAX_ATTEMPTS: '1', V1_STREAM_HOLD_MS: '30000' });
    await t.app.listen({ port: 0, host: '127.0.0.1' });
    const baseURL = `http://127.0.0.1:${(t.app.server.address() as AddressInfo).port}/v1`;
    const admin = await login(t.app);
    const agent = async (payload: Record<string, unknown>) => {
      const res = await t.app.inject({ method: 'POST', url: '/api/agents', headers: bearer(admin), payload: { description: 'tools test', capabilities: [], isActive: true, apiKey: 'k', timeouts: RELAXED, ...payload } });
      if (res.statusCode !== 201) throw new Error(`agent create failed: ${res.statusCode} ${res.body}`);
    };
    await agent({ id: 'gpt', name: 'gpt', provider: 'openai', endpoint: `${mock.url}/v1/chat/completions`, model: 'tools-gpt' });
    await agent({ id: 'claude', name: 'claude', provider: 'anthropic', endpoint: `${mock.url}/v1/messages`, model: 'tools-claude' });
    await agent({ id: 'fastgpt', name: 'fastgpt', provider: 'fastgpt', endpoint: `${mock.url}/api/v1/chat/completions`, appId: '0123456789abcdef01234567' });
    await agent({ id: 'dify', name: 'dify', provider: 'dify', endpoint: `${mock.url}/v1` });
    // FastGPT first, an OpenAI-compatible fallback: a turn with tools goes to the fallback only.
    await agent({ id: 'mixed', name: 'mixed', provider: 'fastgpt', endpoint: `${mock.url}/api/v1/chat/completions`, appId: '0123456789abcdef01234567', fallbacks: [{ provider: 'openai', endpoint: `${mock.url}/v1/chat/completions`, apiKey: 'k', model: 'tools-fallback', timeouts: RELAXED }] });
    // Primaries that break off after two text chunks, and healthy fallbacks of their kind that continue the answer (continuation.ts).
    await agent({ id: 'cut-gpt', name: 'cut-gpt', provider: 'openai', endpoint: `${mock.url}/fault/cutAfter=2/v1/chat/completions`, model: 'cut-gpt-p', fallbacks: [{ provider: 'openai', endpoint: `${mock.url}/v1/chat/completions`, apiKey: 'k', model: 'cut-gpt-f', timeouts: RELAXED }] });
    await agent({ id: 'cut-claude', name: 'cut-claude', provider: 'anthropic', endpoint: `${mock.url}/fault/cutAfter=2/v1/messages`, model: 'cut-claude-p', fallbacks: [{ provider: 'anthropic', endpoint: `${mock.url}/v1/messages`, apiKey: 'k', model: 'cut-claude-f', timeouts: RELAXED }] });
    const alice = (await createUserAndLogin(t.app, admin, 'alice')).token;
    const key = await t.app.inject({ method: 'POST', url: '/api/auth/api-keys', headers: bearer(alice), payload: { name: 'sdk' } });
    if (key.statusCode !== 201) throw new Error(`api key: ${key.statusCode} ${key.body}`);
    apiKey = key.json<{ data: { key: string } }>().data.key;
    client = new OpenAI({ apiKey, baseURL, maxRetries: 0 });
  });

  afterAll(async () => {
    await t?.close();
    await mock?.close();
  });

  const lastBodyFor = (model: string) => mock.requests.filter((r) => (r.body as { model?: string } | undefined)?.model === model).at(-1)?.body as Record<string, unknown> | undefined;

  /** The answer's events as GET /api/chat/stream replays them, from the first. */
  async function replayed(turnId: string): Promise<{ event: string; data: Record<string, unknown> }[]> {
    const res = await t.app.inject({ method: 'GET', url: `/api/chat/stream?messageId=${turnId}&lastEventId=0`, headers: { authorization: `Bearer ${apiKey}` } });
    expect(res.statusCode).toBe(200);
    return res.body
      .split('\n\n')
      .filter((b) => b.includes('event:'))
      .map((b) => ({ event: /event: (\S+)/.exec(b)?.[1] ?? '', data: JSON.parse(/data: (.*)/.exec(b)?.[1] ?? '{}') as Record<string, unknown> }));
  }

  for (const [model, served, idPrefix] of [['gpt', 'tools-gpt', 'call_'], ['claude', 'tools-claude', 'toolu_']] as const) {
    it(`${model}: a blocking answer calls the function (content null, finish_reason tool_calls), with user and max_completion_tokens`, async () => {
      const completion = await client.chat.completions.create({
        model,
        messages: [{ role: 'user', content: 'Weather in Paris?' }],
        tools: [weather, clock],
        tool_choice: 'auto',
        user: 'end-user-7',
        max_completion_tokens: 77,
      });
      const choice = completion.choices[0];
      expect(choice?.finish_reason).toBe('tool_calls');
      expect(choice?.message.content).toBeNull();
      expect(choice?.message.tool_calls).toEqual([{ id: expect.stringMatching(new RegExp(`^${idPrefix}`)) as unknown, type: 'function', function: { name: 'get_weather', arguments: '{"question":"Weather in Paris?","call":0}' } }]);
      expect(completion.model).toBe(served);
      const sent = lastBodyFor(served);
      expect(sent?.max_tokens).toBe(77);
      if (model === 'gpt') {
        expect(sent).toMatchObject({ tools: [weather, clock], tool_choice: 'auto', user: 'end-user-7' });
      } else {
        expect(sent?.tools).toEqual([
          { name: 'get_weather', description: 'Weather in a city', input_schema: weather.function.parameters },
          { name: 'get_time', input_schema: clock.function.parameters },
        ]);
        expect(sent?.tool_choice).toEqual({ type: 'auto' });
        expect(sent?.metadata).toEqual({ user_id: 'end-user-7' });
      }
    });

    it(`${model}: streams the call in pieces that the SDK's stream() helper joins, with usage (include_usage)`, async () => {
      const stream = client.chat.completions.stream({ model, messages: [{ role: 'user', content: 'now [[mock tool=get_time,toolCalls=2]]' }], tools: [weather, clock], stream_options: { include_usage: true } });
      const pieces: string[] = [];
      stream.on('tool_calls.function.arguments.delta', (e) => pieces.push(e.arguments_delta));
      let usage: OpenAI.CompletionUsage | undefined;
      stream.on('chunk', (chunk) => {
        if (chunk.usage) usage = chunk.usage;
      });
      const final = await stream.finalChatCompletion();
      const calls = final.choices[0]?.message.tool_calls ?? [];
      expect(calls.map((c) => (c.type === 'function' ? [c.function.name, JSON.parse(c.function.arguments) as unknown] : c.type))).toEqual([
        ['get_time', { question: 'now', call: 0 }],
        ['get_time', { question: 'now', call: 1 }],
      ]);
      expect(calls.every((c) => c.id.startsWith(idPrefix))).toBe(true);
      expect(pieces.length).toBeGreaterThan(2);
      expect(final.choices[0]?.finish_reason).toBe('tool_calls');
      expect(usage?.total_tokens).toBeGreaterThan(0);
    });

    for (const stream of [false, true]) {
      it(`${model}: runTools${stream ? ' (streaming)' : ''} calls the function and sends its result back; the provider saw the exchange`, async () => {
        const cities: string[] = [];
        const tool: RunnableToolFunctionWithParse<{ question: string }> = {
          type: 'function',
          function: {
            name: 'get_weather',
            description: 'Weather in a city',
            parameters: { type: 'object', properties: { question: { type: 'string' } } },
            parse: (args) => JSON.parse(args) as { question: string },
            function: (args) => {
              cities.push(args.question);
              return '25 °C';
            },
          },
        };
        const params = { model, messages: [{ role: 'user' as const, content: `Weather in Rome? ${String(stream)}` }], tools: [tool] };
        const runner = stream ? client.chat.completions.runTools({ ...params, stream: true }) : client.chat.completions.runTools(params);
        const content = await runner.finalContent();
        expect(cities).toEqual([`Weather in Rome? ${String(stream)}`]);
        // The mock echoes the tool results that reached it, under the call's id.
        expect(content).toMatch(new RegExp(`^Tool results: ${idPrefix}\\w+ → 25 °C$`));
        const sent = lastBodyFor(served)?.messages as Record<string, unknown>[];
        if (model === 'gpt') {
          expect(sent.map((m) => m.role)).toEqual(['user', 'assistant', 'tool']);
          expect(sent[1]).toMatchObject({ content: null, tool_calls: [{ type: 'function', function: { name: 'get_weather' } }] });
        } else {
          expect(sent.map((m) => m.role)).toEqual(['user', 'assistant', 'user']);
          expect(sent[1]?.content).toEqual([{ type: 'tool_use', id: expect.stringMatching(/^toolu_/) as unknown, name: 'get_weather', input: { question: `Weather in Rome? ${String(stream)}`, call: 0 } }]);
          expect(sent[2]?.content).toEqual([{ type: 'tool_result', tool_use_id: expect.stringMatching(/^toolu_/) as unknown, content: '25 °C' }]);
        }
      });
    }
  }

  for (const model of ['cut-gpt', 'cut-claude']) {
    it(`${model}: an answer that breaks off in its text is continued with the tools offered again, and its call follows the joined text`, async () => {
      const stream = client.chat.completions.stream({ model, messages: [{ role: 'user', content: 'Weather in Paris? [[mock answer=Checking%20the%20weather.]]' }], tools: [weather] });
      const final = await stream.finalChatCompletion();
      const message = final.choices[0]?.message;
      expect(message?.content).toBe('Checking the weather.');
      expect(message?.tool_calls?.map((c) => (c.type === 'function' ? [c.function.name, c.function.arguments] : c.type))).toEqual([['get_weather', '{"question":"Weather in Paris?","call":0}']]);
      expect(final.choices[0]?.finish_reason).toBe('tool_calls');
      const sent = lastBodyFor(`${model}-f`);
      // The fallback got the text the client had as a prefill, with the tools.
      expect((sent?.messages as { role: string; content: unknown }[]).at(-1)).toEqual({ role: 'assistant', content: 'Checking the w' });
      expect(sent?.tools).toHaveLength(1);
    });
  }

  it('stores the calls with the answer: a replayed stream and a repeated Idempotency-Key return them', async () => {
    const headers = { 'Idempotency-Key': `tools-${backendName}` };
    const first = await client.chat.completions.create({ model: 'gpt', messages: [{ role: 'user', content: 'stored call' }], tools: [weather] }, { headers });
    const call = first.choices[0]?.message.tool_calls?.[0];
    expect(call?.type).toBe('function');
    const turnId = first.id.replace(/^chatcmpl-/, '');

    const events = await replayed(turnId);
    const pieces = events.filter((e) => e.event === 'toolCall');
    expect(pieces[0]?.data).toMatchObject({ index: 0, id: call?.id, name: 'get_weather' });
    expect(pieces.map((e) => e.data.arguments).join('')).toBe('{"question":"stored call","call":0}');

    const again = await client.chat.completions.create({ model: 'gpt', messages: [{ role: 'user', content: 'stored call' }], tools: [weather] }, { headers });
    expect(again.choices[0]?.message).toMatchObject({ content: null, tool_calls: [call] });
    expect(again.choices[0]?.finish_reason).toBe('tool_calls');
    const streamed = client.chat.completions.stream({ model: 'gpt', messages: [{ role: 'user', content: 'stored call' }], tools: [weather] }, { headers });
    expect((await streamed.finalChatCompletion()).choices[0]?.message.tool_calls).toEqual([call]);
  });

  it('goes past a fallback chain\'s FastGPT endpoint to the OpenAI-compatible one when tools are given', async () => {
    const completion = await client.chat.completions.create({ model: 'mixed', messages: [{ role: 'user', content: 'mixed chain' }], tools: [weather] });
    expect(completion.model).toBe('tools-fallback');
    expect(completion.choices[0]?.message.tool_calls?.[0]).toMatchObject({ function: { name: 'get_weather' } });
    // Without tools the chain is the agent's as configured: FastGPT answers.
    const plain = await client.chat.completions.create({ model: 'mixed', messages: [{ role: 'user', content: 'mixed plain' }] });
    expect(plain.model).not.toBe('tools-fallback');
  });

  it('refuses with BadRequestError naming the parameter, and asks no provider', async () => {
    const before = mock.requests.length;
    const user = { role: 'user' as const, content: 'x' };
    const cases: [string, Record<string, unknown>, string, RegExp][] = [
      ['fastgpt', { tools: [weather] }, 'tools', /fastgpt/],
      ['dify', { tools: [weather] }, 'tools', /dify/],
      ['dify', { messages: [user, { role: 'assistant', content: null, tool_calls: [{ id: 'c1', type: 'function', function: { name: 'get_weather', arguments: '{}' } }] }, { role: 'tool', tool_call_id: 'c1', content: 'r' }] }, 'tools', /dify/],
      ['gpt', { messages: [user, { role: 'tool', content: 'r' }] }, 'messages[1].tool_call_id', /tool_call_id/],
      ['gpt', { messages: [{ role: 'user', content: 'x', tool_calls: [{ id: 'c1', type: 'function', function: { name: 'f', arguments: '{}' } }] }] }, 'messages[0].tool_calls', /assistant/],
      ['gpt', { messages: [user, { role: 'assistant' }, user] }, 'messages[1].content', /null only/],
      ['gpt', { tools: [weather], tool_choice: { type: 'function', function: { name: 'nope' } } }, 'tool_choice', /nope/],
      ['gpt', { tool_choice: 'required' }, 'tool_choice', /no tools/],
      ['gpt', { tools: [{ type: 'function', function: { name: 'bad name!' } }] }, 'tools[0].function.name', /./],
      ['gpt', { tools: [{ type: 'custom', custom: { name: 'x' } }] }, 'tools[0].type', /./],
      ['gpt', { functions: [{ name: 'f', parameters: {} }] }, 'functions', /tools/],
      ['gpt', { function_call: 'auto' }, 'function_call', /tool_choice/],
    ];
    for (const [model, extra, param, message] of cases) {
      const err = await client.chat.completions.create({ model, messages: [user], ...extra } as unknown as OpenAI.ChatCompletionCreateParamsNonStreaming).catch((e: unknown) => e);
      expect(err, `${model} ${param}`).toBeInstanceOf(OpenAI.BadRequestError);
      const e = err as InstanceType<typeof OpenAI.BadRequestError>;
      expect(e.type, param).toBe('invalid_request_error');
      expect(e.param, JSON.stringify(e.error)).toBe(param);
      expect(e.message, param).toMatch(message);
    }
    expect(mock.requests.length).toBe(before);
  });
});
