import pino from 'pino';
import crypto from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { migrateToLatest } from '../../db/migrate.js';
import { backendNames, createBackend, type Backend } from '../../test/backends.js';
import { MemoryState } from '../../shared-state/memory-state.js';
import { DegradedNotice } from '../../shared-state/degraded.js';
import type { ProviderRegistry } from '../providers/registry.js';
import type { ProviderAdapter, ProviderEvent, ProviderRequest, ResolvedEndpoint } from '../providers/types.js';
import { UpstreamError } from '../providers/upstream-error.js';
import { createBreakerService } from '../resilience/breakers.js';
import type { FailureLog } from '../resilience/failure-log.js';
import { createChatRepository, type ChatRepository, type TurnOutcome } from './chat-repository.js';
import type { TurnEventBuffer } from './event-buffer.js';
import { Generation, type GenerationEvent, type GenerationPlan } from './generation.js';

const logger = pino({ level: 'silent' });

/** An upstream answer the test releases chunk by chunk; the adapter notes an abort. */
function scriptedAdapter() {
  const queue: (ProviderEvent | 'end')[] = [];
  let wake: (() => void) | undefined;
  const seen = { calls: 0, aborted: false };
  const adapter: ProviderAdapter = {
    kind: 'openai',
    async stream(_request, signal, emit) {
      seen.calls++;
      signal.addEventListener('abort', () => {
        seen.aborted = true;
        wake?.();
      });
      for (;;) {
        if (signal.aborted) return;
        const next = queue.shift();
        if (next === 'end') return;
        if (next) {
          emit(next);
          continue;
        }
        await new Promise<void>((resolve) => (wake = resolve));
      }
    },
    complete: () => Promise.reject(new Error('not used')),
  };
  return {
    adapter,
    seen,
    push(...items: (ProviderEvent | 'end')[]) {
      queue.push(...items);
      wake?.();
    },
  };
}

function setup(options: { repo?: ChatRepository; checkpointIntervalMs?: number; turnId?: string; sessionId?: string; adapter?: ProviderAdapter; maxAttempts?: number } = {}) {
  const upstream = scriptedAdapter();
  const adapter = options.adapter ?? upstream.adapter;
  const stored: { turnId: string; outcome: TurnOutcome }[] = [];
  const buffered: GenerationEvent[] = [];
  const settled: string[] = [];
  const repo =
    options.repo ??
    ({
      finishTurn: (turnId: string, _sessionId: string, outcome: TurnOutcome) => {
        stored.push({ turnId, outcome });
        return Promise.resolve(true);
      },
      checkpoint: () => Promise.resolve(true),
    } as unknown as ChatRepository);
  const events = { append: (_turnId: string, event: GenerationEvent) => void buffered.push(event), finish: () => Promise.resolve() } as unknown as TurnEventBuffer;
  const providers = { adapter: () => adapter } as unknown as ProviderRegistry;
  const failures: FailureLog = { record: () => undefined, countsSince: () => Promise.resolve([]), deleteBefore: () => Promise.resolve(0), settled: () => Promise.resolve() };
  const breakers = createBreakerService({ state: new MemoryState(), settings: { threshold: 100, windowMs: 60_000, cooldownMs: 10_000 }, logger, now: Date.now, cacheMs: 0 });
  const endpoint: ResolvedEndpoint = { id: '00000000-0000-4000-8000-0000000000e1', agentId: 'a', position: 0, provider: 'openai', url: 'http://upstream', apiKey: 'k', appId: undefined, model: 'm', timeouts: {} };
  const plan: GenerationPlan = {
    turnId: options.turnId ?? 't1',
    sessionId: options.sessionId ?? 's1',
    userId: 'u1',
    userMessageId: 'q1',
    agentId: 'a',
    endpoints: [endpoint],
    request: { messages: [{ role: 'user', content: 'hi' }] },
    upstreamStream: true,
  };
  const generation = new Generation(plan, {
    repo,
    events,
    providers,
    logger,
    checkpointIntervalMs: options.checkpointIntervalMs ?? 60_000,
    checkpointNotice: new DegradedNotice(logger, 'checkpoints', Date.now, 'the database'),
    resilience: {
      breakers,
      failures,
      defaultTimeouts: { connectMs: 1000, firstTokenMs: 5000, idleMs: 5000, totalMs: 10_000 },
      retry: { maxAttempts: options.maxAttempts ?? 1, baseDelayMs: 10, maxDelayMs: 10, retryAfterMaxMs: 10 },
      random: () => 0.5,
      sleep: () => Promise.resolve(),
      now: Date.now,
      logger,
    },
    onSettled: (g) => void settled.push(g.turnId),
  });
  const heard: GenerationEvent[] = [];
  return { generation, upstream, stored, buffered, settled, heard, listen: () => generation.subscribe(0, (e) => void heard.push(e)) };
}

const tick = () => new Promise((resolve) => setTimeout(resolve, 5));

