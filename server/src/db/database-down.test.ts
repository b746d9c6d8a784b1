import type { FastifyInstance } from 'fastify';
import pino from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { postgresBinDir, startPostgres, type DisposableService } from '../../../tools/src/local-cluster/services.js';
import { createMockUpstream, type MockUpstream } from '../../../tools/src/mock-upstream/index.js';
import { buildApp } from '../app.js';
import { MemoryState } from '../shared-state/memory-state.js';
import { bearer, login, testConfig } from '../test/app.js';
import { eventually, readSse, type ParsedEvent } from '../test/sse.js';
import { createDatabase, type DatabaseHandle } from './database.js';
import { isDatabaseUnavailable } from './unavailable.js';

describe('isDatabaseUnavailable', () => {
  const withCode = (code: string, message = 'x') => Object.assign(new Error(message), { code });
  it('recognises refused and dropped connections, shutdowns and failover, and nothing else', () => {
    for (const err of [
      withCode('ECONNREFUSED'),
      withCode('57P01', 'terminating connection due to administrator command'),
      withCode('08006'),
      withCode('25006', 'cannot execute INSERT in a read-only transaction'),
      new Error('Connection terminated unexpectedly'),
      new Error('timeout exceeded when trying to connect'),
      new Error('wrapped', { cause: withCode('ECONNRESET') }),
      new AggregateError([withCode('ECONNREFUSED')], 'connect failed'),
    ]) {
      expect(isDatabaseUnavailable(err), String(err)).toBe(true);
    }
    for (const err of [withCode('23505', 'duplicate key'), withCode('42P01', 'relation does not exist'), new Error('boom'), 'ECONNREFUSED', undefined]) {
      expect(isDatabaseUnavailable(err), String(err)).toBe(false);
    }
  });
});

/**
 * PostgreSQL going away under a running app: a throw-away server of the
 * test's own, crashed and restarted (the machine's shared one is untouched).
 */
describe.skipIf(postgresBinDir() === undefined)('the app while PostgreSQL is down', () => {
  let postgres: DisposableService;
  let mock: MockUpstream;
  let database: DatabaseHandle;
  let app: FastifyInstance;
  let token: string;
  let base: string;
  const logged: string[] = [];

  beforeAll(async () => {
    postgres = await startPostgres();
    mock = await createMockUpstream({ port: 0, defaultChunks: 3, defaultIntervalMs: 1 });
    const config = testConfig({ DATABASE_URL: postgres.url });
    database = await createDatabase({ url: postgres.url, poolMax: 5 });
    const logger = pino({ level: 'warn' }, { write: (line: string) => void logged.push(line) });
    app = await buildApp({ config, database, state: new MemoryState(), logger, logRequests: false });
    await app.listen({ port: 0, host: '127.0.0.1' });
    const address = app.server.address();
    base = `http://127.0.0.1:${typeof address === 'object' && address ? address.port : 0}`;
    token = await login(app);
    const created = await app.inject({
      method: 'POST',
      url: '/api/agents',
      headers: bearer(token),
      payload: { id: 'a', name: 'A', provider: 'openai', endpoint: `${mock.url}/v1/chat/completions`, apiKey: 'k', model: 'm' },
    });
    expect(created.statusCode).toBe(201);
  });
  afterAll(async () => {
    await app.close();
    await database.close();
    await mock.close();
    await postgres.dispose();
  });

  const chat = (content: string) =>
    app.inject({ method: 'POST', url: '/api/chat/completions', headers: bearer(token), payload: { agentId: 'a', stream: false, messages: [{ role: 'user', content }] } });

  it('refuses new turns at once with 503 DATABASE_UNAVAILABLE and Retry-After, and recovers by itself', async () => {
    expect((await chat('before')).statusCode).toBe(200);
    await postgres.crash();

    const refused = await chat('while down');
    expect(refused.statusCode).toBe(503);
    expect(refused.json<{ error: { code: string } }>().error.code).toBe('DATABASE_UNAVAILABLE');
    expect(refused.headers['retry-after']).toBe('2');
    // Once a turn could not be written, the next ones are written before their upstream call starts: an outage costs no upstream calls.
    const calls = mock.requests.length;
    expect((await chat('still down')).statusCode).toBe(503);
    expect(mock.requests.length).toBe(calls);
    const sessions = await app.inject({ method: 'GET', url: '/api/chat-sessions', headers: bearer(token) });
    expect(sessions.statusCode).toBe(503);
    expect((await app.inject({ method: 'GET', url: '/health/ready' })).statusCode).toBe(503);
    expect((await app.inject({ method: 'GET', url: '/health/live' })).statusCode).toBe(200);

    await postgres.start();
    const back = await eventually(async () => {
      const res = await chat('after');
      return res.statusCode === 200 ? res : undefined;
    }, 'a turn to succeed once PostgreSQL is back');
    expect(back.json<{ data: { choices: { message: { content: string } }[] } }>().data.choices[0]?.message.content).toContain('after');
    // Nothing was written for the refused turn.
    const rows = await database.db.selectFrom('messages').select('content').where('role', '=', 'user').execute();
    expect(rows.map((r) => r.content).sort()).toEqual(['after', 'before']);
  });

  it('stores a streaming answer once PostgreSQL is back when it went down mid-answer', async () => {
    const response = await fetch(`${base}/api/chat/completions`, {
      method: 'POST',
      headers: { ...bearer(token), 'content-type': 'application/json' },
      // Slow enough that PostgreSQL is down before the answer ends.
      body: JSON.stringify({ agentId: 'a', stream: true, messages: [{ role: 'user', content: 'outlive the database [[mock chunks=6 interval=150]]' }] }),
    });
    expect(response.status).toBe(200);
    let crashed: Promise<unknown> | undefined;
    let restarted: Promise<unknown> | undefined;
    const events: ParsedEvent[] = await readSse(response.body as ReadableStream<Uint8Array>, (event) => {
      if (event.event === 'chunk' && crashed === undefined) {
        crashed = postgres.crash().then(() => {
          // Back while the finishing write is still retrying.
          restarted = new Promise((resolve) => setTimeout(resolve, 1_000)).then(() => postgres.start());
        });
      }
    });
    await crashed;
    await restarted;
    const end = events.at(-1);
    expect(end?.event).toBe('end');
    expect((end?.json as { status: string }).status).toBe('complete');
    const messageId = (end?.json as { messageId: string }).messageId;
    const text = events.filter((e) => e.event === 'chunk').map((e) => (e.json as { content: string }).content).join('');
    const stored = await database.db.selectFrom('messages').select(['status', 'content']).where('id', '=', messageId).executeTakeFirstOrThrow();
    expect(stored).toEqual({ status: 'complete', content: text });
    // The ending really met the outage: its write failed at least once and was retried.
    expect(logged.some((line) => line.includes('storing the finished turn failed; retrying'))).toBe(true);
  });
});
