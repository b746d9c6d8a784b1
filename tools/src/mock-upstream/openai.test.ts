import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { MockUpstream } from './index.js';
import { OPENAI_AUTH, json, parseSse, postJson, readFully, startMock } from './test-support.js';

interface Chunk {
  id: string;
  object: string;
  created: number;
  model: string;
  choices: { index: number; delta: { role?: string; content?: string | null; reasoning_content?: string }; finish_reason: string | null }[];
  usage?: { prompt_tokens: number; completion_tokens: number; total_tokens: number } | null;
}

let mock: MockUpstream;
beforeAll(async () => {
  mock = await startMock();
});
afterAll(async () => {
  await mock.close();
});

const chat = (body: Record<string, unknown>, headers: Record<string, string> = OPENAI_AUTH, path = '/v1/chat/completions') =>
  postJson(mock.url + path, { model: 'gpt-test', messages: [{ role: 'user', content: 'Hello' }], ...body }, headers);

async function streamChunks(body: Record<string, unknown>, path?: string): Promise<{ chunks: Chunk[]; done: boolean; raw: string }> {
  const res = await chat({ stream: true, ...body }, OPENAI_AUTH, path);
  expect(res.status).toBe(200);
  expect(res.headers.get('content-type')).toMatch(/^text\/event-stream/);
  const { text } = await readFully(res);
  const events = parseSse(text);
  const done = events.at(-1)?.data === '[DONE]';
  return { chunks: events.filter((e) => e.data !== '[DONE]').map((e) => json<Chunk>(e.data)), done, raw: text };
}

const contentOf = (chunks: Chunk[]): string => chunks.map((c) => c.choices[0]?.delta.content ?? '').join('');

