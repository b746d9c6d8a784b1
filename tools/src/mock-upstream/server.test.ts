import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { fileURLToPath } from 'node:url';
import { afterEach, describe, expect, it } from 'vitest';
import type { MockUpstream } from './index.js';
import { createMockUpstream } from './index.js';
import {
  ANTHROPIC_AUTH,
  OPENAI_AUTH,
  SseReader,
  eventually,
  json,
  parseSse,
  postJson,
  readFully,
  startMock,
} from './test-support.js';

const mocks: MockUpstream[] = [];
async function mockFor(options: Parameters<typeof startMock>[0] = {}): Promise<MockUpstream> {
  const mock = await startMock(options);
  mocks.push(mock);
  return mock;
}
afterEach(async () => {
  await Promise.all(mocks.splice(0).map((m) => m.close()));
});

const userMessage = (content: string) => [{ role: 'user', content }];

describe('request recording', () => {
  it('records method, path, provider, parsed body and effective faults with secrets masked', async () => {
    const mock = await mockFor();
    await (
      await postJson(
        `${mock.url}/fault/chunks=2/v1/chat/completions?trace=1`,
        { model: 'm', messages: userMessage('hi [[mock interval=1]]') },
        { authorization: 'Bearer sk-live-very-secret', cookie: 'session=abc' },
      )
    ).text();
    await (
      await postJson(
        `${mock.url}/v1/messages`,
        { model: 'c', max_tokens: 5, messages: userMessage('x') },
        { ...ANTHROPIC_AUTH, 'x-api-key': 'sk-ant-very-secret', 'x-mock-fault': 'chunks=1' },
      )
    ).text();

    const [openai, anthropic] = mock.requests;
    expect(openai).toMatchObject({
      method: 'POST',
      path: '/fault/chunks=2/v1/chat/completions?trace=1',
      provider: 'openai',
      body: { model: 'm', messages: userMessage('hi [[mock interval=1]]') },
      fault: { chunks: 2, interval: 1 },
    });
    expect(openai?.headers.authorization).toBe('Bearer ***');
    expect(openai?.headers.cookie).toBe('***');
    expect(openai?.headers['content-type']).toBe('application/json');
    expect(anthropic).toMatchObject({ provider: 'anthropic', fault: { chunks: 1 } });
    expect(anthropic?.headers['x-api-key']).toBe('***');
    expect(anthropic?.headers['anthropic-version']).toBe('2023-06-01');
    const everything = JSON.stringify(mock.requests);
    expect(everything).not.toContain('very-secret');
  });

  it('keeps only the most recent requests, newest last, and clears on demand', async () => {
    const mock = await mockFor({ maxRecordedRequests: 3 });
    for (let i = 0; i < 5; i++) {
      await (await postJson(`${mock.url}/v1/chat/completions`, { model: 'm', messages: userMessage(`q${i}`) }, OPENAI_AUTH)).text();
    }
    expect(mock.requests.map((r) => (r.body as { messages: { content: string }[] }).messages[0]?.content)).toEqual(['q2', 'q3', 'q4']);
    mock.clearRequests();
    expect(mock.requests).toEqual([]);
  });

  it('records rejected requests too (bad-key)', async () => {
    const mock = await mockFor();
    const res = await postJson(`${mock.url}/v1/chat-messages`, { query: 'x', inputs: {}, user: 'u' }, { authorization: 'Bearer bad-key' });
    expect(res.status).toBe(401);
    expect(mock.requests[0]).toMatchObject({ provider: 'dify', headers: { authorization: 'Bearer ***' } });
  });
});

