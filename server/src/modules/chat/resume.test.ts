import type { AddressInfo } from 'node:net';
import type { FastifyInstance } from 'fastify';
import pino from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createMockUpstream } from '../../../../tools/src/mock-upstream/index.js';
import { buildApp } from '../../app.js';
import { MemoryState } from '../../shared-state/memory-state.js';
import { RedisState } from '../../shared-state/redis-state.js';
import type { SharedState } from '../../shared-state/shared-state.js';
import { backendNames } from '../../test/backends.js';
import { bearer, buildTestApp, login, type TestApp } from '../../test/app.js';
import { eventually, readSse, type ParsedEvent } from '../../test/sse.js';

type Mock = Awaited<ReturnType<typeof createMockUpstream>>;

const idOf = (e: ParsedEvent) => Number(e.id?.split(':')[1]);
/**
 * The answer's text as a client shows it: a `reset` (the answer rebuilt from the database, when the
 * turn's end was stored before its `end` reached the buffer) replaces what came before it.
 */
const textOf = (events: ParsedEvent[]) =>
  events
    .slice(events.findLastIndex((e) => e.event === 'reset') + 1)
    .filter((e) => e.event === 'chunk')
    .map((e) => (e.json as { content: string }).content)
    .join('');

/**
 * Resuming, on instance B, an answer that runs on instance A: B replays the
 * shared buffer and follows it as A appends (SharedState.followEvents, no
 * polling). Two app instances on one database and one shared state (one
 * MemoryState object, or two Redis clients on one key prefix).
 */
