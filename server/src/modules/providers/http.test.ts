import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createMockUpstream, type MockUpstream } from '../../../../tools/src/mock-upstream/index.js';
import type { Dispatcher } from 'undici';
import { eventually } from '../../test/sse.js';
import { UpstreamBody, UpstreamHttp, networkError } from './http.js';
import { OpenAIAdapter } from './openai-adapter.js';
import type { ProviderRequest } from './types.js';
import { loopbackAllowed } from '../../test/providers.js';

let mock: MockUpstream;
let http: UpstreamHttp;

beforeAll(async () => {
  mock = await createMockUpstream({ port: 0, defaultChunks: 3, defaultIntervalMs: 1 });
  http = new UpstreamHttp({ outbound: loopbackAllowed(), connections: 4 });
});

afterAll(async () => {
  await http.close();
  await mock.close();
});

function request(text: string): ProviderRequest {
  return {
    endpoint: {
      id: 'ep',
      agentId: 'a',
      position: 0,
      provider: 'openai',
      url: `${mock.url}/v1`,
      apiKey: 'sk-secret-value',
      appId: undefined,
      model: 'm',
      timeouts: {},
    },
    messages: [{ role: 'user', content: text }],
  };
}

describe('UpstreamHttp', () => {
  it('applies the configured default deadlines to endpoints that set none, and an endpoint\'s own over them', async () => {
    const configured = new UpstreamHttp({ outbound: loopbackAllowed(), connections: 2, defaultTimeouts: { connectMs: 150, firstTokenMs: 60_000, idleMs: 60_000, totalMs: 60_000 } });
    try {
      const adapter = new OpenAIAdapter(configured);
      const run = async (req: ProviderRequest) => {
        try {
          await adapter.stream(req, new AbortController().signal, () => undefined);
        } catch (err) {
          return err as Error;
        }
        return undefined;
      };
      const byDefault = await run(request('slow [[mock headersDelay=3000]]'));
      expect(byDefault?.message).toContain('headers deadline of 150 ms');
      const own = request('slow [[mock headersDelay=3000]]');
      own.endpoint.timeouts = { connectMs: 120 };
      expect((await run(own))?.message).toContain('headers deadline of 120 ms');
    } finally {
      await configured.close();
    }
  });

  it('reuses keep-alive connections for streams read to the end', async () => {
    const adapter = new OpenAIAdapter(http);
    for (let i = 0; i < 5; i++) {
      await adapter.stream(request(`n${i}`), new AbortController().signal, () => undefined);
    }
    // undici frees a connection a tick after the body ends, so back-to-back calls may open a second one.
    expect(http.pool(new URL(mock.url).origin).stats.connected).toBeLessThanOrEqual(2);
  });

  it('keeps the API key out of http error messages and bodies', async () => {
    const call = http.open(
      {
        method: 'POST',
        url: `${mock.url}/v1/chat/completions`,
        headers: { 'content-type': 'application/json', authorization: 'Bearer sk-secret-value' },
        // The mock's 400 body quotes nothing of ours, so echo the key through the message itself.
        body: JSON.stringify({ model: 'm', messages: [{ role: 'user', content: 'sk-secret-value [[mock status=400 code=sk-secret-value]]' }] }),
        timeouts: {},
        signal: new AbortController().signal,
        mode: 'blocking',
        secret: 'sk-secret-value',
      },
      'openai',
    );
    const err = await call.then(
      () => undefined,
      (e: unknown) => e as Error & { options: { body?: string } },
    );
    expect(err?.message).toBeDefined();
    expect(err?.message).not.toContain('sk-secret-value');
    expect(err?.options.body ?? '').not.toContain('sk-secret-value');
  });

  it('turns a 200 JSON answer to a stream request into the provider error it names', async () => {
    const server = createServer((_req, res) => {
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ code: 403, statusText: 'unAuthorization', message: 'no access', data: null }));
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const { port } = server.address() as AddressInfo;
    try {
      const err = await http
        .open(
          {
            method: 'POST',
            url: `http://127.0.0.1:${port}/api/v1/chat/completions`,
            headers: {},
            body: '{}',
            timeouts: {},
            signal: new AbortController().signal,
            mode: 'stream',
          },
          'fastgpt',
        )
        .then(
          () => undefined,
          (e: unknown) => e,
        );
      expect(err).toMatchObject({ kind: 'http', status: 403, providerCode: 'unAuthorization', retryable: false });
    } finally {
      await new Promise<void>((resolve) => server.close(() => resolve()));
    }
  });

  it('maps socket errors by their code', () => {
    const reset = Object.assign(new Error('read ECONNRESET'), { code: 'ECONNRESET' });
    expect(networkError(reset, 'http://h/x')).toMatchObject({ kind: 'network', providerCode: 'ECONNRESET', retryable: true });
    const wrapped = new Error('fetch failed', { cause: Object.assign(new Error('other side closed'), { code: 'UND_ERR_SOCKET' }) });
    expect(networkError(wrapped, 'http://h/x')).toMatchObject({ kind: 'network', providerCode: 'UND_ERR_SOCKET' });
    const connectTimeout = Object.assign(new Error('Connect Timeout Error'), { code: 'UND_ERR_CONNECT_TIMEOUT' });
    expect(networkError(connectTimeout, 'http://h/x').kind).toBe('timeout');
  });

  it('reads a large body whole when its reader is slower than the upstream (the socket pauses and resumes)', async () => {
    const piece = Buffer.alloc(64 * 1024, 'abcdefgh');
    const pieces = 48; // 3 MiB, well past the body's pause mark
    const server = createServer((_req, res) => {
      res.writeHead(200, { 'content-type': 'text/plain' });
      let sent = 0;
      const more = (): void => {
        while (sent < pieces) {
          sent++;
          if (!res.write(piece)) {
            res.once('drain', more);
            return;
          }
        }
        res.end();
      };
      more();
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const { port } = server.address() as AddressInfo;
    try {
      const call = await http.open(
        { method: 'GET', url: `http://127.0.0.1:${port}/big`, headers: {}, timeouts: {}, signal: new AbortController().signal, mode: 'blocking' },
        'openai',
      );
      let bytes = 0;
      try {
        // Let the upstream get ahead before reading anything.
        await new Promise((resolve) => setTimeout(resolve, 200));
        for await (const chunk of call.body as UpstreamBody) {
          bytes += chunk.length;
          await new Promise((resolve) => setImmediate(resolve));
        }
      } finally {
        call.close();
      }
      expect(bytes).toBe(piece.length * pieces);
    } finally {
      await new Promise<void>((resolve) => server.close(() => resolve()));
    }
  });
});

describe('local queueing for upstream slots', () => {
  const drain = async (adapter: OpenAIAdapter, req: ProviderRequest, signal = new AbortController().signal) => {
    await adapter.stream(req, signal, () => undefined);
  };

  it('a call waiting for a slot is not on the upstream\'s clock: its headers deadline starts once it has one', async () => {
    const one = new UpstreamHttp({ outbound: loopbackAllowed(), connections: 1, queueTimeoutMs: 60_000 });
    try {
      const adapter = new OpenAIAdapter(one);
      const holder = drain(adapter, request('long [[mock chunks=8 interval=150]]'));
      await eventually(async () => one.load()[0]?.used === 1, 'the first call to hold the only slot');
      const waiting = request('short');
      // A headers deadline far shorter than the queue wait: it must not run while the call waits.
      waiting.endpoint.timeouts = { connectMs: 200 };
      const queued = drain(adapter, waiting);
      await eventually(async () => one.load()[0]?.waiting === 1, 'the second call to queue');
      await holder;
      await expect(queued).resolves.toBeUndefined();
      expect(one.load()).toEqual([{ origin: new URL(mock.url).origin, capacity: 1, used: 0, waiting: 0 }]);
    } finally {
      await one.close();
    }
  });

  it('a call that waits past UPSTREAM_QUEUE_TIMEOUT_MS fails `busy` and never reaches the upstream', async () => {
    const one = new UpstreamHttp({ outbound: loopbackAllowed(), connections: 1, queueTimeoutMs: 100 });
    try {
      const adapter = new OpenAIAdapter(one);
      const abort = new AbortController();
      const holder = drain(adapter, request('long [[mock chunks=100 interval=100]]'), abort.signal).catch(() => undefined);
      await eventually(async () => mock.stats().inFlight === 1, 'the first call to hold the only slot, streaming');
      const before = mock.stats().requests;
      await expect(drain(adapter, request('refused'))).rejects.toMatchObject({ kind: 'busy', category: 'busy' });
      expect(mock.stats().requests).toBe(before);
      abort.abort();
      await holder;
    } finally {
      await one.close();
    }
  });

  it("a turn's admitted slot serves its calls one after another without queueing, and is the origin's until released", async () => {
    const one = new UpstreamHttp({ outbound: loopbackAllowed(), connections: 1, queueTimeoutMs: 50 });
    try {
      const adapter = new OpenAIAdapter(one);
      const admission = await one.admit(`${mock.url}/v1`);
      const turn = new AbortController();
      admission.bind(turn.signal);
      // Two calls in a row (a retry), each in the turn's slot, while the origin has no other.
      await drain(adapter, request('first'), turn.signal);
      await drain(adapter, request('second'), turn.signal);
      await expect(drain(adapter, request('someone else'))).rejects.toMatchObject({ kind: 'busy' });
      await expect(one.admit(`${mock.url}/v1`)).rejects.toMatchObject({ kind: 'busy' });
      admission.release();
      await drain(adapter, request('someone else'));
    } finally {
      await one.close();
    }
  });
});

/** A stand-in for undici's controller, recording what the body asked of it. */
function fakeController() {
  const calls: string[] = [];
  const controller = {
    aborted: false,
    paused: false,
    reason: null as Error | null,
    pause: () => calls.push('pause'),
    resume: () => calls.push('resume'),
    abort: (reason: Error) => {
      controller.aborted = true;
      controller.reason = reason;
      calls.push('abort');
    },
  };
  return { controller: controller as unknown as Dispatcher.DispatchController, calls };
}

async function readAll(body: UpstreamBody): Promise<string> {
  let text = '';
  for await (const chunk of body) text += Buffer.from(chunk).toString();
  return text;
}

describe('UpstreamBody', () => {
  it('hands over chunks that came before the reader in order, then those that come while it waits, then ends', async () => {
    const { controller } = fakeController();
    const body = new UpstreamBody(controller);
    body.push(Buffer.from('a'));
    body.push(Buffer.from('b'));
    const reading = readAll(body);
    await new Promise((resolve) => setImmediate(resolve));
    body.push(Buffer.from('c'));
    body.end();
    body.push(Buffer.from('late'));
    expect(await reading).toBe('abc');
  });

  it('delivers what was queued before a failure, then the failure', async () => {
    const { controller } = fakeController();
    const body = new UpstreamBody(controller);
    body.push(Buffer.from('x'));
    body.fail(new Error('socket closed'));
    const seen: string[] = [];
    const err = await (async () => {
      for await (const chunk of body) seen.push(Buffer.from(chunk).toString());
    })().then(
      () => undefined,
      (e: unknown) => e as Error,
    );
    expect(seen).toEqual(['x']);
    expect(err?.message).toBe('socket closed');
  });

  it('pauses the upstream past 1 MiB queued and resumes once the reader has taken it below half', async () => {
    const { controller, calls } = fakeController();
    const body = new UpstreamBody(controller);
    const piece = Buffer.alloc(256 * 1024);
    for (let i = 0; i < 5; i++) body.push(piece);
    expect(calls).toEqual(['pause']);
    for (let i = 0; i < 3; i++) await body.next();
    expect(calls).toEqual(['pause']); // 512 KiB left: not below half yet
    await body.next();
    expect(calls).toEqual(['pause', 'resume']);
  });

  it('aborts the request when the reader leaves before the end, and not after it', async () => {
    const early = fakeController();
    const unread = new UpstreamBody(early.controller);
    unread.push(Buffer.from('a'));
    for await (const _chunk of unread) break;
    expect(early.calls).toEqual(['abort']);

    const late = fakeController();
    const whole = new UpstreamBody(late.controller);
    whole.push(Buffer.from('a'));
    whole.end();
    expect(await readAll(whole)).toBe('a');
    whole.destroy();
    expect(late.calls).toEqual([]);
  });
});
