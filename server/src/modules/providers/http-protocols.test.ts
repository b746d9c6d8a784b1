import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createMockUpstream, type MockUpstream } from '../../../../tools/src/mock-upstream/index.js';
import { selfSignedCertificate } from '../../../../tools/src/mock-upstream/self-signed.js';
import { eventually } from '../../test/sse.js';
import { UpstreamHttp } from './http.js';
import { OpenAIAdapter } from './openai-adapter.js';
import type { ProviderRequest } from './types.js';
import { UpstreamError } from './upstream-error.js';
import { loopbackAllowed } from '../../test/providers.js';

/**
 * The upstream path over both protocols an upstream may speak: HTTP/1.1
 * (plain, one stream per connection) and HTTP/2 over TLS (negotiated by
 * ALPN, many streams per connection), against the mock served each way.
 * The TLS mock's self-signed certificate is trusted the way an operator
 * trusts an internal CA (UPSTREAM_CA_FILE's `extraCa`).
 */
const certificate = selfSignedCertificate();

const protocols = [
  { name: 'HTTP/1.1', tls: false, version: '1.1' },
  { name: 'HTTP/2 over TLS', tls: true, version: '2.0' },
] as const;

describe.each(protocols)('the upstream path over $name', ({ tls, version }) => {
  let mock: MockUpstream;
  let http: UpstreamHttp;
  let adapter: OpenAIAdapter;

  beforeAll(async () => {
    mock = await createMockUpstream({ port: 0, defaultChunks: 5, defaultIntervalMs: 5, ...(tls ? { tls: certificate } : {}) });
    http = new UpstreamHttp({ outbound: loopbackAllowed(), connections: 400, extraCa: certificate.cert, queueTimeoutMs: 30_000 });
    adapter = new OpenAIAdapter(http);
  });
  afterAll(async () => {
    await http.close();
    await mock.close();
  });

  const request = (text: string, timeouts: ProviderRequest['endpoint']['timeouts'] = {}): ProviderRequest => ({
    endpoint: { id: 'ep', agentId: 'a', position: 0, provider: 'openai', url: `${mock.url}/v1`, apiKey: 'sk-test', appId: undefined, model: 'm', timeouts },
    messages: [{ role: 'user', content: text }],
  });
  const run = async (req: ProviderRequest, signal = new AbortController().signal): Promise<{ text: string; error: UpstreamError | undefined }> => {
    let text = '';
    try {
      await adapter.stream(req, signal, (event) => {
        if (event.type === 'text') text += event.delta;
      });
    } catch (err) {
      return { text, error: err as UpstreamError };
    }
    return { text, error: undefined };
  };

  it('streams an answer whole, on the protocol the upstream offers', async () => {
    const before = mock.stats().byHttpVersion[version] ?? 0;
    const { text, error } = await run(request('hello [[mock chunks=6 answer=one%20two%20three]]'));
    expect(error).toBeUndefined();
    expect(text).toBe('one two three');
    expect(mock.stats().byHttpVersion[version]).toBe(before + 1);
  });

  it(`carries 300 concurrent streams ${tls ? 'on a few connections' : 'on a connection each'}`, async () => {
    const streams = 300;
    const started = Array.from({ length: streams }, (_, i) => run(request(`n${i} [[mock chunks=10 interval=500]]`)));
    await eventually(async () => mock.stats().inFlight >= streams, 'every stream open at the mock at once', 20_000);
    const connections = mock.stats().connections;
    const results = await Promise.all(started);
    expect(results.filter((r) => r.error !== undefined)).toEqual([]);
    expect(results.every((r) => r.text.length > 0)).toBe(true);
    // HTTP/2 multiplexes up to 100 streams per connection; HTTP/1.1 needs one connection per stream.
    if (tls) expect(connections).toBeLessThanOrEqual(Math.ceil(streams / 100) + 1);
    else expect(connections).toBeGreaterThanOrEqual(streams);
  });

  it('ends a stream that stalls with the idle deadline, and frees the stream at the mock', async () => {
    const { text, error } = await run(request('stall [[mock chunks=5 stallAfter=2]]', { idleMs: 300 }));
    expect(text.length).toBeGreaterThan(0);
    expect(error).toMatchObject({ kind: 'timeout' });
    expect(error?.message).toContain('idle deadline of 300 ms');
    await eventually(async () => mock.stats().inFlight === 0, 'the stalled stream closed at the mock');
  });

  it('turns a stream cut mid-answer into a network failure after the text that came', async () => {
    const { text, error } = await run(request('cut [[mock chunks=5 cutAfter=2]]'));
    expect(text.length).toBeGreaterThan(0);
    expect(error).toMatchObject({ kind: 'network' });
  });

  it('aborts a stream when the caller stops it, and the mock sees it end', async () => {
    const abort = new AbortController();
    const running = run(request('long [[mock chunks=50 interval=100]]'), abort.signal);
    await eventually(async () => mock.stats().inFlight === 1, 'the stream open at the mock');
    abort.abort();
    expect((await running).error).toMatchObject({ kind: 'aborted' });
    await eventually(async () => mock.stats().inFlight === 0, 'the aborted stream closed at the mock');
  });
});

describe('an upstream with a certificate nobody trusts', () => {
  it('is a network failure (TLS), not an answer', async () => {
    const mock = await createMockUpstream({ port: 0, tls: certificate });
    const http = new UpstreamHttp({ outbound: loopbackAllowed(), connections: 4 });
    try {
      const adapter = new OpenAIAdapter(http);
      const req: ProviderRequest = {
        endpoint: { id: 'ep', agentId: 'a', position: 0, provider: 'openai', url: `${mock.url}/v1`, apiKey: 'sk-test', appId: undefined, model: 'm', timeouts: {} },
        messages: [{ role: 'user', content: 'hello' }],
      };
      const error = await (async () => {
        try {
          await adapter.stream(req, new AbortController().signal, () => undefined);
        } catch (err) {
          return err;
        }
        return undefined;
      })();
      expect(error).toMatchObject({ kind: 'network' });
      expect(mock.stats().requests).toBe(0);
    } finally {
      await http.close();
      await mock.close();
    }
  });
});