describe('openai chat completions', () => {
  it('streams chat.completion.chunk objects: role first, one chunk per text piece, stop, [DONE]', async () => {
    const { chunks, done } = await streamChunks({});
    expect(done).toBe(true);
    expect(chunks[0]?.choices[0]?.delta).toMatchObject({ role: 'assistant', content: '' });
    const text = chunks.filter((c) => (c.choices[0]?.delta.content ?? '') !== '');
    expect(text).toHaveLength(4);
    expect(contentOf(chunks)).toMatch(/^Simulated answer to: Hello /);
    const last = chunks.at(-1);
    expect(last?.choices[0]).toMatchObject({ delta: {}, finish_reason: 'stop' });
    for (const chunk of chunks) {
      expect(chunk).toMatchObject({ id: chunks[0]?.id, object: 'chat.completion.chunk', model: 'gpt-test' });
      expect(chunk.id).toMatch(/^chatcmpl-/);
      expect(Number.isInteger(chunk.created)).toBe(true);
      expect(chunk.usage).toBeUndefined();
    }
  });

  it('is deterministic for the same question', async () => {
    const first = contentOf((await streamChunks({})).chunks);
    const second = contentOf((await streamChunks({})).chunks);
    expect(second).toBe(first);
  });

  it('adds a usage chunk with empty choices before [DONE] when stream_options.include_usage is set', async () => {
    const messages = [
      { role: 'system', content: 'Be brief.' },
      { role: 'user', content: 'What is up?' },
    ];
    const { chunks, done } = await streamChunks({ messages, stream_options: { include_usage: true } });
    expect(done).toBe(true);
    const usageChunk = chunks.at(-1);
    expect(usageChunk?.choices).toEqual([]);
    // 9 + 11 characters -> 5 prompt tokens; 4 text chunks -> 4 completion tokens.
    expect(usageChunk?.usage).toEqual({ prompt_tokens: 5, completion_tokens: 4, total_tokens: 9 });
    for (const chunk of chunks.slice(0, -1)) expect(chunk.usage).toBeNull();
  });

  it('answers a blocking request with a chat.completion', async () => {
    const res = await chat({ messages: [{ role: 'user', content: [{ type: 'text', text: 'Parts work' }] }] });
    expect(res.status).toBe(200);
    const body = json<Record<string, unknown>>(await res.text());
    expect(body).toMatchObject({
      object: 'chat.completion',
      model: 'gpt-test',
      choices: [{ index: 0, message: { role: 'assistant' }, finish_reason: 'stop' }],
      usage: { prompt_tokens: 3, completion_tokens: 4, total_tokens: 7 },
    });
    expect(body.id).toMatch(/^chatcmpl-/);
    const choices = body.choices as { message: { content: string } }[];
    expect(choices[0]?.message.content).toMatch(/^Simulated answer to: Parts work /);
  });

  it('marks answers that received a system (or developer) prompt', async () => {
    const messages = [
      { role: 'developer', content: 'You are terse.' },
      { role: 'user', content: 'Hi' },
    ];
    const { chunks } = await streamChunks({ messages });
    expect(contentOf(chunks)).toMatch(/^\[system prompt received\] Simulated answer to: Hi /);
  });

  it('streams reasoning_content deltas before the answer when reasoning is asked for', async () => {
    const { chunks } = await streamChunks({ messages: [{ role: 'user', content: 'Think [[mock reasoning=3]]' }] });
    const kinds = chunks
      .map((c) => c.choices[0]?.delta)
      .map((d) => (d?.reasoning_content !== undefined ? 'reasoning' : (d?.content ?? '') !== '' ? 'text' : 'other'));
    expect(kinds.filter((k) => k === 'reasoning')).toHaveLength(3);
    expect(kinds.lastIndexOf('reasoning')).toBeLessThan(kinds.indexOf('text'));
    expect(contentOf(chunks)).toMatch(/^Simulated answer to: Think /);

    const blocking = json<{ choices: { message: { reasoning_content?: string } }[] }>(
      await (await chat({ messages: [{ role: 'user', content: 'Think [[mock reasoning=2]]' }] })).text(),
    );
    expect(blocking.choices[0]?.message.reasoning_content).toBe('Reasoning step 1. Reasoning step 2. ');
  });

  it('serves /chat/completions as an alias and lists mock-model', async () => {
    const { chunks, done } = await streamChunks({}, '/chat/completions');
    expect(done).toBe(true);
    expect(contentOf(chunks)).toMatch(/^Simulated answer/);
    const models = await fetch(`${mock.url}/v1/models`, { headers: OPENAI_AUTH });
    expect(json(await models.text())).toMatchObject({ object: 'list', data: [{ id: 'mock-model', object: 'model' }] });
  });

  it('refuses bad-key and a missing key with 401 in the OpenAI error format', async () => {
    const bad = await chat({}, { authorization: 'Bearer bad-key' });
    expect(bad.status).toBe(401);
    expect(json(await bad.text())).toEqual({
      error: { message: expect.any(String) as string, type: 'invalid_request_error', param: null, code: 'invalid_api_key' },
    });
    const missing = await chat({}, {});
    expect(missing.status).toBe(401);
    expect(json(await missing.text())).toMatchObject({ error: { type: 'invalid_request_error', code: null } });
  });

  it('rejects a request without messages or model with 400', async () => {
    const noMessages = await postJson(`${mock.url}/v1/chat/completions`, { model: 'x' }, OPENAI_AUTH);
    expect(noMessages.status).toBe(400);
    expect(json(await noMessages.text())).toMatchObject({ error: { type: 'invalid_request_error' } });
    const noModel = await postJson(`${mock.url}/v1/chat/completions`, { messages: [{ role: 'user', content: 'x' }] }, OPENAI_AUTH);
    expect(noModel.status).toBe(400);
  });

  it('answers a status fault with the OpenAI error body, code and Retry-After', async () => {
    const res = await chat({}, { ...OPENAI_AUTH, 'x-mock-fault': 'status=400 code=context_length_exceeded' });
    expect(res.status).toBe(400);
    expect(json(await res.text())).toEqual({
      error: { message: expect.any(String) as string, type: 'invalid_request_error', param: 'messages', code: 'context_length_exceeded' },
    });
    const limited = await chat({ stream: true }, { ...OPENAI_AUTH, 'x-mock-fault': 'status=429;retryAfter=7' });
    expect(limited.status).toBe(429);
    expect(limited.headers.get('retry-after')).toBe('7');
    expect(json(await limited.text())).toMatchObject({ error: { type: 'requests', code: 'rate_limit_exceeded' } });
  });

  describe('continuing a prefilled answer (a trailing assistant message)', () => {
    const question = { role: 'user', content: 'Hello' };

    it('streams only what follows the prefill when the answer starts with it, wherever it breaks off', async () => {
      const whole = contentOf((await streamChunks({})).chunks);
      for (const cut of [0, 5, 22, whole.length - 1]) {
        const prefill = whole.slice(0, cut);
        const { chunks, done } = await streamChunks({ messages: [question, { role: 'assistant', content: prefill }] });
        expect(done).toBe(true);
        expect(prefill + contentOf(chunks)).toBe(whole);
      }
    });

    it('continues the same way with vLLM\'s continue_final_message, and refuses it with add_generation_prompt left on', async () => {
      const whole = contentOf((await streamChunks({})).chunks);
      const prefill = whole.slice(0, 10);
      const continued = await streamChunks({ messages: [question, { role: 'assistant', content: prefill }], continue_final_message: true, add_generation_prompt: false });
      expect(prefill + contentOf(continued.chunks)).toBe(whole);
      const refused = await chat({ stream: true, messages: [question, { role: 'assistant', content: prefill }], continue_final_message: true });
      expect(refused.status).toBe(400);
    });

    it('follows a prefill that is not the answer\'s start with the whole answer', async () => {
      const whole = contentOf((await streamChunks({})).chunks);
      const { chunks } = await streamChunks({ messages: [question, { role: 'assistant', content: 'Something else' }] });
      expect(contentOf(chunks)).toBe(whole);
    });

    it('prefill=refuse answers 400 to a prefilled request only', async () => {
      const refused = await chat({ stream: true, messages: [question, { role: 'assistant', content: 'Simulated' }] }, { ...OPENAI_AUTH, 'x-mock-fault': 'prefill=refuse' });
      expect(refused.status).toBe(400);
      expect(json(await refused.text())).toMatchObject({ error: { type: 'invalid_request_error', code: 'prefill_unsupported' } });
      const plain = await chat({ stream: true }, { ...OPENAI_AUTH, 'x-mock-fault': 'prefill=refuse' });
      expect(plain.status).toBe(200);
      await readFully(plain);
    });
  });
});
