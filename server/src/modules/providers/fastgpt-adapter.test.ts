import { describe, expect, it } from 'vitest';
import { collect, never, textOf, useAdapterOnMock } from '../../test/providers.js';
import { FastGPTAdapter, toFastGPTMessages } from './fastgpt-adapter.js';
import type { AttachedFile, ProviderEvent } from './types.js';
import { UpstreamError } from './upstream-error.js';

const { fx, endpoint, request } = useAdapterOnMock((http) => new FastGPTAdapter(http), (url) => ({ id: 'ep-fastgpt', provider: 'fastgpt', url: `${url}/api`, apiKey: 'fastgpt-test-key', appId: 'mock-app', model: undefined }));

function lastChatBody(): Record<string, unknown> {
  const entry = fx.mock.requests.filter((r) => r.path.includes('/chat/completions')).at(-1);
  if (typeof entry?.body !== 'object' || entry.body === null) throw new Error('no recorded chat request');
  return entry.body as Record<string, unknown>;
}

describe('FastGPTAdapter.stream', () => {
  it('streams plain chunks without detail and ends with [DONE]', async () => {
    const events = await collect(fx.adapter, request('plain'));
    expect(textOf(events)).toMatch(/^Simulated answer to: plain/);
    expect(events.some((e) => e.type === 'status')).toBe(false);
    expect(events.at(-1)).toEqual({ type: 'done', finishReason: 'stop', sawDone: true });
    expect(lastChatBody()).toMatchObject({ stream: true, detail: false });
  });

  it('sends chatId, detail, variables and responseChatItemId, and echoes the ids as events', async () => {
    const events = await collect(fx.adapter, request('ids', { chatId: 'chat-1', detail: true, variables: { lang: 'en' }, responseChatItemId: 'item-1' }));
    expect(lastChatBody()).toMatchObject({ chatId: 'chat-1', detail: true, variables: { lang: 'en' }, responseChatItemId: 'item-1' });
    expect(events).toContainEqual({ type: 'chatId', chatId: 'chat-1' });
    expect(events).toContainEqual({ type: 'messageId', messageId: 'item-1' });
  });

  it('maps flowNodeStatus to status events and takes usage from flowResponses in detail mode', async () => {
    const events = await collect(fx.adapter, request('detail', { detail: true }));
    expect(events).toContainEqual({ type: 'status', status: 'running', name: 'AI 对话' });
    expect(events.find((e) => e.type === 'usage')).toMatchObject({ usage: { completionTokens: 4 } });
    expect(textOf(events)).toMatch(/^Simulated answer to: detail/);
    expect(events.at(-1)).toMatchObject({ type: 'done', sawDone: true });
  });

  it('passes an interactive node through as an interactive event', async () => {
    const events = await collect(fx.adapter, request('pick [[mock interactive=select]]', { detail: true }));
    const interactive = events.find((e) => e.type === 'interactive');
    expect(interactive).toMatchObject({ type: 'interactive', data: { type: 'userSelect', params: { userSelectOptions: expect.any(Array) as unknown } } });
    expect(events).toContainEqual({ type: 'status', status: 'running', name: '用户选择' });
  });

  it('maps reasoning_content to reasoning events', async () => {
    const events = await collect(fx.adapter, request('why [[mock reasoning=2]]', { detail: true }));
    expect(events.filter((e) => e.type === 'reasoning')).toHaveLength(2);
  });

  it('sends the system prompt as a leading system message', async () => {
    const events = await collect(fx.adapter, request('sys', { systemPrompt: 'You are terse.' }));
    expect(lastChatBody().messages).toEqual([
      { role: 'system', content: 'You are terse.' },
      { role: 'user', content: 'sys' },
    ]);
    expect(textOf(events)).toMatch(/^\[system prompt received\] /);
  });

  it('accepts base and full URLs', async () => {
    for (const url of [fx.mock.url, `${fx.mock.url}/api/v1`, `${fx.mock.url}/api/v1/chat/completions`]) {
      const events = await collect(fx.adapter, request('url', {}, { url }));
      expect(events.at(-1)).toMatchObject({ type: 'done', sawDone: true });
    }
  });

  it('ends with sawDone=false without [DONE]', async () => {
    const events = await collect(fx.adapter, request('x [[mock noDone=1]]', { detail: true }));
    expect(events.at(-1)).toMatchObject({ type: 'done', sawDone: false });
  });

  it('turns an in-stream error event into an http error with its code', async () => {
    const err = await collect(fx.adapter, request('x [[mock errorAfter=1 code=quota_exceeded]]', { detail: true })).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(UpstreamError);
    expect(err).toMatchObject({ kind: 'http', providerCode: 'quota_exceeded' });
  });

  it('does not count flow-node status as the first token', async () => {
    const events: ProviderEvent[] = [];
    const err = await fx.adapter
      .stream(request('x [[mock firstTokenDelay=2000]]', { detail: true }, { timeouts: { firstTokenMs: 200 } }), never, (event) => events.push(event))
      .then(
        () => undefined,
        (e: unknown) => e,
      );
    expect(events.some((e) => e.type === 'status')).toBe(true);
    expect(err).toMatchObject({ kind: 'timeout', message: expect.stringContaining('first token') as unknown });
  });

  it('maps a bad key to a non-retryable 401', async () => {
    await expect(collect(fx.adapter, request('x', {}, { apiKey: 'bad-key' }))).rejects.toMatchObject({
      kind: 'http',
      status: 401,
      providerCode: 'unAuthApiKey',
      retryable: false,
    });
  });

  it('turns a malformed answer chunk into a protocol error', async () => {
    await expect(collect(fx.adapter, request('x [[mock malformedAfter=2]]', { detail: true }))).rejects.toMatchObject({
      kind: 'protocol',
    });
  });
});

