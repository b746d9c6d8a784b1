import { afterAll, beforeAll } from 'vitest';
import { createMockUpstream, type MockUpstream } from '../../../tools/src/mock-upstream/index.js';
import { UpstreamHttp } from '../modules/providers/http.js';
import { OutboundPolicy } from '../modules/providers/outbound-policy.js';
import type { ProviderAdapter, ProviderEvent, ProviderRequest, ResolvedEndpoint } from '../modules/providers/types.js';
import { UpstreamError } from '../modules/providers/upstream-error.js';

/**
 * The outbound policy of tests that call a mock upstream on loopback: the
 * default refuses loopback, so these allow it explicitly, as an operator
 * would with UPSTREAM_ALLOWED_CIDRS.
 */
export function loopbackAllowed(): OutboundPolicy {
  return new OutboundPolicy({ allowedCidrs: ['127.0.0.0/8', '::1/128'] });
}

/** What an adapter test fixes about its endpoint; the rest has defaults. */
export type EndpointBase = Pick<ResolvedEndpoint, 'id' | 'provider' | 'url' | 'apiKey' | 'appId' | 'model'>;

/**
 * An adapter on a real mock upstream, started before the file's tests and
 * closed after them (tests only).
 */
export function useAdapterOnMock<A>(make: (http: UpstreamHttp) => A, base: (mockUrl: string) => EndpointBase, requestDefaults: Partial<ProviderRequest> = {}) {
  const fx = {} as { mock: MockUpstream; http: UpstreamHttp; adapter: A };
  beforeAll(async () => {
    fx.mock = await createMockUpstream({ port: 0, defaultChunks: 4, defaultIntervalMs: 1 });
    fx.http = new UpstreamHttp({ connections: 8, outbound: loopbackAllowed() });
    fx.adapter = make(fx.http);
  });
  afterAll(async () => {
    await fx.http.close();
    await fx.mock.close();
  });

  const endpoint = (overrides: Partial<ResolvedEndpoint> = {}): ResolvedEndpoint => ({
    agentId: 'agent-1',
    position: 0,
    timeouts: {},
    ...base(fx.mock.url),
    ...overrides,
  });
  const request = (text: string, overrides: Partial<ProviderRequest> = {}, ep: Partial<ResolvedEndpoint> = {}): ProviderRequest => ({
    endpoint: endpoint(ep),
    messages: [{ role: 'user', content: text }],
    ...requestDefaults,
    ...overrides,
  });
  /** The body of the last request the mock recorded. */
  const lastBody = (): Record<string, unknown> => {
    const body = fx.mock.requests.at(-1)?.body;
    if (typeof body !== 'object' || body === null) throw new Error('no recorded request body');
    return body as Record<string, unknown>;
  };
  return { fx, endpoint, request, lastBody };
}

export const never: AbortSignal = new AbortController().signal;

/** Streams `request` through `adapter` and returns its events in order. */
export async function collect(adapter: Pick<ProviderAdapter, 'stream'>, request: ProviderRequest, signal: AbortSignal = never): Promise<ProviderEvent[]> {
  const events: ProviderEvent[] = [];
  await adapter.stream(request, signal, (event) => events.push(event));
  return events;
}

export function textOf(events: ProviderEvent[]): string {
  return events.map((e) => (e.type === 'text' ? e.delta : '')).join('');
}

/** The UpstreamError a stream ends with; fails the test when it ends cleanly. */
export async function streamError(adapter: Pick<ProviderAdapter, 'stream'>, request: ProviderRequest, signal: AbortSignal = never): Promise<UpstreamError> {
  try {
    await collect(adapter, request, signal);
  } catch (err) {
    if (err instanceof UpstreamError) return err;
    throw err;
  }
  throw new Error('expected the stream to fail');
}
