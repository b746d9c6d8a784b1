import { createServer } from 'node:net';
import { describe, expect, it } from 'vitest';
import { collect, never, streamError, textOf, useAdapterOnMock } from '../../test/providers.js';
import type { EndpointTimeouts } from '../../db/schema.js';
import { OpenAIAdapter } from './openai-adapter.js';
import type { ProviderEvent, ProviderRequest } from './types.js';
import { UpstreamError } from './upstream-error.js';

const { fx, endpoint, request, lastBody } = useAdapterOnMock((http) => new OpenAIAdapter(http), (url) => ({ id: 'ep-1', provider: 'openai', url: `${url}/v1`, apiKey: 'sk-test-key', appId: undefined, model: 'gpt-test' }));
const failure = (req: ProviderRequest, signal = never) => streamError(fx.adapter, req, signal);



// One small deadline per test, so a slow machine cannot trip a different one first.
const headersOnly: EndpointTimeouts = { connectMs: 200 };
const firstTokenOnly: EndpointTimeouts = { firstTokenMs: 200 };
const idleOnly: EndpointTimeouts = { idleMs: 200 };

describe('OpenAIAdapter.stream', () => {
  it('streams text, model, usage and a done with sawDone', async () => {
    const events = await collect(fx.adapter, request('hello'), new AbortController().signal);
    expect(textOf(events)).toMatch(/^Simulated answer to: hello/);
    expect(events).toContainEqual({ type: 'model', model: 'gpt-test' });
    const usage = events.find((e) => e.type === 'usage');
    expect(usage).toMatchObject({ type: 'usage', usage: { completionTokens: 4 } });
    expect(events.at(-1)).toEqual({ type: 'done', finishReason: 'stop', sawDone: true });
  });

  it('asks for usage in the stream and sends the model, temperature and max tokens', async () => {
    await collect(fx.adapter, request('params', { temperature: 0.3, maxTokens: 77, user: 'u-1' }), new AbortController().signal);
    const body = lastBody();
    expect(body).toMatchObject({ model: 'gpt-test', stream: true, stream_options: { include_usage: true }, temperature: 0.3, max_tokens: 77, user: 'u-1' });
    expect(fx.mock.requests.at(-1)?.headers.authorization).toBe('Bearer ***');
  });

  it('maps reasoning_content deltas to reasoning events before the text', async () => {
    const events = await collect(fx.adapter, request('think [[mock reasoning=3]]'), new AbortController().signal);
    const kinds = events.filter((e) => e.type === 'reasoning' || e.type === 'text').map((e) => e.type);
    expect(kinds.slice(0, 3)).toEqual(['reasoning', 'reasoning', 'reasoning']);
    expect(kinds.at(-1)).toBe('text');
  });

  it('sends the system prompt as a leading system message', async () => {
    const events = await collect(fx.adapter, request('sys', { systemPrompt: 'Be brief.' }), new AbortController().signal);
    expect(lastBody().messages).toEqual([
      { role: 'system', content: 'Be brief.' },
      { role: 'user', content: 'sys' },
    ]);
    expect(textOf(events)).toMatch(/^\[system prompt received\] /);
  });

  it('keeps a system message the conversation already starts with', async () => {
    const req: ProviderRequest = {
      endpoint: endpoint(),
      systemPrompt: 'agent prompt',
      messages: [
        { role: 'system', content: 'own prompt' },
        { role: 'user', content: 'hi' },
      ],
    };
    await collect(fx.adapter, req, new AbortController().signal);
    expect(lastBody().messages).toEqual(req.messages);
  });

  it('ends with sawDone=false when the stream closes without [DONE]', async () => {
    const events = await collect(fx.adapter, request('x [[mock noDone=1]]'), new AbortController().signal);
    expect(events.at(-1)).toEqual({ type: 'done', finishReason: 'stop', sawDone: false });
    expect(events.some((e) => e.type === 'usage')).toBe(true);
  });

  it('accepts the base URL without /v1 and the full chat URL', async () => {
    for (const url of [fx.mock.url, `${fx.mock.url}/v1/chat/completions`, `${fx.mock.url}/chat/completions`]) {
      const events = await collect(fx.adapter, request('url', {}, { url }), new AbortController().signal);
      expect(events.at(-1)).toMatchObject({ type: 'done', sawDone: true });
    }
    expect(fx.mock.requests.at(-1)?.path).toBe('/chat/completions');
  });
});