describe('FastGPTAdapter.complete', () => {
  it('returns text, usage, chat and message ids, and responseData as extra', async () => {
    const result = await fx.adapter.complete(
      request('block', { chatId: 'chat-b', detail: true, responseChatItemId: 'item-b' }),
      never,
    );
    expect(result.text).toMatch(/^Simulated answer to: block/);
    expect(result).toMatchObject({ chatId: 'chat-b', messageId: 'item-b', finishReason: 'stop', usage: { completionTokens: 4 } });
    expect(Array.isArray(result.extra)).toBe(true);
    expect(lastChatBody()).toMatchObject({ stream: false, detail: true });
  });
});

describe('FastGPTAdapter side APIs', () => {
  it('forwards feedback for an answer to the chat it belongs to', async () => {
    await collect(fx.adapter, request('rate me', { chatId: 'chat-fb', responseChatItemId: 'item-fb' }));
    const forwarded = await fx.adapter.feedback(
      { endpoint: endpoint(), chatId: 'chat-fb', messageId: 'item-fb', rating: 'down', comment: 'too vague' },
      never,
    );
    expect(forwarded).toBe(true);
    const sent = fx.mock.requests.at(-1);
    expect(sent?.path).toBe('/api/core/chat/feedback/updateUserFeedback');
    expect(sent?.body).toEqual({ appId: 'mock-app', chatId: 'chat-fb', dataId: 'item-fb', userBadFeedback: 'too vague' });
  });

  it('does not forward feedback without a chat id', async () => {
    const forwarded = await fx.adapter.feedback({ endpoint: endpoint(), chatId: undefined, messageId: 'm', rating: 'up' }, never);
    expect(forwarded).toBe(false);
  });

  it('reads the welcome text from chat init', async () => {
    expect(await fx.adapter.welcomeText(endpoint(), never)).toBe('Hello from the mock FastGPT app.');
    expect(fx.mock.requests.at(-1)?.path).toBe('/api/core/chat/init?appId=mock-app');
  });
});

describe('toFastGPTMessages', () => {
  const pdf: AttachedFile = { id: 'a1', name: 'plan.pdf', contentType: 'application/pdf', size: 4, sha256: 'x', data: new Uint8Array([37, 80, 68, 70]), text: 'The plan, in text' };
  const question = (file: AttachedFile) => [{ role: 'user' as const, content: [{ type: 'text' as const, text: 'read this' }, { type: 'file_url' as const, name: 'plan.pdf', url: '/api/attachments/a1', attachment: file }] }];

  it('sends an uploaded file as a file_url to its signed link when there is one', () => {
    const [message] = toFastGPTMessages(question({ ...pdf, link: 'https://chat.example.com/api/attachment-links/a1?expires=1&signature=s' }), undefined);
    expect(message?.content).toEqual([{ type: 'text', text: 'read this' }, { type: 'file_url', name: 'plan.pdf', url: 'https://chat.example.com/api/attachment-links/a1?expires=1&signature=s' }]);
  });

  it('sends its extracted text when there is no link (ATTACHMENT_LINK_BASE_URL unset), and an outside file link as it is', () => {
    const [message] = toFastGPTMessages(question(pdf), undefined);
    expect(message?.content).toEqual([{ type: 'text', text: 'read this' }, { type: 'text', text: 'Attached file plan.pdf (application/pdf):\n\nThe plan, in text' }]);
    const outside = toFastGPTMessages([{ role: 'user', content: [{ type: 'file_url', name: 'a.pdf', url: 'https://files.example.com/a.pdf' }] }], undefined);
    expect(outside[0]?.content).toEqual([{ type: 'file_url', name: 'a.pdf', url: 'https://files.example.com/a.pdf' }]);
  });
});
