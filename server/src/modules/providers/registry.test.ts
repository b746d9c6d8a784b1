import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createMockUpstream, type MockUpstream } from '../../../../tools/src/mock-upstream/index.js';
import type { ProviderKind } from '../../db/schema.js';
import { createProviderRegistry, type ProviderRegistry } from './registry.js';
import type { ResolvedEndpoint } from './types.js';
import { loopbackAllowed } from '../../test/providers.js';

let mock: MockUpstream;
let registry: ProviderRegistry;

beforeAll(async () => {
  mock = await createMockUpstream({ port: 0, defaultChunks: 3, defaultIntervalMs: 1 });
  registry = createProviderRegistry({ outbound: loopbackAllowed(), connections: 4 });
});

afterAll(async () => {
  await registry.close();
  await mock.close();
});

const bases: Record<ProviderKind, string> = { openai: '/v1', fastgpt: '/api', anthropic: '/v1', dify: '/v1' };

function endpoint(provider: ProviderKind, overrides: Partial<ResolvedEndpoint> = {}): ResolvedEndpoint {
  return {
    id: `ep-${provider}`,
    agentId: 'agent-1',
    position: 0,
    provider,
    url: `${mock.url}${bases[provider]}`,
    apiKey: 'test-key',
    appId: 'mock-app',
    model: provider === 'openai' || provider === 'anthropic' ? 'mock-model' : undefined,
    timeouts: {},
    ...overrides,
  };
}

const kinds: ProviderKind[] = ['openai', 'fastgpt', 'anthropic', 'dify'];

describe('createProviderRegistry', () => {
  it('gives one adapter per provider kind', () => {
    for (const kind of kinds) expect(registry.adapter(kind).kind).toBe(kind);
  });

  it.each(kinds)('validates a working %s endpoint with a real small call', async (kind) => {
    mock.clearRequests();
    const result = await registry.validate(endpoint(kind));
    expect(result).toMatchObject({ ok: true });
    expect(result.latencyMs).toBeGreaterThanOrEqual(0);
    expect(mock.requests.length).toBeGreaterThan(0);
    const body = mock.requests[0]?.body as Record<string, unknown>;
    if (kind === 'openai') expect(body).toMatchObject({ stream: false, max_tokens: 5 });
    if (kind === 'anthropic') expect(body).toMatchObject({ stream: false, max_tokens: 5 });
  });

  it.each(kinds)('reports a bad %s key as a failed validation without the key', async (kind) => {
    const result = await registry.validate(endpoint(kind, { apiKey: 'bad-key' }));
    expect(result.ok).toBe(false);
    expect(result.error?.status).toBe(401);
    expect(result.error?.message).not.toContain('bad-key');
  });

  it('reports an unreachable endpoint as a network failure', async () => {
    const result = await registry.validate(endpoint('openai', { url: 'http://127.0.0.1:1/v1' }));
    expect(result).toMatchObject({ ok: false, error: { code: 'ECONNREFUSED' } });
  });

  it('reads welcome texts from FastGPT and Dify and none from the others', async () => {
    expect(await registry.welcomeText(endpoint('fastgpt'))).toBe('Hello from the mock FastGPT app.');
    expect(await registry.welcomeText(endpoint('dify'))).toBe('Hello from the mock Dify app.');
    expect(await registry.welcomeText(endpoint('openai'))).toBeUndefined();
    expect(await registry.welcomeText(endpoint('anthropic'))).toBeUndefined();
  });

  it('streams many answers at once through the shared pools', async () => {
    const runs = Array.from({ length: 24 }, async (_, i) => {
      const kind = kinds[i % kinds.length] ?? 'openai';
      let text = '';
      let done = false;
      await registry.adapter(kind).stream({ endpoint: endpoint(kind), messages: [{ role: 'user', content: `q${i}` }], user: 'u' }, new AbortController().signal, (event) => {
        if (event.type === 'text') text += event.delta;
        if (event.type === 'done') done = event.sawDone;
      });
      return { text, done, i };
    });
    for (const run of await Promise.all(runs)) {
      expect(run.text.startsWith(`Simulated answer to: q${run.i}`)).toBe(true);
      expect(run.done).toBe(true);
    }
  });
});
