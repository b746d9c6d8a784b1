import type { FastifyInstance } from 'fastify';
import pino from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { redisServerPath, startRedis, type DisposableService } from '../../../tools/src/local-cluster/services.js';
import { createMockUpstream, type MockUpstream } from '../../../tools/src/mock-upstream/index.js';
import { buildApp } from '../app.js';
import { sampleSum } from '../test/prometheus-text.js';
import { createDatabase, type DatabaseHandle } from '../db/database.js';
import { bearer, login, testConfig } from '../test/app.js';
import { eventually, parseSse } from '../test/sse.js';
import { RedisState } from './redis-state.js';
import { SharedStateUnavailable, type FollowEndReason, type TurnEvent } from './shared-state.js';

/**
 * Redis going away under a running app (a throw-away Redis of the test's
 * own): chat keeps working without resumption and, as configured, with rate
 * limits open or closed; everything comes back by itself.
 */
describe.skipIf(redisServerPath() === undefined)('the app while Redis is down', () => {
  let redis: DisposableService;
  let mock: MockUpstream;
  const apps: { app: FastifyInstance; database: DatabaseHandle; state: RedisState }[] = [];
  let open: FastifyInstance;
  let closed: FastifyInstance;
  let state: RedisState;
  let openToken: string;
  let closedToken: string;
  const logged: string[] = [];

  async function start(limits: 'open' | 'closed'): Promise<FastifyInstance> {
    // A token budget too: its reservation goes in the same admission as the rate limit.
    const config = testConfig({ REDIS_URL: redis.url, CHAT_RATE_LIMIT_PER_MINUTE: '1000', DAILY_TOKEN_QUOTA: '1000000', RATE_LIMITS_WITHOUT_REDIS: limits });
    const database = await createDatabase({});
    const logger = pino({ level: 'info' }, { write: (line: string) => void logged.push(line) });
    const appState = new RedisState(redis.url, `llmchat-redis-down-${limits}:`, logger);
    const app = await buildApp({ config, database, state: appState, logger, logRequests: false });
    apps.push({ app, database, state: appState });
    const token = await login(app);
    const created = await app.inject({
      method: 'POST',
      url: '/api/agents',
      headers: bearer(token),
      payload: { id: 'a', name: 'A', provider: 'openai', endpoint: `${mock.url}/v1/chat/completions`, apiKey: 'k', model: 'm' },
    });
    expect(created.statusCode).toBe(201);
    return app;
  }

  beforeAll(async () => {
    redis = await startRedis();
    mock = await createMockUpstream({ port: 0, defaultChunks: 3, defaultIntervalMs: 1 });
    state = new RedisState(redis.url, 'llmchat-redis-down-direct:');
    open = await start('open');
    closed = await start('closed');
    openToken = await login(open);
    closedToken = await login(closed);
  });
  afterAll(async () => {
    for (const { app, database } of apps) {
      await app.close();
      await database.close();
    }
    await state.close();
    await mock.close();
    await redis.dispose();
  });

  const chat = (app: FastifyInstance, token: string, content: string) =>
    app.inject({ method: 'POST', url: '/api/chat/completions', headers: bearer(token), payload: { agentId: 'a', stream: true, messages: [{ role: 'user', content }] } });

  it('fails commands at once with SharedStateUnavailable while Redis is down, and recovers by itself', async () => {
    expect(await state.hit('k', 60)).toBe(1);
    await redis.crash();
    const error = await eventually(async () => state.hit('k', 60).then(() => undefined, (err: unknown) => err), 'a command to fail');
    expect(error).toBeInstanceOf(SharedStateUnavailable);
    await expect(state.readEvents('t', 0)).rejects.toBeInstanceOf(SharedStateUnavailable);
    // Breakers too: a failing turn records on its endpoint's breaker, and must not wait in the client's queue for reconnects.
    await expect(state.breakerAcquire('e', 0, 1_000)).rejects.toBeInstanceOf(SharedStateUnavailable);
    await expect(state.breakerRecord('e', 'failure', 0, { threshold: 5, windowMs: 1_000, cooldownMs: 1_000 })).rejects.toBeInstanceOf(SharedStateUnavailable);
    await expect(state.breakerRead(['e'])).rejects.toBeInstanceOf(SharedStateUnavailable);
    await redis.start();
    // An empty Redis again (no persistence): the counter starts over.
    expect(await eventually(async () => state.hit('k', 60).catch(() => undefined), 'a command to succeed again')).toBe(1);
  });

  it('keeps chat working (limits open) or refuses turns with 503 (limits closed); warns once per outage', async () => {
    await redis.crash();
    await eventually(async () => state.ping().then(() => false, () => true), 'Redis to be seen down');
    const warningsBefore = logged.filter((l) => l.includes('shared state unavailable: rate limits')).length;

    for (const n of [1, 2, 3]) {
      const res = await chat(open, openToken, `degraded ${n}`);
      expect(res.statusCode).toBe(200);
      const events = parseSse(res.body);
      expect(events.at(-1)?.event).toBe('end');
      expect((events.at(-1)?.json as { status: string }).status).toBe('complete');
      // Uncounted, so no budget to report.
      expect(res.headers['x-ratelimit-limit']).toBeUndefined();
    }
    const stored = await apps[0]?.database.db.selectFrom('messages').select(['content', 'status']).where('role', '=', 'assistant').execute();
    expect(stored?.filter((m) => m.status === 'complete' && m.content.includes('degraded'))).toHaveLength(3);

    const refused = await chat(closed, closedToken, 'refused');
    expect(refused.statusCode).toBe(503);
    expect(refused.json<{ error: { code: string } }>().error.code).toBe('SHARED_STATE_UNAVAILABLE');
    expect(refused.headers['retry-after']).toBe('5');
    // Metrics see the outage: features degraded, failed operations, a PING that fails; the instance stays ready.
    const metrics = await open.deps.metrics.text();
    expect(sampleSum(metrics, 'llmchat_shared_state_degraded')).toBeGreaterThan(0);
    expect(sampleSum(metrics, 'llmchat_redis_errors_total')).toBeGreaterThan(0);
    expect(sampleSum(metrics, 'llmchat_redis_command_latency_seconds')).toBe(-1);
    expect(sampleSum(metrics, 'llmchat_ready')).toBe(1);

    // One warning per app for the whole outage, not one per request.
    expect(logged.filter((l) => l.includes('shared state unavailable: rate limits')).length - warningsBefore).toBe(2);

    await redis.start();
    await eventually(async () => (await chat(closed, closedToken, 'back')).statusCode === 200, 'the closed app to take turns again');
    // Counted again: the budget shows in the headers.
    await eventually(async () => (await chat(open, openToken, 'counted again')).headers['x-ratelimit-limit'] === '1000000', 'the open app to count turns against the budget again');
    expect(logged.some((l) => l.includes('shared state back: rate limits'))).toBe(true);
  });

  it('warns once about the breakers for the whole outage however many upstream calls fail, and once when Redis is back', async () => {
    const breakerLines = (what: string) => logged.filter((l) => l.includes(`${what}: circuit breakers`)).length;
    const breakerWarnings = () => breakerLines('shared state unavailable');
    // After an earlier outage, the breakers say they are back at their next command that succeeds.
    await eventually(async () => {
      await chat(open, openToken, 'before the outage');
      return breakerLines('shared state back') === breakerWarnings();
    }, 'the breakers to be out of any earlier outage');
    await redis.crash();
    await eventually(async () => state.ping().then(() => false, () => true), 'Redis to be seen down');
    const before = breakerWarnings();
    for (const n of [1, 2, 3]) {
      // Every call fails (two attempts per turn), and each failure is recorded on the endpoint's breaker.
      const events = parseSse((await chat(open, openToken, `failing ${n} [[mock status=503]]`)).body);
      expect(events.some((e) => e.event === 'error')).toBe(true);
    }
    expect(breakerWarnings() - before).toBe(1);

    await redis.start();
    await eventually(async () => {
      await chat(open, openToken, 'breakers back');
      return breakerLines('shared state back') === breakerWarnings();
    }, 'the breakers to report shared state back');
  });

  it('stays ready (degraded, naming shared state) while Redis is down, so a load balancer keeps every instance', async () => {
    await redis.crash();
    await eventually(async () => state.ping().then(() => false, () => true), 'Redis to be seen down');
    const ready = await eventually(async () => {
      const res = await open.inject({ method: 'GET', url: '/health/ready' });
      return res.json<{ status: string }>().status === 'degraded' ? res : undefined;
    }, 'ready to report degraded');
    expect(ready.statusCode).toBe(200);
    expect(ready.json<{ degraded: string[]; checks: { sharedState: { ok: boolean; kind: string } } }>()).toMatchObject({ degraded: ['sharedState'], checks: { sharedState: { ok: false, kind: 'redis' } } });
    const detailed = await open.inject({ method: 'GET', url: '/health/detailed', remoteAddress: '127.0.0.1' });
    expect(detailed.statusCode).toBe(200);
    expect(detailed.json<{ status: string; dependencies: { sharedState: { ok: boolean } } }>()).toMatchObject({ status: 'degraded', dependencies: { sharedState: { ok: false } } });

    await redis.start();
    await eventually(async () => (await open.inject({ method: 'GET', url: '/health/ready' })).json<{ status: string }>().status === 'ok', 'ready to report ok again');
  });

  it('resumes answers from the event buffer again once Redis is back', async () => {
    const res = await chat(open, openToken, 'resumable');
    const start = parseSse(res.body).find((e) => e.event === 'start')?.json as { messageId: string };
    const replay = await eventually(async () => {
      const r = await open.inject({ method: 'GET', url: `/api/chat/stream?messageId=${start.messageId}`, headers: { ...bearer(openToken), 'last-event-id': `${start.messageId}:1` } });
      const events = parseSse(r.body);
      return r.statusCode === 200 && events.at(-1)?.event === 'end' ? events : undefined;
    }, 'a replay of the finished answer');
    expect(replay[0]?.id).toBe(`${start.messageId}:2`);
  });


  it('ends follows when Redis goes down, sends no read while it is down, and follows again once it is back', async () => {
    const chunk = (id: number, name = 'chunk'): TurnEvent => ({ id, event: name, data: '{}' });
    const follow = (turnId: string) => {
      const got: { ids: number[]; closed: FollowEndReason | undefined } = { ids: [], closed: undefined };
      state.followEvents(turnId, 0, { onEvents: (events) => got.ids.push(...events.map((e) => e.id)), onClose: (reason) => (got.closed = reason) });
      return got;
    };
    // Redis was restarted by the tests above: this connection may still be on its way back.
    await eventually(async () => state.ping().then(() => true, () => false), 'the shared state to be reconnected');
    const before = follow('down-1');
    await state.appendEvents('down-1', [chunk(1)], 60);
    await eventually(async () => before.ids.includes(1), 'the follow to work');

    await redis.crash();
    await eventually(async () => before.closed, 'the follow to end with the connection');
    expect(before.closed).toBe('unavailable');
    // While Redis is down a new follow ends at once, and the follower sends nothing (no loop, no spin).
    const reads = state.followerReads;
    const during = follow('down-2');
    await eventually(async () => during.closed, 'a follow while down to end');
    expect(during.closed).toBe('unavailable');
    let failedPings = 0;
    await eventually(async () => (await state.ping().then(() => false, () => ++failedPings >= 5)) || undefined, 'Redis to stay down for a while');
    expect(state.followerReads).toBe(reads);
    expect(state.followCount).toBe(0);

    await redis.start();
    const after = await eventually(async () => {
      const got = follow('down-3');
      await state.appendEvents('down-3', [chunk(1), chunk(2, 'end')], 60).catch(() => undefined);
      await eventually(async () => got.closed, 'the follow to end', 5_000);
      return got.closed === 'end' ? got : undefined;
    }, 'a follow to work again');
    expect(after.ids).toEqual([1, 2]);
  });

  it('resuming while Redis is down: an answer running elsewhere gets 503, a finished one is rebuilt from the database', async () => {
    const res = await chat(open, openToken, 'finished before the outage');
    const events = parseSse(res.body);
    const messageId = (events[0]?.json as { messageId: string }).messageId;
    const db = apps[0]?.database.db;
    if (!db) throw new Error('app missing');
    const stored = await db.selectFrom('messages').select(['content']).where('id', '=', messageId).executeTakeFirstOrThrow();
    const appState = apps[0]?.state;
    await redis.crash();
    try {
      await eventually(async () => appState?.ping().then(() => false, () => true), 'the app to see Redis down');

      // A client that saw three events of the finished answer: it drops what it holds, then gets the stored answer.
      const finished = await open.inject({ method: 'GET', url: `/api/chat/stream?messageId=${messageId}`, headers: { ...bearer(openToken), 'last-event-id': `${messageId}:3` } });
      expect(finished.statusCode).toBe(200);
      const rebuilt = parseSse(finished.body);
      expect(rebuilt.map((e) => [e.id, e.event])).toEqual([
        [`${messageId}:4`, 'reset'],
        [`${messageId}:5`, 'chunk'],
        [`${messageId}:6`, 'end'],
      ]);
      expect((rebuilt[1]?.json as { content: string }).content).toBe(stored.content);

      // The same answer seen as still running on another instance: it cannot be followed now; the client retries later.
      await db.updateTable('messages').set({ status: 'streaming' }).where('id', '=', messageId).execute();
      const running = await open.inject({ method: 'GET', url: `/api/chat/stream?messageId=${messageId}`, headers: { ...bearer(openToken), 'last-event-id': `${messageId}:3` } });
      expect(running.statusCode).toBe(503);
      expect(running.json<{ error: { code: string } }>().error.code).toBe('SHARED_STATE_UNAVAILABLE');
      expect(running.headers['retry-after']).toBe('2');
    } finally {
      await db.updateTable('messages').set({ status: 'complete' }).where('id', '=', messageId).execute();
      await redis.start();
    }
  });

  it('ends a followed resume stream without `end` when Redis goes down, so the client reconnects', async () => {
    const res = await chat(open, openToken, 'followed when Redis goes');
    const messageId = (parseSse(res.body)[0]?.json as { messageId: string }).messageId;
    const app = apps[0];
    if (!app) throw new Error('app missing');
    // An answer running on another instance that has not written its next events yet.
    await app.database.db.updateTable('messages').set({ status: 'streaming' }).where('id', '=', messageId).execute();
    await eventually(async () => app.state.ping().catch(() => undefined), 'the app to reach Redis');
    const follows = app.state.followCount;
    const resumed = open.inject({ method: 'GET', url: `/api/chat/stream?messageId=${messageId}`, headers: { ...bearer(openToken), 'last-event-id': `${messageId}:1000` } });
    await eventually(async () => app.state.followCount > follows, 'the resume to follow the buffer');
    await redis.crash();
    try {
      const ended = await resumed;
      expect(ended.statusCode).toBe(200);
      expect(parseSse(ended.body).some((e) => e.event === 'end')).toBe(false);
      expect(app.state.followCount).toBe(follows);
    } finally {
      await app.database.db.updateTable('messages').set({ status: 'complete' }).where('id', '=', messageId).execute();
      await redis.start();
    }
  });
});
