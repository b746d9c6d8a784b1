import { describe, expect, it } from 'vitest';
import { collect, never, textOf, useAdapterOnMock } from '../../test/providers.js';
import { AnthropicAdapter, toAnthropicMessages } from './anthropic-adapter.js';

const { fx, request, lastBody } = useAdapterOnMock((http) => new AnthropicAdapter(http), (url) => ({ id: 'ep-anthropic', provider: 'anthropic', url, apiKey: 'sk-ant-test', appId: undefined, model: 'claude-test' }));


describe('AnthropicAdapter.stream', () => {
  it('streams text, model, message id, usage and done', async () => {
    const events = await collect(fx.adapter, request('hello'));
    expect(textOf(events)).toMatch(/^Simulated answer to: hello/);
    expect(events).toContainEqual({ type: 'model', model: 'claude-test' });
    expect(events.some((e) => e.type === 'messageId')).toBe(true);
    expect(events.find((e) => e.type === 'usage')).toMatchObject({ usage: { completionTokens: 4 } });
    expect(events.at(-1)).toEqual({ type: 'done', finishReason: 'end_turn', sawDone: true });
  });

  it('sends x-api-key, anthropic-version and the default max_tokens', async () => {
    await collect(fx.adapter, request('headers'));
    const sent = fx.mock.requests.at(-1);
    expect(sent?.path).toBe('/v1/messages');
    expect(sent?.headers['x-api-key']).toBe('***');
    expect(sent?.headers['anthropic-version']).toBe('2023-06-01');
    expect(sent?.headers.authorization).toBeUndefined();
    expect(lastBody()).toMatchObject({ model: 'claude-test', max_tokens: 4096, stream: true });
  });

  it('sends the system prompt top-level, never as a message', async () => {
    const events = await collect(fx.adapter, request('sys', { systemPrompt: 'Answer in French.' }));
    expect(lastBody().system).toBe('Answer in French.');
    expect(lastBody().messages).toEqual([{ role: 'user', content: 'sys' }]);
    expect(textOf(events)).toMatch(/^\[system prompt received\] /);
  });

  it('maps thinking deltas to reasoning events', async () => {
    const events = await collect(fx.adapter, request('think [[mock reasoning=3]]'));
    expect(events.filter((e) => e.type === 'reasoning')).toHaveLength(3);
    expect(textOf(events)).toMatch(/^Simulated answer to: think/);
  });

  it('ends with sawDone=false without message_stop', async () => {
    const events = await collect(fx.adapter, request('x [[mock noDone=1]]'));
    expect(events.at(-1)).toEqual({ type: 'done', finishReason: 'end_turn', sawDone: false });
  });

  it('turns an in-stream error event into an http error with its type as code', async () => {
    await expect(collect(fx.adapter, request('x [[mock errorAfter=1]]'))).rejects.toMatchObject({
      kind: 'http',
      providerCode: 'overloaded_error',
      retryable: true,
    });
  });

  it('maps 529 overloaded with Retry-After into a retryable error', async () => {
    await expect(collect(fx.adapter, request('x [[mock status=529 retryAfter=3]]'))).rejects.toMatchObject({
      kind: 'http',
      status: 529,
      providerCode: 'overloaded_error',
      retryAfter: 3,
      retryable: true,
    });
  });

  it('maps a bad key to a non-retryable 401 authentication_error', async () => {
    await expect(collect(fx.adapter, request('x', {}, { apiKey: 'bad-key' }))).rejects.toMatchObject({
      kind: 'http',
      status: 401,
      providerCode: 'authentication_error',
      retryable: false,
    });
  });

  it('times out when the stream stalls after it started', async () => {
    await expect(collect(fx.adapter, request('x [[mock stallAfter=1]]', {}, { timeouts: { idleMs: 200 } }))).rejects.toMatchObject({
      kind: 'timeout',
      message: expect.stringContaining('idle') as unknown,
    });
  });

  it('turns a cut stream into a network error', async () => {
    await expect(collect(fx.adapter, request('x [[mock cutAfter=1]]'))).rejects.toMatchObject({ kind: 'network' });
  });

  it('accepts the /v1 base and the full messages URL', async () => {
    for (const url of [`${fx.mock.url}/v1`, `${fx.mock.url}/v1/messages`]) {
      const events = await collect(fx.adapter, request('url', {}, { url }));
      expect(events.at(-1)).toMatchObject({ type: 'done', sawDone: true });
    }
  });
});

describe('AnthropicAdapter.complete', () => {
  it('returns text, reasoning, usage, model and stop reason', async () => {
    const result = await fx.adapter.complete(request('block [[mock reasoning=2]]', { maxTokens: 50 }), never);
    expect(result.text).toMatch(/^Simulated answer to: block/);
    expect(result.reasoning).toBeTruthy();
    expect(result).toMatchObject({ model: 'claude-test', finishReason: 'end_turn', usage: { completionTokens: 4 } });
    expect(lastBody()).toMatchObject({ max_tokens: 50, stream: false });
  });
});

describe('toAnthropicMessages', () => {
  it('folds system messages into system and lets a leading one win over the agent prompt', () => {
    const out = toAnthropicMessages(
      [
        { role: 'system', content: 'own' },
        { role: 'user', content: 'hi' },
      ],
      'agent',
    );
    expect(out).toEqual({ system: 'own', messages: [{ role: 'user', content: 'hi' }] });
  });

  it('maps image parts to image blocks', () => {
    const out = toAnthropicMessages(
      [
        {
          role: 'user',
          content: [
            { type: 'text', text: 'look' },
            { type: 'image_url', image_url: { url: 'data:image/png;base64,AAAA' } },
            { type: 'image_url', image_url: { url: 'https://example.com/a.png' } },
          ],
        },
      ],
      undefined,
    );
    expect(out.messages[0]?.content).toEqual([
      { type: 'text', text: 'look' },
      { type: 'image', source: { type: 'base64', media_type: 'image/png', data: 'AAAA' } },
      { type: 'image', source: { type: 'url', url: 'https://example.com/a.png' } },
    ]);
  });
});