describe('Generation started before its turn is written', () => {
  it('calls the upstream at once but emits nothing until start(), then everything in order after start and chatId', async () => {
    const t = setup();
    t.generation.startEarly();
    t.upstream.push({ type: 'text', delta: 'Hel' }, { type: 'text', delta: 'lo' });
    await tick();
    expect(t.upstream.seen.calls).toBe(1);
    expect(t.buffered).toEqual([]);

    t.generation.start();
    t.listen();
    expect(t.heard.map((e) => [e.id, e.event])).toEqual([
      [1, 'start'],
      [2, 'chatId'],
      [3, 'chunk'],
      [4, 'chunk'],
    ]);
    t.upstream.push({ type: 'text', delta: '!' }, 'end');
    const result = await t.generation.done;
    expect(result.status).toBe('complete');
    expect(t.heard.map((e) => e.event)).toEqual(['start', 'chatId', 'chunk', 'chunk', 'chunk', 'end']);
    expect(t.buffered.map((e) => e.id)).toEqual([1, 2, 3, 4, 5, 6]);
    expect(t.stored).toEqual([{ turnId: 't1', outcome: expect.objectContaining({ status: 'complete', content: 'Hello!' }) as unknown }]);
  });

  it('does not store the ending of an answer that finished before its turn was written until it is', async () => {
    const t = setup();
    t.generation.startEarly();
    t.upstream.push({ type: 'text', delta: 'quick' }, 'end');
    await tick();
    expect(t.stored).toEqual([]);
    expect(t.generation.finished).toBe(false);

    t.generation.start();
    const result = await t.generation.done;
    expect(result.content).toBe('quick');
    expect(t.stored.map((s) => s.outcome.status)).toEqual(['complete']);
    expect(t.buffered.map((e) => e.event)).toEqual(['start', 'chatId', 'chunk', 'end']);
  });

  it('aborts the upstream call and emits and stores nothing when the turn could not be written', async () => {
    const t = setup();
    t.generation.startEarly();
    t.upstream.push({ type: 'text', delta: 'never seen' });
    await tick();
    t.generation.cancel();
    const result = await t.generation.done;
    expect(result.status).toBe('error');
    expect(t.upstream.seen.aborted).toBe(true);
    expect(t.buffered).toEqual([]);
    expect(t.stored).toEqual([]);
    expect(t.settled).toEqual([]);
  });
});

describe('an answer that breaks off', () => {
  /** Each call's events in turn; a call whose script ends in an error throws it after its events. */
  function callsOf(...scripts: (ProviderEvent | UpstreamError)[][]) {
    const requests: ProviderRequest[] = [];
    const adapter: ProviderAdapter = {
      kind: 'openai',
      stream(request, _signal, emit) {
        const script = scripts[requests.length] ?? [];
        requests.push(request);
        for (const item of script) {
          if (item instanceof UpstreamError) return Promise.reject(item);
          emit(item);
        }
        return Promise.resolve();
      },
      complete: () => Promise.reject(new Error('not used')),
    };
    return { adapter, requests };
  }
  const cut = () => new UpstreamError('network', 'socket closed', { retryable: true });
  const done = (finishReason: string): ProviderEvent => ({ type: 'done', finishReason, sawDone: true });

  it('after text only, goes on from that text (the next call prefills it)', async () => {
    const upstream = callsOf([{ type: 'text', delta: 'Looking it up' }, cut()], [{ type: 'text', delta: ' now.' }, done('stop')]);
    const t = setup({ adapter: upstream.adapter, maxAttempts: 2 });
    t.generation.start();
    t.listen();
    const result = await t.generation.done;
    expect(result.content).toBe('Looking it up now.');
    expect(upstream.requests[1]?.messages.at(-1)).toEqual({ role: 'assistant', content: 'Looking it up' });
    expect(t.heard.map((e) => e.event)).not.toContain('reset');
  });

  it('after a function call began, starts over (a call cannot be prefilled) and keeps only the new answer\'s calls', async () => {
    const upstream = callsOf(
      [{ type: 'text', delta: 'Looking it up.' }, { type: 'toolCall', index: 0, id: 'call_a', name: 'get_weather', arguments: '{"ci' }, cut()],
      [{ type: 'toolCall', index: 0, id: 'call_b', name: 'get_weather', arguments: '{"city":"Paris"}' }, done('tool_calls')],
    );
    const t = setup({ adapter: upstream.adapter, maxAttempts: 2 });
    t.generation.start();
    t.listen();
    const result = await t.generation.done;
    expect(upstream.requests[1]?.messages).toEqual([{ role: 'user', content: 'hi' }]);
    expect(upstream.requests[1]?.continuation).toBeUndefined();
    expect(t.heard.map((e) => e.event)).toEqual(['start', 'chatId', 'chunk', 'toolCall', 'reset', 'toolCall', 'end']);
    expect(result).toMatchObject({ status: 'complete', content: '', finishReason: 'tool_calls', toolCalls: [{ id: 'call_b', type: 'function', function: { name: 'get_weather', arguments: '{"city":"Paris"}' } }] });
    expect(t.stored[0]?.outcome.toolCalls).toEqual(result.toolCalls);
  });
});

