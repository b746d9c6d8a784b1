import crypto from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createMockUpstream, type MockUpstream } from '../../tools/src/mock-upstream/index.js';
import { portAllocator } from '../../tools/src/local-cluster/ports.js';
import { bindIds, childLogger, createLogger, ECS_CHILD_OPTIONS } from './logger.js';
import { ADMIN_PASSWORD, bearer, buildTestApp, login, testConfig, type TestApp } from './test/app.js';
import { startOtlpReceiver, type OtlpReceiver } from '../../tools/src/otlp-sink/receiver.js';
import { eventually, parseSse } from './test/sse.js';

/**
 * Log lines of a real app, read from its logger's destination: every line
 * written while serving a request or a turn carries the request id, the
 * trace id (tracing on), the turn id and the user id; each turn writes one
 * `turn finished` line; LOG_FORMAT=ecs writes Elastic Common Schema; no
 * secret reaches a line.
 */

/** Building an app (a database, migrations, the first admin) on a loaded 2-core machine can take most of a minute. */
const BUILD_TIMEOUT_MS = 180_000;

type Line = Record<string, unknown>;

const UPSTREAM_KEY = 'sk-upstream-key-never-logged-0123456789';

async function appWithLines(env: Record<string, string>): Promise<{ t: TestApp; lines: Line[]; raw: string[] }> {
  const raw: string[] = [];
  const config = testConfig({ ...env, LOG_LEVEL: 'info' });
  const logger = createLogger(config, { write: (line: string) => void raw.push(line) });
  const t = await buildTestApp('pglite+memory', { ...env, LOG_LEVEL: 'info' }, { logger, logRequests: true });
  return {
    t,
    raw,
    get lines() {
      return raw.map((l) => JSON.parse(l) as Line);
    },
  };
}

async function addAgent(t: TestApp, token: string, id: string, mockUrl: string): Promise<void> {
  // The primary answers 503 (retried once), then the fallback answers: the turn logs its failed attempts too.
  const res = await t.app.inject({
    method: 'POST',
    url: '/api/agents',
    headers: bearer(token),
    payload: {
      id,
      name: id,
      provider: 'openai',
      endpoint: `${mockUrl}/fault/status=503/v1/chat/completions`,
      model: `${id}-primary`,
      apiKey: UPSTREAM_KEY,
      fallbacks: [{ provider: 'openai', endpoint: `${mockUrl}/v1/chat/completions`, model: `${id}-fallback`, apiKey: UPSTREAM_KEY }],
    },
  });
  expect(res.statusCode).toBe(201);
}

describe('log lines (LOG_FORMAT=json, tracing on)', () => {
  let receiver: OtlpReceiver;
  let mock: MockUpstream;
  let app: Awaited<ReturnType<typeof appWithLines>>;
  let token: string;

  beforeAll(async () => {
    const ports = portAllocator(26_000);
    receiver = await startOtlpReceiver({ port: await ports.next() });
    mock = await createMockUpstream({ port: await ports.next(), host: '127.0.0.1', defaultChunks: 3, defaultIntervalMs: 1 });
    app = await appWithLines({ OTEL_EXPORTER_OTLP_ENDPOINT: receiver.url, UPSTREAM_RETRY_BASE_MS: '0', UPSTREAM_MAX_ATTEMPTS: '2' });
    token = await login(app.t.app);
    await addAgent(app.t, token, 'logged', mock.url);
  }, BUILD_TIMEOUT_MS);
  afterAll(async () => {
    await app?.t.close();
    await mock?.close();
    await receiver?.close();
  });

  it("every line of a chat request and its turn carries reqId, traceId, userId and turnId; one 'turn finished' line with the turn's figures", async () => {
    const requestId = 'client-req.42:a_b-c';
    const traceId = crypto.randomBytes(16).toString('hex');
    const res = await app.t.app.inject({
      method: 'POST',
      url: '/api/chat/completions',
      headers: { ...bearer(token), 'x-request-id': requestId, traceparent: `00-${traceId}-${crypto.randomBytes(8).toString('hex')}-01` },
      payload: { agentId: 'logged', stream: true, messages: [{ role: 'user', content: 'log me' }] },
    });
    expect(res.headers['x-request-id']).toBe(requestId);
    const events = parseSse(res.body);
    const turnId = (events[0]?.json as { messageId: string }).messageId;
    const userId = (await app.t.backend.database.db.selectFrom('users').select('id').where('username', '=', 'admin').executeTakeFirstOrThrow()).id;

    const finished = await eventually(async () => app.lines.filter((l) => l.msg === 'turn finished' && l.turnId === turnId), "the turn's 'turn finished' line");
    expect(finished).toHaveLength(1);
    expect(finished[0]).toMatchObject({
      level: 30,
      reqId: requestId,
      traceId,
      userId,
      turnId,
      agentId: 'logged',
      endpoint: 1,
      provider: 'openai',
      model: 'logged-fallback',
      status: 'complete',
      attempts: 3,
    });
    for (const key of ['endpointId', 'firstTokenMs', 'totalMs', 'promptTokens', 'completionTokens']) expect(finished[0]?.[key], key).toEqual(expect.any(key === 'endpointId' ? String : Number));

    const ofRequest = app.lines.filter((l) => l.reqId === requestId);
    const messages = ofRequest.map((l) => l.msg);
    expect(messages).toEqual(expect.arrayContaining(['incoming request', 'upstream call failed', 'turn finished', 'request completed']));
    for (const line of ofRequest) {
      // Fastify writes `incoming request` as the request arrives, before its span and its caller are known; every later line names both.
      if (line.msg === 'incoming request') continue;
      expect(line.traceId, String(line.msg)).toBe(traceId);
      expect(line.userId, String(line.msg)).toBe(userId);
    }
    // The turn's lines: the failed attempts and the ending, from the request's own logger with the turn id bound.
    for (const line of ofRequest.filter((l) => l.msg === 'upstream call failed' || l.msg === 'turn finished')) expect(line.turnId, String(line.msg)).toBe(turnId);
    expect(ofRequest.filter((l) => l.msg === 'upstream call failed')).toHaveLength(2);
  });

  it('never writes a secret: the bearer token, the password, the upstream key', async () => {
    await app.t.app.inject({ method: 'POST', url: '/api/chat/completions', headers: bearer(token), payload: { agentId: 'logged', stream: false, messages: [{ role: 'user', content: 'again' }] } });
    await eventually(async () => app.lines.filter((l) => l.msg === 'turn finished').length >= 2, 'the second turn to finish');
    const all = app.raw.join('\n');
    expect(all).not.toContain(token);
    expect(all).not.toContain(ADMIN_PASSWORD);
    expect(all).not.toContain(UPSTREAM_KEY);
  });

  it('keeps a client X-Request-Id only when it is at most 64 characters of [A-Za-z0-9._:-]', async () => {
    const idOf = async (value: string) => (await app.t.app.inject({ method: 'GET', url: '/health/live', headers: { 'x-request-id': value } })).headers['x-request-id'];
    const longest = 'a'.repeat(64);
    expect(await idOf(longest)).toBe(longest);
    expect(await idOf('trace-1.2:3_4')).toBe('trace-1.2:3_4');
    const uuid = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;
    for (const bad of ['a'.repeat(65), 'has space', 'line\u2028break', '{"json":1}', '../../etc', 'x'.repeat(10) + '\u00e9']) {
      const given = await idOf(bad);
      expect(given, bad).toMatch(uuid);
      expect(app.lines.some((l) => l.reqId === bad), bad).toBe(false);
    }
  });
});

