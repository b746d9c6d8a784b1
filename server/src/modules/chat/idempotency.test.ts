import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createMockUpstream } from '../../../../tools/src/mock-upstream/index.js';
import { backendNames } from '../../test/backends.js';
import { bearer, buildTestApp, createUserAndLogin, login, type TestApp } from '../../test/app.js';
import { eventually, parseSse, type ParsedEvent } from '../../test/sse.js';

type Mock = Awaited<ReturnType<typeof createMockUpstream>>;

function chunkText(events: ParsedEvent[]): string {
  return events
    .filter((e) => e.event === 'chunk')
    .map((e) => (e.json as { content: string }).content)
    .join('');
}

describe.each(await backendNames())('idempotency keys on %s', (backendName) => {
  let t: TestApp;
  let mock: Mock;
  let admin: string;
  let alice: { token: string; userId: string };
  let bob: { token: string; userId: string };

  beforeAll(async () => {
    mock = await createMockUpstream({ port: 0, host: '127.0.0.1', defaultChunks: 5, defaultIntervalMs: 5 });
    t = await buildTestApp(backendName);
    admin = await login(t.app);
    alice = await createUserAndLogin(t.app, admin, 'alice');
    bob = await createUserAndLogin(t.app, admin, 'bob');
    const res = await t.app.inject({ method: 'POST', url: '/api/agents', headers: bearer(admin), payload: { id: 'gpt', name: 'GPT', provider: 'openai', endpoint: `${mock.url}/v1/chat/completions`, model: 'mock-model', apiKey: 'k' } });
    expect(res.statusCode).toBe(201);
  });
  afterAll(async () => {
    await t?.close();
    await mock?.close();
  });

  const upstreamCalls = (marker: string) => mock.requests.filter((r) => JSON.stringify(r.body).includes(marker)).length;

  async function answers(): Promise<number> {
    const row = await t.backend.database.db.selectFrom('messages').select((eb) => eb.fn.countAll<number>().as('n')).where('role', '=', 'assistant').executeTakeFirstOrThrow();
    return Number(row.n);
  }

  function post(token: string, key: string | undefined, payload: Record<string, unknown>, url = '/api/chat/completions') {
    return t.app.inject({ method: 'POST', url, headers: { ...bearer(token), ...(key === undefined ? {} : { 'idempotency-key': key }) }, payload });
  }

  it('a repeated streaming request replays the same turn and starts no second generation', async () => {
    const body = { agentId: 'gpt', stream: true, messages: [{ role: 'user', content: 'idem-stream-1' }] };
    const before = await answers();
    const first = await post(alice.token, 'key-stream-1', body);
    const second = await post(alice.token, 'key-stream-1', body);
    const a = parseSse(first.body);
    const b = parseSse(second.body);
    expect(second.statusCode).toBe(200);
    expect(second.headers['idempotent-replayed']).toBe('true');
    expect((b[0]?.json as { messageId: string }).messageId).toBe((a[0]?.json as { messageId: string }).messageId);
    expect(b.map((e) => e.id)).toEqual(a.map((e) => e.id));
    expect(chunkText(b)).toBe(chunkText(a));
    expect(b.at(-1)?.event).toBe('end');
    expect(upstreamCalls('idem-stream-1')).toBe(1);
    expect(await answers()).toBe(before + 1);
  });

  it('two simultaneous requests with one key get one turn', async () => {
    const body = { agentId: 'gpt', stream: true, messages: [{ role: 'user', content: 'idem-race [[mock chunks=8 interval=20]]' }] };
    const before = mock.stats();
    const [x, y] = await Promise.all([post(alice.token, 'key-race', body), post(alice.token, 'key-race', body)]);
    const ids = [x, y].map((r) => (parseSse(r.body)[0]?.json as { messageId: string }).messageId);
    expect(ids[0]).toBe(ids[1]);
    expect([x, y].map((r) => chunkText(parseSse(r.body)))).toEqual([chunkText(parseSse(x.body)), chunkText(parseSse(x.body))]);
    // Both may have started their upstream call while their turns were being written (an early start);
    // the one whose turn lost the key is aborted, so exactly one answer is generated.
    const calls = upstreamCalls('idem-race');
    expect([1, 2]).toContain(calls);
    const after = await eventually(async () => {
      const now = mock.stats();
      return now.inFlight === before.inFlight ? now : undefined;
    }, 'the upstream calls to end');
    expect(after.completed - before.completed).toBe(1);
    expect(after.aborted - before.aborted).toBe(calls - 1);
  });

  it('a repeated non-streaming request returns the same answer', async () => {
    const body = { agentId: 'gpt', messages: [{ role: 'user', content: 'idem-blocking' }] };
    const first = await post(alice.token, 'key-blocking', body);
    const second = await post(alice.token, 'key-blocking', body);
    expect(first.statusCode).toBe(200);
    expect(second.statusCode).toBe(200);
    const a = first.json<{ data: { messageId: string; choices: { message: { content: string } }[] } }>().data;
    const b = second.json<{ data: { messageId: string; choices: { message: { content: string } }[] } }>().data;
    expect(b.messageId).toBe(a.messageId);
    expect(b.choices[0]?.message.content).toBe(a.choices[0]?.message.content);
    expect(upstreamCalls('idem-blocking')).toBe(1);
  });

  it('a repeat may ask for the other delivery: streamed first, then as one JSON body', async () => {
    const first = await post(alice.token, 'key-delivery', { agentId: 'gpt', stream: true, messages: [{ role: 'user', content: 'idem-delivery' }] });
    const events = parseSse(first.body);
    const second = await post(alice.token, 'key-delivery', { messages: [{ content: 'idem-delivery', role: 'user' }], agentId: 'gpt' });
    expect(second.statusCode).toBe(200);
    const data = second.json<{ data: { messageId: string; choices: { message: { content: string } }[] } }>().data;
    expect(data.messageId).toBe((events[0]?.json as { messageId: string }).messageId);
    expect(data.choices[0]?.message.content).toBe(chunkText(events));
    expect(upstreamCalls('idem-delivery')).toBe(1);
  });

  it('a key is written with its turn or not at all: a request refused before its turn is written leaves the key free', async () => {
    const db = t.backend.database.db;
    const bobs = await post(bob.token, undefined, { agentId: 'gpt', messages: [{ role: 'user', content: 'idem-bobs-session' }] });
    const bobsSession = bobs.json<{ data: { chatId: string } }>().data.chatId;
    const refused = await post(alice.token, 'key-free', { agentId: 'gpt', chatId: bobsSession, messages: [{ role: 'user', content: 'idem-not-yours' }] });
    expect(refused.statusCode).toBe(404);
    expect(refused.json<{ error: { code: string } }>().error.code).toBe('SESSION_NOT_FOUND');
    expect(await db.selectFrom('idempotency_keys').selectAll().where('user_id', '=', alice.userId).where('key', '=', 'key-free').execute()).toEqual([]);
    // The key names nothing, so another request may use it (no IDEMPOTENCY_KEY_REUSED, no IN_PROGRESS).
    const used = await post(alice.token, 'key-free', { agentId: 'gpt', messages: [{ role: 'user', content: 'idem-free-after-all' }] });
    expect(used.statusCode).toBe(200);
    expect(used.headers['idempotent-replayed']).toBeUndefined();
    const row = await db.selectFrom('idempotency_keys').select('message_id').where('user_id', '=', alice.userId).where('key', '=', 'key-free').executeTakeFirstOrThrow();
    expect(row.message_id).toBe(used.json<{ data: { messageId: string } }>().data.messageId);
    expect(upstreamCalls('idem-not-yours')).toBe(0);
  });

  it('an expired key starts a new turn', async () => {
    const body = { agentId: 'gpt', messages: [{ role: 'user', content: 'idem-expired' }] };
    const first = await post(alice.token, 'key-expired', body);
    await t.backend.database.db.updateTable('idempotency_keys').set({ created_at: new Date(Date.now() - 10 * 86_400_000) }).where('key', '=', 'key-expired').execute();
    const second = await post(alice.token, 'key-expired', body);
    expect(second.statusCode).toBe(200);
    expect(second.headers['idempotent-replayed']).toBeUndefined();
    expect(second.json<{ data: { messageId: string } }>().data.messageId).not.toBe(first.json<{ data: { messageId: string } }>().data.messageId);
    expect(upstreamCalls('idem-expired')).toBe(2);
  });

  it('the same key with a different body is refused with a stable code and changes nothing', async () => {
    await post(alice.token, 'key-conflict', { agentId: 'gpt', messages: [{ role: 'user', content: 'idem-original' }] });
    const before = await answers();
    const res = await post(alice.token, 'key-conflict', { agentId: 'gpt', messages: [{ role: 'user', content: 'idem-different' }] });
    expect(res.statusCode).toBe(422);
    expect(res.json<{ error: { code: string } }>().error.code).toBe('IDEMPOTENCY_KEY_REUSED');
    expect(await answers()).toBe(before);
    expect(upstreamCalls('idem-different')).toBe(0);
  });

  it('keys belong to one user: another user with the same key gets a turn of their own', async () => {
    const body = { agentId: 'gpt', messages: [{ role: 'user', content: 'idem-scoped' }] };
    const a = await post(alice.token, 'key-shared', body);
    const b = await post(bob.token, 'key-shared', body);
    expect(b.statusCode).toBe(200);
    expect(b.headers['idempotent-replayed']).toBeUndefined();
    expect(b.json<{ data: { messageId: string } }>().data.messageId).not.toBe(a.json<{ data: { messageId: string } }>().data.messageId);
    expect(upstreamCalls('idem-scoped')).toBe(2);
  });

  it.each([['x'.repeat(256)], ['has space'], ['']])('a malformed key %# is refused with 400 and writes nothing', async (key) => {
    const before = await answers();
    const res = await post(alice.token, key, { agentId: 'gpt', messages: [{ role: 'user', content: 'idem-badkey' }] });
    expect(res.statusCode).toBe(400);
    expect(res.json<{ error: { code: string } }>().error.code).toBe('IDEMPOTENCY_KEY_INVALID');
    expect(await answers()).toBe(before);
  });

  it('a request refused for bad input does not use up its key', async () => {
    const refused = await post(alice.token, 'key-after-bad', { agentId: 'no-such-agent', messages: [{ role: 'user', content: 'idem-bad-input' }] });
    expect(refused.statusCode).toBe(404);
    const rows = await t.backend.database.db.selectFrom('idempotency_keys').selectAll().where('key', '=', 'key-after-bad').execute();
    expect(rows).toEqual([]);
    const good = await post(alice.token, 'key-after-bad', { agentId: 'gpt', messages: [{ role: 'user', content: 'idem-after-bad' }] });
    expect(good.statusCode).toBe(200);
    expect(good.headers['idempotent-replayed']).toBeUndefined();
  });

  it('the OpenAI-format route honours the key too', async () => {
    const body = { model: 'gpt', messages: [{ role: 'user', content: 'idem-v1' }] };
    const apiKey = await t.app.inject({ method: 'POST', url: '/api/auth/api-keys', headers: bearer(alice.token), payload: { name: 'sdk' } });
    const secret = apiKey.json<{ data: { key: string } }>().data.key;
    const first = await post(secret, 'key-v1', body, '/v1/chat/completions');
    const second = await post(secret, 'key-v1', body, '/v1/chat/completions');
    expect(first.statusCode).toBe(200);
    expect(second.json<{ id: string }>().id).toBe(first.json<{ id: string }>().id);
    expect(second.json<{ choices: { message: { content: string } }[] }>().choices[0]?.message.content).toBe(first.json<{ choices: { message: { content: string } }[] }>().choices[0]?.message.content);
    const streamed = await post(secret, 'key-v1-stream', { ...body, stream: true }, '/v1/chat/completions');
    const again = await post(secret, 'key-v1-stream', { ...body, stream: true }, '/v1/chat/completions');
    const text = (raw: string) =>
      raw
        .split('\n\n')
        .filter((f) => f.startsWith('data: {'))
        .map((f) => (JSON.parse(f.slice(6)) as { choices: { delta?: { content?: string } }[] }).choices[0]?.delta?.content ?? '')
        .join('');
    expect(text(again.body)).toBe(text(streamed.body));
    expect(again.body.trim().endsWith('data: [DONE]')).toBe(true);
    expect(upstreamCalls('idem-v1')).toBe(2);
  });
});
