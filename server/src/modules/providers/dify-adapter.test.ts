import { describe, expect, it } from 'vitest';
import { collect, never, textOf, useAdapterOnMock } from '../../test/providers.js';
import { DifyAdapter } from './dify-adapter.js';
import type { ProviderEvent } from './types.js';

const { fx, endpoint, request } = useAdapterOnMock((http) => new DifyAdapter(http), (url) => ({ id: 'ep-dify', provider: 'dify', url: `${url}/v1`, apiKey: 'app-test-key', appId: undefined, model: undefined }), { user: 'user-1' });

function lastChatBody(): Record<string, unknown> {
  const entry = fx.mock.requests.filter((r) => r.path.endsWith('/chat-messages')).at(-1);
  if (typeof entry?.body !== 'object' || entry.body === null) throw new Error('no recorded chat request');
  return entry.body as Record<string, unknown>;
}

describe('DifyAdapter.stream', () => {
  it('streams text, conversation id, message id, usage and done', async () => {
    const events = await collect(fx.adapter, request('hello'));
    expect(textOf(events)).toMatch(/^Simulated answer to: hello/);
    expect(events.filter((e) => e.type === 'chatId')).toHaveLength(1);
    const messageId = events.find((e) => e.type === 'messageId');
    expect(messageId).toMatchObject({ type: 'messageId', messageId: expect.any(String) as unknown, taskId: expect.any(String) as unknown });
    expect(events.find((e) => e.type === 'usage')).toMatchObject({ usage: { completionTokens: 4 } });
    expect(events.at(-1)).toEqual({ type: 'done', finishReason: 'stop', sawDone: true });
    expect(lastChatBody()).toMatchObject({ query: 'hello', user: 'user-1', response_mode: 'streaming', inputs: {} });
  });

  it('sends conversation_id and variables, and the system prompt as inputs.system_prompt', async () => {
    const events = await collect(fx.adapter, request('again', { chatId: 'conv-1', variables: { topic: 'tea' }, systemPrompt: 'Be kind.' }));
    expect(lastChatBody()).toMatchObject({ conversation_id: 'conv-1', inputs: { topic: 'tea', system_prompt: 'Be kind.' } });
    expect(events).toContainEqual({ type: 'chatId', chatId: 'conv-1' });
    expect(textOf(events)).toMatch(/^\[system prompt received\] /);
  });

  it('sends only the last user message as the query', async () => {
    await collect(fx.adapter, {
      endpoint: endpoint(),
      user: 'user-1',
      messages: [
        { role: 'user', content: 'first' },
        { role: 'assistant', content: 'answer' },
        { role: 'user', content: [{ type: 'text', text: 'second' }] },
      ],
    });
    expect(lastChatBody().query).toBe('second');
  });

  it('maps agent thoughts to reasoning events', async () => {
    const events = await collect(fx.adapter, request('think [[mock reasoning=2]]'));
    expect(events.filter((e) => e.type === 'reasoning')).toHaveLength(2);
  });

  it('ends with sawDone=false without message_end', async () => {
    const events = await collect(fx.adapter, request('x [[mock noDone=1]]'));
    expect(events.at(-1)).toEqual({ type: 'done', finishReason: undefined, sawDone: false });
  });

  it('turns an error event into an http error with its code and status', async () => {
    await expect(collect(fx.adapter, request('x [[mock errorAfter=1 code=provider_quota_exceeded]]'))).rejects.toMatchObject({
      kind: 'http',
      status: 500,
      providerCode: 'provider_quota_exceeded',
      retryable: true,
    });
  });

  it('maps a 400 invalid_param to a non-retryable error', async () => {
    await expect(collect(fx.adapter, request('x [[mock status=400]]'))).rejects.toMatchObject({
      kind: 'http',
      status: 400,
      providerCode: 'invalid_param',
      retryable: false,
    });
  });

  it('maps a bad key to a non-retryable 401', async () => {
    await expect(collect(fx.adapter, request('x', {}, { apiKey: 'bad-key' }))).rejects.toMatchObject({
      kind: 'http',
      status: 401,
      retryable: false,
    });
  });

  it('does not count the opening ping as the first token', async () => {
    await expect(
      collect(fx.adapter, request('x [[mock firstTokenDelay=2000]]', {}, { timeouts: { firstTokenMs: 200 } })),
    ).rejects.toMatchObject({ kind: 'timeout', message: expect.stringContaining('first token') as unknown });
  });

  it('turns a cut stream into a network error', async () => {
    await expect(collect(fx.adapter, request('x [[mock cutAfter=2]]'))).rejects.toMatchObject({ kind: 'network' });
  });

  it('turns a malformed event into a protocol error', async () => {
    await expect(collect(fx.adapter, request('x [[mock malformedAfter=1]]'))).rejects.toMatchObject({ kind: 'protocol' });
  });

  it('accepts the host alone and the full chat-messages URL', async () => {
    for (const url of [fx.mock.url, `${fx.mock.url}/v1/chat-messages`]) {
      const events = await collect(fx.adapter, request('url', {}, { url }));
      expect(events.at(-1)).toMatchObject({ type: 'done', sawDone: true });
    }
  });
});

