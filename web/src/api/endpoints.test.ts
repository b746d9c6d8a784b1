import { afterEach, describe, expect, it, vi } from 'vitest';
import { chatApi, newIdempotencyKey } from './endpoints';

afterEach(() => {
  vi.unstubAllGlobals();
});

describe('chat turns carry an Idempotency-Key', () => {
  it('each key is 32 hex characters and new', () => {
    const keys = new Set(Array.from({ length: 50 }, () => newIdempotencyKey()));
    expect(keys.size).toBe(50);
    for (const key of keys) expect(key).toMatch(/^[0-9a-f]{32}$/);
  });

  it('a turn is sent with its own key, so a proxy that resends it gets the same turn', async () => {
    const sent: Headers[] = [];
    vi.stubGlobal(
      'fetch',
      vi.fn((_url: string, init: RequestInit) => {
        sent.push(new Headers(init.headers));
        return Promise.resolve(new Response('', { status: 200, headers: { 'content-type': 'text/event-stream' } }));
      }),
    );
    await chatApi.complete({ agentId: 'a', content: 'one' });
    await chatApi.complete({ agentId: 'a', content: 'two' });
    const keys = sent.map((h) => h.get('idempotency-key'));
    expect(keys[0]).toMatch(/^[0-9a-f]{32}$/);
    expect(keys[1]).toMatch(/^[0-9a-f]{32}$/);
    expect(keys[0]).not.toBe(keys[1]);
  });
});