describe('http behaviour', () => {
  it('serves health and stats without authentication', async () => {
    const mock = await mockFor();
    await (await postJson(`${mock.url}/api/v1/chat/completions`, { messages: userMessage('x') }, OPENAI_AUTH)).text();
    expect(json(await (await fetch(`${mock.url}/_mock/health`)).text())).toEqual({ status: 'ok' });
    const stats = json(await (await fetch(`${mock.url}/_mock/stats`)).text());
    expect(stats).toMatchObject({ byProvider: { openai: 0, fastgpt: 1, anthropic: 0, dify: 0 }, completed: 2, aborted: 0 });
    expect(mock.stats().requests).toBe(3);
  });

  it('answers unknown routes with 404 and wrong methods with 405', async () => {
    const mock = await mockFor();
    expect((await fetch(`${mock.url}/v2/nothing`, { headers: OPENAI_AUTH })).status).toBe(404);
    expect((await fetch(`${mock.url}/v1/chat/completions`, { headers: OPENAI_AUTH })).status).toBe(405);
  });

  it('answers a body that is not JSON with 400 in the provider format', async () => {
    const mock = await mockFor();
    const res = await fetch(`${mock.url}/v1/messages`, {
      method: 'POST',
      headers: { ...ANTHROPIC_AUTH, 'content-type': 'application/json' },
      body: '{"model":',
    });
    expect(res.status).toBe(400);
    expect(json(await res.text())).toMatchObject({ type: 'error', error: { type: 'invalid_request_error' } });
  });

  it('stops a stream when the client aborts and counts it as aborted', async () => {
    const mock = await mockFor();
    const controller = new AbortController();
    const res = await postJson(
      `${mock.url}/v1/chat/completions`,
      { model: 'm', stream: true, messages: userMessage('long [[mock chunks=1000 interval=20]]') },
      OPENAI_AUTH,
      controller.signal,
    );
    const reader = new SseReader(res);
    await reader.next();
    expect(mock.stats().inFlight).toBe(1);
    controller.abort();
    await eventually(() => expect(mock.stats()).toMatchObject({ inFlight: 0, aborted: 1 }));
  });

  it('closes promptly with a stalled stream open; the client sees the connection end', async () => {
    const mock = await startMock();
    const res = await postJson(
      `${mock.url}/v1/chat/completions`,
      { model: 'm', stream: true, messages: userMessage('x [[mock stallAfter=1]]') },
      OPENAI_AUTH,
    );
    const reading = readFully(res);
    await mock.close();
    const { error } = await reading;
    expect(error).toBeDefined();
    await expect(fetch(`${mock.url}/_mock/health`)).rejects.toThrow();
  });

  it('reuses keep-alive connections across requests', async () => {
    const mock = await mockFor();
    for (let i = 0; i < 3; i++) {
      const res = await fetch(`${mock.url}/_mock/health`);
      expect(res.headers.get('connection')).not.toBe('close');
      await res.text();
    }
  });

  it('rejects invalid options', async () => {
    await expect(createMockUpstream({ defaultChunks: -1 })).rejects.toThrow(/defaultChunks/);
  });
});

describe('the fault engine is shared by every provider', () => {
  const cases: { name: string; path: string; headers: Record<string, string>; body: (content: string) => unknown }[] = [
    { name: 'openai', path: '/v1/chat/completions', headers: OPENAI_AUTH, body: (c) => ({ model: 'm', stream: true, messages: userMessage(c) }) },
    { name: 'fastgpt', path: '/api/v1/chat/completions', headers: OPENAI_AUTH, body: (c) => ({ stream: true, detail: true, messages: userMessage(c) }) },
    { name: 'anthropic', path: '/v1/messages', headers: ANTHROPIC_AUTH, body: (c) => ({ model: 'c', max_tokens: 9, stream: true, messages: userMessage(c) }) },
    { name: 'dify', path: '/v1/chat-messages', headers: OPENAI_AUTH, body: (c) => ({ query: c, inputs: {}, user: 'u', response_mode: 'streaming' }) },
  ];

  const unparseable = (text: string): number =>
    parseSse(text).filter((e) => {
      if (e.data === '' || e.data === '[DONE]') return false;
      try {
        JSON.parse(e.data);
        return false;
      } catch {
        return true;
      }
    }).length;

  for (const c of cases) {
    it(`${c.name}: malformedAfter sends one bad frame; cutAfter breaks the connection`, async () => {
      const mock = await mockFor();
      const malformed = await readFully(await postJson(mock.url + c.path, c.body('x [[mock malformedAfter=2]]'), c.headers));
      expect(malformed.error).toBeUndefined();
      expect(unparseable(malformed.text)).toBe(1);
      const cut = await readFully(await postJson(mock.url + c.path, c.body('x [[mock cutAfter=2]]'), c.headers));
      expect(cut.error).toBeDefined();
      expect(cut.text).toContain('Simulated');
    });
  }
});

describe('cli', () => {
  it('prints the URL, serves, and exits cleanly on SIGTERM', async () => {
    const cli = fileURLToPath(new URL('./cli.ts', import.meta.url));
    const child = spawn(process.execPath, ['--import', 'tsx', cli, '--port', '0', '--chunks', '2', '--interval', '1'], {
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    try {
      const [first] = (await once(child.stdout, 'data')) as [Buffer];
      const url = first.toString().trim();
      expect(url).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/);
      const res = await postJson(`${url}/v1/chat/completions`, { model: 'm', stream: true, messages: userMessage('x') }, OPENAI_AUTH);
      const events = parseSse((await readFully(res)).text);
      expect(events).toHaveLength(5);
      const exited = once(child, 'exit');
      child.kill('SIGTERM');
      const [code] = (await exited) as [number | null];
      expect(code).toBe(0);
    } finally {
      if (child.exitCode === null) child.kill('SIGKILL');
    }
  });
});