describe('a subscriber that joins a running generation late', () => {
  it('gets every event after its id exactly as live subscribers got it (ids, names, data, payloads), from the compact store', async () => {
    const t = setup();
    t.generation.start();
    t.listen();
    t.upstream.push({ type: 'reasoning', delta: 'think "quoted"' }, ...Array.from({ length: 50 }, (_, i) => ({ type: 'text' as const, delta: `w${i} \n` })), { type: 'usage', usage: { promptTokens: 3, completionTokens: 50, totalTokens: 53 } }, 'end');
    await t.generation.done;
    const strip = (events: GenerationEvent[]) => events.map((e) => ({ id: e.id, event: e.event, data: e.data, payload: e.payload }));
    const late: GenerationEvent[] = [];
    t.generation.subscribe(0, (e) => void late.push(e));
    expect(strip(late)).toEqual(strip(t.heard));
    const after: GenerationEvent[] = [];
    t.generation.subscribe(40, (e) => void after.push(e));
    expect(strip(after)).toEqual(strip(t.heard.filter((e) => e.id > 40)));
    expect(t.heard.map((e) => e.event).slice(-2)).toEqual(['usage', 'end']);
  });
});

describe.each(await backendNames())('Generation checkpoints on %s', (name) => {
  let backend: Backend;
  beforeAll(async () => {
    backend = await createBackend(name);
    await migrateToLatest(backend.database.db);
  });
  afterAll(async () => {
    await backend.dispose();
  });

  it('stores the text as it grows, sending only the new part, and the whole text again after a checkpoint failed', async () => {
    const [user] = await backend.database.db
      .insertInto('users')
      .values({ username: 'cp', password_hash: 'x', updated_at: new Date(), password_changed_at: new Date() })
      .returning('id')
      .execute();
    const real = createChatRepository(backend.database, 'instance-1');
    const turnId = crypto.randomUUID();
    const created = await real.createTurn({ userId: user?.id ?? '', agentId: 'a', sessionId: undefined, userMessageId: crypto.randomUUID(), assistantMessageId: turnId, userContent: 'q', title: 'q' });
    const sent: { content: string; reasoning: string | null; after: unknown }[] = [];
    let failNext = false;
    const repo = Object.create(real) as ChatRepository;
    repo.checkpoint = (id, content, reasoning, after) => {
      sent.push({ content, reasoning, after });
      if (failNext) {
        failNext = false;
        return Promise.reject(new Error('database down'));
      }
      return real.checkpoint(id, content, reasoning, after);
    };
    const t = setup({ repo, checkpointIntervalMs: 15, turnId, sessionId: created?.sessionId ?? '' });
    const text = async () => (await backend.database.db.selectFrom('messages').select(['content', 'reasoning']).where('id', '=', turnId).executeTakeFirstOrThrow());
    const checkpointed = async (expected: { content: string; reasoning: string | null }) => {
      for (let i = 0; i < 200 && JSON.stringify(await text()) !== JSON.stringify(expected); i++) await tick();
      expect(await text()).toEqual(expected);
    };
    t.generation.start();
    t.upstream.push({ type: 'reasoning', delta: '想' }, { type: 'text', delta: '你好' });
    await checkpointed({ content: '你好', reasoning: '想' });
    t.upstream.push({ type: 'text', delta: ', wörld' });
    await checkpointed({ content: '你好, wörld', reasoning: '想' });
    failNext = true;
    t.upstream.push({ type: 'text', delta: '!' });
    await checkpointed({ content: '你好, wörld!', reasoning: '想' });
    t.upstream.push({ type: 'reasoning', delta: '一想' }, { type: 'text', delta: ' 再见' });
    await checkpointed({ content: '你好, wörld! 再见', reasoning: '想一想' });
    t.upstream.push('end');
    expect((await t.generation.done).status).toBe('complete');
    // First the whole text, then parts; after the failure the whole text again, then parts.
    const failedAt = sent.findIndex((c) => c.content === '!' || c.content === '你好, wörld!');
    expect(sent[0]).toEqual({ content: '你好', reasoning: '想', after: undefined });
    expect(sent.slice(1, failedAt).every((c) => c.after !== undefined && !c.content.startsWith('你好'))).toBe(true);
    expect(sent[failedAt]?.after).toBeDefined();
    expect(sent[failedAt + 1]).toMatchObject({ content: '你好, wörld!', after: undefined });
    expect(sent.slice(failedAt + 2).every((c) => c.after !== undefined)).toBe(true);
    expect(await text()).toEqual({ content: '你好, wörld! 再见', reasoning: '想一想' });
  });
});