describe.each(await backendNames())('resuming on another instance on %s', (backendName) => {
  let a: TestApp;
  let b: FastifyInstance;
  let bState: SharedState;
  let mock: Mock;
  let token: string;
  const base = new Map<FastifyInstance, string>();

  beforeAll(async () => {
    mock = await createMockUpstream({ port: 0, host: '127.0.0.1', defaultChunks: 4, defaultIntervalMs: 1 });
    a = await buildTestApp(backendName);
    const { backend } = a;
    bState = backend.state instanceof MemoryState ? backend.state : new RedisState(backend.redisUrl ?? '', backend.redisPrefix ?? '');
    b = await buildApp({ config: a.config, database: backend.database, state: bState, logger: pino({ level: 'silent' }), logRequests: false });
    for (const app of [a.app, b]) {
      await app.listen({ port: 0, host: '127.0.0.1' });
      base.set(app, `http://127.0.0.1:${(app.server.address() as AddressInfo).port}`);
    }
    token = await login(a.app);
    const created = await a.app.inject({ method: 'POST', url: '/api/agents', headers: bearer(token), payload: { id: 'slow', name: 'Slow', provider: 'openai', endpoint: `${mock.url}/v1/chat/completions`, apiKey: 'k', model: 'm' } });
    expect(created.statusCode).toBe(201);
    await eventually(async () => b.deps.agents.find('slow'), 'instance b to know the agent');
  });

  afterAll(async () => {
    await b?.close();
    if (bState && bState !== a?.backend.state) await bState.close();
    await a?.close();
    await mock?.close();
  });

  const headers = (extra: Record<string, string> = {}) => ({ ...bearer(token), 'content-type': 'application/json', ...extra });
  const ask = (app: FastifyInstance, content: string, extra: Record<string, string> = {}) =>
    fetch(`${base.get(app)}/api/chat/completions`, { method: 'POST', headers: headers(extra), body: JSON.stringify({ agentId: 'slow', stream: true, messages: [{ role: 'user', content }] }) });
  const resume = (app: FastifyInstance, messageId: string, lastEventId: string, signal?: AbortSignal) =>
    fetch(`${base.get(app)}/api/chat/stream?messageId=${messageId}`, { headers: { ...bearer(token), 'last-event-id': lastEventId }, signal });

  /** Starts an answer on A and leaves it after `chunks` text chunks (the answer goes on there). */
  async function startOnA(content: string, chunks: number): Promise<{ messageId: string; before: ParsedEvent[] }> {
    let messageId = '';
    let seen = 0;
    const before = await readSse((await ask(a.app, content)).body as ReadableStream<Uint8Array>, (event) => {
      if (event.event === 'start') messageId = (event.json as { messageId: string }).messageId;
      if (event.event === 'chunk' && ++seen === chunks) return false;
    });
    expect(a.app.deps.chat.localGeneration(messageId)).toBeDefined();
    return { messageId, before };
  }

  async function stored(messageId: string) {
    return a.backend.database.db.selectFrom('messages').select(['status', 'content']).where('id', '=', messageId).executeTakeFirstOrThrow();
  }

  it('replays on B what the client missed from A, then follows the answer live to `end`: no event lost or twice', async () => {
    const { messageId, before } = await startOnA('follow me elsewhere [[mock chunks=30 interval=30]]', 3);
    expect(b.deps.chat.localGeneration(messageId)).toBeUndefined();
    const response = await resume(b, messageId, before.at(-1)?.id ?? '');
    expect(response.status).toBe(200);
    let followed = false;
    const after = await readSse(response.body as ReadableStream<Uint8Array>, () => {
      // While B's client waits for live events, B follows the buffer.
      followed ||= bState.followCount > 0;
    });
    const all = [...before, ...after];
    expect(all.map(idOf)).toEqual(all.map((_, i) => i + 1));
    expect(after.at(-1)?.event).toBe('end');
    expect((after.at(-1)?.json as { status: string }).status).toBe('complete');
    expect(followed).toBe(true);
    expect(textOf(all)).toBe((await stored(messageId)).content);
    await eventually(async () => bState.followCount === 0, 'the follow to be gone after `end`');
  });

  it('forgets a follow whose client goes away while the answer still runs', async () => {
    const { messageId, before } = await startOnA('leave me [[mock chunks=400 interval=25]]', 1);
    const leave = new AbortController();
    const response = await resume(b, messageId, before.at(-1)?.id ?? '', leave.signal);
    let got = 0;
    let followed = false;
    await readSse(response.body as ReadableStream<Uint8Array>, (event) => {
      followed ||= bState.followCount > 0;
      if (event.event === 'chunk') got++;
      return got < 2;
    });
    expect(followed).toBe(true);
    await eventually(async () => bState.followCount === 0, 'B to drop the follow of the client that left');
    expect((await stored(messageId)).status).toBe('streaming');
    const stop = await a.app.inject({ method: 'POST', url: '/api/chat/stop', headers: bearer(token), payload: { messageId } });
    expect(stop.statusCode).toBe(200);
    await eventually(async () => (await stored(messageId)).status === 'stopped', 'the answer to stop');
  });

  it('serves many clients at once, each from where it left off', async () => {
    const answers = await Promise.all([1, 2, 3].map((n) => startOnA(`crowd ${n} [[mock chunks=25 interval=30]]`, 2)));
    const clients = answers.flatMap(({ messageId, before }) =>
      // Ten clients per answer, at different places in what they saw.
      Array.from({ length: 10 }, (_, i) => ({ messageId, seen: before.slice(0, Math.max(1, before.length - (i % before.length))) })),
    );
    const results = await Promise.all(
      clients.map(async ({ messageId, seen }) => {
        const response = await resume(b, messageId, seen.at(-1)?.id ?? '');
        return { messageId, all: [...seen, ...(await readSse(response.body as ReadableStream<Uint8Array>, () => undefined))] };
      }),
    );
    for (const { messageId, all } of results) {
      expect(all.map(idOf)).toEqual(all.map((_, i) => i + 1));
      expect(all.at(-1)?.event).toBe('end');
      expect(textOf(all)).toBe((await stored(messageId)).content);
    }
    await eventually(async () => bState.followCount === 0, 'every follow to be gone');
  });

  it('rebuilds from the database a finished answer whose buffer lacks its end, instead of waiting for it', async () => {
    const { messageId, before } = await startOnA('finished elsewhere [[mock chunks=400 interval=25]]', 2);
    // The database says the answer is over, while its buffer has no `end` (as after a Redis restart lost it).
    await a.backend.database.db.updateTable('messages').set({ status: 'complete', content: 'the stored answer' }).where('id', '=', messageId).execute();
    const lastSeen = idOf(before.at(-1) as ParsedEvent);
    const after = await readSse((await resume(b, messageId, `${messageId}:${lastSeen}`)).body as ReadableStream<Uint8Array>, () => undefined);
    const tail = after.slice(after.findIndex((e) => e.event === 'reset'));
    expect(tail.map((e) => e.event)).toEqual(['reset', 'chunk', 'end']);
    expect((tail[1]?.json as { content: string }).content).toBe('the stored answer');
    expect(after.map(idOf)).toEqual(after.map((_, i) => lastSeen + 1 + i));
    expect(bState.followCount).toBe(0);
    a.app.deps.chat.localGeneration(messageId)?.stop();
  });

  it('answers a streaming Idempotency-Key repeat on B with the turn running on A, followed to its end', async () => {
    const key = `resume-${backendName}-${Date.now()}`;
    const first = await ask(a.app, 'once only [[mock chunks=20 interval=30]]', { 'idempotency-key': key });
    const repeat = await ask(b, 'once only [[mock chunks=20 interval=30]]', { 'idempotency-key': key });
    expect(repeat.headers.get('idempotent-replayed')).toBe('true');
    const [original, replayed] = await Promise.all([first, repeat].map((r) => readSse(r.body as ReadableStream<Uint8Array>, () => undefined)));
    expect(replayed?.map((e) => [e.id, e.event, e.data])).toEqual(original?.map((e) => [e.id, e.event, e.data]));
    expect(replayed?.at(-1)?.event).toBe('end');
  });

  it('answers a non-streaming Idempotency-Key repeat on B with the turn running on A, once it has ended', async () => {
    const key = `resume-blocking-${backendName}-${Date.now()}`;
    const body = JSON.stringify({ agentId: 'slow', messages: [{ role: 'user', content: 'wait for me [[mock chunks=20 interval=30]]' }] });
    const first = fetch(`${base.get(a.app)}/api/chat/completions`, { method: 'POST', headers: headers({ 'idempotency-key': key }), body });
    // The repeat goes to B once A has written the turn (the key names it from then on).
    await eventually(async () => (await a.backend.database.db.selectFrom('idempotency_keys').select('message_id').where('key', '=', key).executeTakeFirst()) !== undefined, 'the turn to be written on A');
    const repeat = await fetch(`${base.get(b)}/api/chat/completions`, { method: 'POST', headers: headers({ 'idempotency-key': key }), body });
    expect(repeat.status).toBe(200);
    expect(repeat.headers.get('idempotent-replayed')).toBe('true');
    const original = (await (await first).json()) as { data: { messageId: string; choices: { message: { content: string } }[] } };
    const replayed = (await repeat.json()) as { data: { messageId: string; choices: { message: { content: string } }[] } };
    expect(replayed.data.messageId).toBe(original.data.messageId);
    expect(replayed.data.choices[0]?.message.content).toBe(original.data.choices[0]?.message.content);
    expect(replayed.data.choices[0]?.message.content).toMatch(/^Simulated answer to: wait for me/);
    expect(await stored(original.data.messageId)).toEqual({ status: 'complete', content: original.data.choices[0]?.message.content });
  });
});