describe('log lines (LOG_FORMAT=ecs, tracing off)', () => {
  let mock: MockUpstream;
  let app: Awaited<ReturnType<typeof appWithLines>>;

  beforeAll(async () => {
    mock = await createMockUpstream({ port: await portAllocator(26_100).next(), host: '127.0.0.1', defaultChunks: 2, defaultIntervalMs: 1 });
    app = await appWithLines({ LOG_FORMAT: 'ecs', OTEL_SERVICE_NAME: 'llmchat-ecs', UPSTREAM_RETRY_BASE_MS: '0', UPSTREAM_MAX_ATTEMPTS: '1' });
  }, BUILD_TIMEOUT_MS);
  afterAll(async () => {
    await app?.t.close();
    await mock?.close();
  });

  it('writes Elastic Common Schema JSON with the correlation fields under ECS names, and no trace id without tracing', async () => {
    const token = await login(app.t.app);
    await addAgent(app.t, token, 'ecs', mock.url);
    const res = await app.t.app.inject({ method: 'POST', url: '/api/chat/completions', headers: { ...bearer(token), 'x-request-id': 'ecs-req-1' }, payload: { agentId: 'ecs', stream: false, messages: [{ role: 'user', content: 'ecs' }] } });
    expect(res.statusCode).toBe(200);
    const turnId = res.json<{ data: { messageId: string } }>().data.messageId;
    const finished = await eventually(async () => app.lines.find((l) => l.message === 'turn finished'), "the 'turn finished' line");
    expect(finished).toMatchObject({
      'log.level': 'info',
      'ecs.version': expect.any(String) as unknown,
      'service.name': 'llmchat-ecs',
      'http.request.id': 'ecs-req-1',
      'llmchat.turn.id': turnId,
      'user.id': expect.any(String) as unknown,
      status: 'complete',
      attempts: 2,
    });
    expect(Date.parse(String(finished['@timestamp']))).not.toBeNaN();
    for (const line of app.lines) {
      expect(line, JSON.stringify(line)).toHaveProperty(['@timestamp']);
      expect(line).toHaveProperty(['log.level']);
      expect(line).toHaveProperty(['message']);
      expect(line).not.toHaveProperty(['reqId']);
      expect(line).not.toHaveProperty(['msg']);
      expect(line).not.toHaveProperty(['trace.id']);
    }
    const completed = app.lines.find((l) => l.message === 'request completed' && l['http.request.id'] === 'ecs-req-1');
    expect(completed).toMatchObject({ http: { response: { status_code: 200 } } });
  });
});

describe('bindIds', () => {
  it.each(['json', 'ecs'] as const)('writes what pino setBindings writes (LOG_FORMAT=%s), names mapped the same way', (format) => {
    const lines: string[] = [];
    const logger = createLogger(testConfig({ LOG_FORMAT: format, LOG_LEVEL: 'info' }), { write: (line: string) => void lines.push(line) });
    const ids = { userId: 'u-1', turnId: 't-"2"' };
    const viaPino = format === 'ecs' ? logger.child({ reqId: 'r' }, ECS_CHILD_OPTIONS) : logger.child({ reqId: 'r' });
    const viaUs = childLogger(logger, { reqId: 'r' }, format);
    viaPino.setBindings(ids);
    bindIds(viaUs, ids);
    viaPino.info('x');
    viaUs.info('x');
    const [a, b] = lines.map((l) => {
      const { time: _t, '@timestamp': _ts, ...rest } = JSON.parse(l) as Line;
      return rest;
    });
    expect(b).toEqual(a);
    expect(JSON.stringify(b)).toContain(format === 'ecs' ? '"user.id":"u-1"' : '"userId":"u-1"');
  });
});
