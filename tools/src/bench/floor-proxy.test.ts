import { Client } from 'undici';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { MockUpstream } from '../mock-upstream/index.js';
import { createMockUpstream } from '../mock-upstream/index.js';
import type { FloorProxy } from './floor-proxy.js';
import { startFloorProxy } from './floor-proxy.js';
import type { LoadTarget } from './sse-load.js';
import { runLoad, runTurn } from './sse-load.js';

let mock: MockUpstream;
let floor: FloorProxy;

beforeAll(async () => {
  mock = await createMockUpstream({ port: 0, defaultChunks: 8, defaultIntervalMs: 2 });
  floor = await startFloorProxy(new URL(mock.url).origin);
});

afterAll(async () => {
  await floor.close();
  await mock.close();
});

const body = JSON.stringify({ agentId: 'bench', messages: [{ role: 'user', content: 'hello' }], stream: true });

describe('floor proxy', () => {
  it("relays the mock's answer as LLMChat events: every chunk, the same text, a complete end", async () => {
    const direct: LoadTarget = {
      name: 'direct',
      origin: new URL(mock.url).origin,
      path: '/v1/chat/completions',
      headers: { authorization: 'Bearer bench-key' },
      body: JSON.stringify({ model: 'mock-model', messages: [{ role: 'user', content: 'hello' }], stream: true }),
      protocol: 'openai',
    };
    const directClient = new Client(direct.origin);
    const reference = await runTurn(directClient, direct).finally(() => directClient.close());
    expect(reference.error).toBeUndefined();
    expect(reference.chunks).toBe(8);

    const target: LoadTarget = {
      name: 'floor',
      origin: floor.url,
      path: '/api/chat/completions',
      headers: {},
      body,
      protocol: 'llmchat',
      expected: { chunks: reference.chunks, first: reference.firstChunk ?? '', last: reference.lastChunk ?? '' },
    };
    const client = new Client(floor.url);
    const outcome = await runTurn(client, target).finally(() => client.close());
    expect(outcome.error).toBeUndefined();
    expect(outcome.chunks).toBe(8);
    expect(outcome.firstChunk).toBe(reference.firstChunk);
    expect(outcome.lastChunk).toBe(reference.lastChunk);
  });

  it('carries concurrent streams without errors', async () => {
    const result = await runLoad(
      { name: 'floor', origin: floor.url, path: '/api/chat/completions', headers: {}, body, protocol: 'llmchat' },
      { concurrency: 20, warmupMs: 0, durationMs: 300, drainTimeoutMs: 10_000 },
    );
    expect(result.samples.length).toBeGreaterThan(20);
    expect(result.samples.filter((s) => s.error !== undefined)).toEqual([]);
  });

  it('answers an upstream refusal with a 502, not a stream', async () => {
    const client = new Client(floor.url);
    try {
      // The mock's directive in the question makes it refuse with a 429.
      const res = await client.request({
        path: '/api/chat/completions',
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ messages: [{ role: 'user', content: '[[mock status=429]] hello' }] }),
      });
      expect(res.statusCode).toBe(502);
      await res.body.dump();
    } finally {
      await client.close();
    }
  });
});