describe('OpenAIAdapter errors', () => {
  it('maps 429 with Retry-After into a retryable http error', async () => {
    const err = await failure(request('x', {}, { url: `${fx.mock.url}/fault/status=429,retryAfter=7/v1` }));
    expect(err).toMatchObject({ kind: 'http', status: 429, providerCode: 'rate_limit_exceeded', retryAfter: 7, retryable: true });
  });

  it('maps 503 into a retryable http error', async () => {
    const err = await failure(request('x [[mock status=503]]'));
    expect(err).toMatchObject({ kind: 'http', status: 503, retryable: true });
  });

  it('marks context_length_exceeded as not retryable', async () => {
    const err = await failure(request('x [[mock status=400 code=context_length_exceeded]]'));
    expect(err).toMatchObject({ kind: 'http', status: 400, providerCode: 'context_length_exceeded', retryable: false });
  });

  it('marks a bad key as a non-retryable 401 and never repeats the key', async () => {
    const err = await failure(request('x', {}, { apiKey: 'bad-key' }));
    expect(err).toMatchObject({ kind: 'http', status: 401, providerCode: 'invalid_api_key', retryable: false });
    expect(err.message).not.toContain('bad-key');
    expect(err.options.body ?? '').not.toContain('bad-key');
  });

  it('times out when the headers come later than the connect deadline', async () => {
    const err = await failure(request('x [[mock headersDelay=2000]]', {}, { timeouts: headersOnly }));
    expect(err.kind).toBe('timeout');
    expect(err.message).toContain('headers');
  });

  it('times out when the first token comes later than its deadline', async () => {
    const err = await failure(request('x [[mock firstTokenDelay=2000]]', {}, { timeouts: firstTokenOnly }));
    expect(err.kind).toBe('timeout');
    expect(err.message).toContain('first token');
  });

  it('times out when a started stream stalls longer than the idle deadline', async () => {
    const err = await failure(request('x [[mock stallAfter=2]]', {}, { timeouts: idleOnly }));
    expect(err.kind).toBe('timeout');
    expect(err.message).toContain('idle');
  });

  it('enforces the total deadline', async () => {
    const err = await failure(request('x [[mock chunks=50 interval=20]]', {}, { timeouts: { totalMs: 150 } }));
    expect(err.kind).toBe('timeout');
    expect(err.message).toContain('total');
  });

  it('turns a cut stream into a network error', async () => {
    const err = await failure(request('x [[mock cutAfter=2]]'));
    expect(err).toMatchObject({ kind: 'network', retryable: true });
  });

  it('turns a malformed chunk into a protocol error', async () => {
    const err = await failure(request('x [[mock malformedAfter=1]]'));
    expect(err.kind).toBe('protocol');
  });

  it('turns an in-stream error object into an http error with its code', async () => {
    const err = await failure(request('x [[mock errorAfter=1 code=server_error]]'));
    expect(err).toMatchObject({ kind: 'http', providerCode: 'server_error', retryable: true });
  });

  it('turns a refused connection into a network error', async () => {
    const port = await closedPort();
    const err = await failure(request('x', {}, { url: `http://127.0.0.1:${port}/v1` }));
    expect(err).toMatchObject({ kind: 'network', providerCode: 'ECONNREFUSED', retryable: true });
  });

  it('ends with kind aborted when the caller aborts mid-stream', async () => {
    const controller = new AbortController();
    const seen: ProviderEvent[] = [];
    let caught: unknown;
    try {
      await fx.adapter.stream(request('x [[mock chunks=20 interval=100]]'), controller.signal, (event) => {
        seen.push(event);
        if (event.type === 'text') controller.abort();
      });
    } catch (err) {
      caught = err;
    }
    expect(seen.some((e) => e.type === 'text')).toBe(true);
    expect(caught).toBeInstanceOf(UpstreamError);
    expect(caught).toMatchObject({ kind: 'aborted', retryable: false });
  });

  it('ends with kind aborted when the signal is already aborted', async () => {
    const err = await failure(request('x'), AbortSignal.abort());
    expect(err.kind).toBe('aborted');
  });
});

describe('OpenAIAdapter.complete', () => {
  it('returns text, reasoning, usage, model and finish reason', async () => {
    const result = await fx.adapter.complete(request('block [[mock reasoning=2]]'), new AbortController().signal);
    expect(result.text).toMatch(/^Simulated answer to: block/);
    expect(result.reasoning).toBeTruthy();
    expect(result.usage?.completionTokens).toBe(4);
    expect(result).toMatchObject({ model: 'gpt-test', finishReason: 'stop' });
    expect(lastBody()).toMatchObject({ stream: false });
    expect(lastBody().stream_options).toBeUndefined();
  });

  it('throws a protocol error for a body that is not JSON', async () => {
    await expect(fx.adapter.complete(request('x [[mock malformedAfter=1]]'), new AbortController().signal)).rejects.toMatchObject({
      kind: 'protocol',
    });
  });

  it('throws a retryable http error for 500', async () => {
    await expect(fx.adapter.complete(request('x [[mock status=500]]'), new AbortController().signal)).rejects.toMatchObject({
      kind: 'http',
      status: 500,
      retryable: true,
    });
  });
});

/** A port nothing listens on: bind, read, close. */
async function closedPort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const address = server.address();
  const port = typeof address === 'object' && address ? address.port : 0;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}