describe('DifyAdapter.complete', () => {
  it('returns text, usage, conversation and message ids', async () => {
    const result = await fx.adapter.complete(request('block', { chatId: 'conv-b' }), never);
    expect(result.text).toMatch(/^Simulated answer to: block/);
    expect(result).toMatchObject({ chatId: 'conv-b', messageId: expect.any(String) as unknown, usage: { completionTokens: 4 } });
    expect(lastChatBody()).toMatchObject({ response_mode: 'blocking' });
  });
});

describe('DifyAdapter side APIs', () => {
  it('stops a running generation by its message id', async () => {
    const events: ProviderEvent[] = [];
    let stopping: Promise<void> | undefined;
    await fx.adapter.stream(request('long [[mock chunks=50 interval=50]]'), never, (event) => {
      events.push(event);
      if (event.type === 'text' && events.filter((e) => e.type === 'text').length === 1) {
        const messageId = events.find((e) => e.type === 'messageId');
        if (messageId?.type !== 'messageId') throw new Error('no message id before the first text');
        stopping = (async () => {
          await fx.adapter.stop(endpoint(), messageId.messageId, 'user-1', never);
          const stopCall = fx.mock.requests.at(-1);
          expect(stopCall?.path).toBe(`/v1/chat-messages/${messageId.taskId}/stop`);
          expect(stopCall?.body).toEqual({ user: 'user-1' });
        })();
      }
    });
    expect(stopping).toBeDefined();
    await stopping;
    // The mock ends a stopped stream with message_end, well before its 50 chunks.
    expect(events.filter((e) => e.type === 'text').length).toBeLessThan(50);
    expect(events.at(-1)).toMatchObject({ type: 'done', sawDone: true });
  });

  it('forwards feedback as like/dislike with the user', async () => {
    const forwarded = await fx.adapter.feedback(
      { endpoint: endpoint(), chatId: 'conv-1', messageId: 'msg-1', rating: 'up', comment: 'great', user: 'user-1' },
      never,
    );
    expect(forwarded).toBe(true);
    const sent = fx.mock.requests.at(-1);
    expect(sent?.path).toBe('/v1/messages/msg-1/feedbacks');
    expect(sent?.body).toEqual({ rating: 'like', user: 'user-1', content: 'great' });
  });

  it('withdraws feedback with a null rating', async () => {
    await fx.adapter.feedback({ endpoint: endpoint(), chatId: undefined, messageId: 'msg-2', rating: null, user: 'user-1' }, never);
    expect(fx.mock.requests.at(-1)?.body).toEqual({ rating: null, user: 'user-1' });
  });

  it('reads the opening statement from parameters', async () => {
    expect(await fx.adapter.welcomeText(endpoint(), never)).toBe('Hello from the mock Dify app.');
  });
});
