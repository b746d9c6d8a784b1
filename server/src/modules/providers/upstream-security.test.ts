import { createServer, type IncomingHttpHeaders, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { InjectOptions } from 'fastify';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createMockUpstream, type MockUpstream } from '../../../../tools/src/mock-upstream/index.js';
import { bearer, buildTestApp, createUserAndLogin, login, type TestApp } from '../../test/app.js';
import { backendNames } from '../../test/backends.js';
import { parseSse } from '../../test/sse.js';

/**
 * Attacks on what agent endpoints let an admin (or a stolen admin session)
 * do, through the real API of a running app. Every listener is on loopback;
 * nothing is ever sent anywhere else.
 */

/** What an internal service would answer: it must never come back through the API. */
const INTERNAL_SECRET = 'internal-service-says-hello';
const STORED_KEY = 'sk-stored-key-must-stay-home-4b1d';

interface Listener {
  url: string;
  port: number;
  /** TCP connections accepted: 0 proves nothing reached it, not even a handshake. */
  connections: number;
  requests: { method: string; url: string; headers: IncomingHttpHeaders }[];
  close(): Promise<void>;
}

/** An HTTP listener on 127.0.0.1 that records every connection and request and answers with `respond`. */
async function listener(respond: (res: import('node:http').ServerResponse) => void): Promise<Listener> {
  const server: Server = createServer((req, res) => {
    out.requests.push({ method: req.method ?? '', url: req.url ?? '', headers: req.headers });
    req.resume();
    req.on('end', () => respond(res));
  });
  server.on('connection', () => (out.connections += 1));
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as AddressInfo).port;
  const out: Listener = {
    url: `http://127.0.0.1:${port}`,
    port,
    connections: 0,
    requests: [],
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
  return out;
}

/** Answers like an internal service that leaks its secret in a 500. */
const internalService = (res: import('node:http').ServerResponse) => {
  res.writeHead(500, { 'content-type': 'application/json' });
  res.end(JSON.stringify({ error: { message: INTERNAL_SECRET } }));
};

interface ErrorJson {
  error: { code: string; message: string };
}

function agentBody(id: string, endpoint: string, extra: Record<string, unknown> = {}) {
  return { id, name: id, provider: 'openai', endpoint, apiKey: STORED_KEY, model: 'mock-model', ...extra };
}

const backends = await backendNames();

describe.each(backends)('the outbound address guard with the default policy on %s', (backendName) => {
  let t: TestApp;
  let admin: string;
  let user: string;
  let internal: Listener;

  beforeAll(async () => {
    internal = await listener(internalService);
    // The default policy: the test setup's loopback allowance is taken away again.
    t = await buildTestApp(backendName, { UPSTREAM_ALLOWED_CIDRS: '', BREAKER_FAILURE_THRESHOLD: '1', UPSTREAM_RETRY_BASE_MS: '0' });
    admin = await login(t.app);
    user = (await createUserAndLogin(t.app, admin, 'guard-user')).token;
  });
  afterAll(async () => {
    await t?.close();
    await internal?.close();
  });

  const inject = (method: InjectOptions['method'], url: string, token: string, payload?: InjectOptions['payload']) =>
    t.app.inject({ method, url, headers: bearer(token), ...(payload === undefined ? {} : { payload }) });

  it.each([
    ['loopback', (p: number) => `http://127.0.0.1:${p}/v1`],
    ['loopback elsewhere in 127/8', (p: number) => `http://127.1.2.3:${p}/v1`],
    ['IPv6 loopback', (p: number) => `http://[::1]:${p}/v1`],
    ['IPv4-mapped IPv6 loopback', (p: number) => `http://[::ffff:127.0.0.1]:${p}/v1`],
    ['IPv4-mapped IPv6 loopback in hex', (p: number) => `http://[::ffff:7f00:1]:${p}/v1`],
    ['the metadata service', () => 'http://169.254.169.254/latest/meta-data'],
    ['IPv4-mapped metadata service', () => 'http://[::ffff:169.254.169.254]/latest'],
    ['a private network', () => 'http://10.1.2.3:8080/v1'],
    ['172.16/12', () => 'http://172.31.255.1/v1'],
    ['192.168/16', () => 'http://192.168.1.1/v1'],
    ['carrier-grade NAT', () => 'http://100.64.0.1/v1'],
    ['0/8 (reaches this host)', (p: number) => `http://0.0.0.0:${p}/v1`],
    ['a decimal IPv4 literal', (p: number) => `http://2130706433:${p}/v1`],
    ['unique local IPv6', () => 'http://[fd00::1]/v1'],
    ['link-local IPv6', () => 'http://[fe80::1]/v1'],
  ])('refuses an agent on %s at create time with 400 UPSTREAM_ADDRESS_FORBIDDEN, writing nothing', async (_name, url) => {
    const id = `literal-${Math.random().toString(36).slice(2, 8)}`;
    const res = await inject('POST', '/api/agents', admin, agentBody(id, url(internal.port)));
    expect(res.statusCode, res.body).toBe(400);
    expect(res.json<ErrorJson>().error.code).toBe('UPSTREAM_ADDRESS_FORBIDDEN');
    expect((await inject('GET', `/api/agents/${id}`, admin)).statusCode).toBe(404);
    expect(internal.connections).toBe(0);
  });

  it('refuses an update to a loopback literal, fallbacks included, and keeps the agent as it was', async () => {
    const created = await inject('POST', '/api/agents', admin, agentBody('guarded-update', 'https://llm.example.com/v1'));
    expect(created.statusCode, created.body).toBe(201);
    const primary = await inject('PATCH', '/api/agents/guarded-update', admin, { endpoint: `${internal.url}/v1` });
    expect(primary.statusCode, primary.body).toBe(400);
    expect(primary.json<ErrorJson>().error.code).toBe('UPSTREAM_ADDRESS_FORBIDDEN');
    const fallback = await inject('PATCH', '/api/agents/guarded-update', admin, { fallbacks: [{ provider: 'openai', endpoint: `http://[::ffff:127.0.0.1]:${internal.port}/v1` }] });
    expect(fallback.statusCode, fallback.body).toBe(400);
    expect(fallback.json<ErrorJson>().error.code).toBe('UPSTREAM_ADDRESS_FORBIDDEN');
    const after = (await inject('GET', '/api/agents/guarded-update', admin)).json<{ data: { endpoint: string; fallbacks?: unknown[] } }>().data;
    expect(after.endpoint).toBe('https://llm.example.com/v1');
    expect(after.fallbacks ?? []).toEqual([]);
  });

  it('refuses a name that resolves to loopback when validating: 400, nothing reaches the internal service', async () => {
    // A name is accepted when saved (what it resolves to may change); the connection is what is refused.
    const created = await inject('POST', '/api/agents', admin, agentBody('by-name', `http://localhost:${internal.port}/v1`));
    expect(created.statusCode, created.body).toBe(201);
    const res = await inject('POST', '/api/agents/by-name/validate', admin);
    expect(res.statusCode, res.body).toBe(400);
    expect(res.json<ErrorJson>().error.code).toBe('UPSTREAM_ADDRESS_FORBIDDEN');
    expect(res.body).not.toContain(INTERNAL_SECRET);
    expect(internal.connections).toBe(0);
  });

  it('refuses it on the chat path too: a failed attempt of its own kind, no breaker opened, nothing sent', async () => {
    const created = await inject('POST', '/api/agents', admin, agentBody('by-name-chat', `http://localhost:${internal.port}/v1`));
    expect(created.statusCode, created.body).toBe(201);
    for (let i = 0; i < 2; i++) {
      const res = await inject('POST', '/api/chat/completions', user, { agentId: 'by-name-chat', stream: true, messages: [{ role: 'user', content: `hi ${i}` }] });
      const events = parseSse(res.body);
      const error = events.find((e) => e.event === 'error')?.json as { code: string; message: string } | undefined;
      // With BREAKER_FAILURE_THRESHOLD=1 a breaker-counted failure would turn the second turn into UPSTREAM_CIRCUIT_OPEN.
      expect(error?.code, res.body).toBe('UPSTREAM_ADDRESS_FORBIDDEN');
      expect(res.body).not.toContain('localhost');
    }
    const blocking = await inject('POST', '/api/chat/completions', user, { agentId: 'by-name-chat', stream: false, messages: [{ role: 'user', content: 'blocking' }] });
    expect(blocking.statusCode, blocking.body).toBe(400);
    expect(blocking.json<ErrorJson>().error.code).toBe('UPSTREAM_ADDRESS_FORBIDDEN');
    await t.app.deps.failures.settled();
    const rows = await t.backend.database.db.selectFrom('upstream_failures').select(['kind', 'error_code']).where('agent_id', '=', 'by-name-chat').execute();
    expect(rows.length).toBe(3);
    expect(rows.every((r) => r.kind === 'forbidden' && r.error_code === 'UPSTREAM_ADDRESS_FORBIDDEN')).toBe(true);
    expect(internal.connections).toBe(0);
  });
});

describe.each(backends)('upstream calls with loopback allowed (UPSTREAM_ALLOWED_CIDRS) on %s', (backendName) => {
  let t: TestApp;
  let admin: string;
  let user: string;
  let mock: MockUpstream;
  let internal: Listener;
  let capture: Listener;
  let redirector: Listener;

  beforeAll(async () => {
    mock = await createMockUpstream({ port: 0, host: '127.0.0.1', defaultChunks: 2, defaultIntervalMs: 0 });
    internal = await listener(internalService);
    capture = await listener((res) => {
      res.writeHead(401, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ error: { message: 'captured', code: 'invalid_api_key' } }));
    });
    redirector = await listener((res) => {
      res.writeHead(302, { location: `${capture.url}/v1/chat/completions` });
      res.end();
    });
    t = await buildTestApp(backendName, { UPSTREAM_ALLOWED_CIDRS: '127.0.0.0/8', UPSTREAM_RETRY_BASE_MS: '0', UPSTREAM_MAX_ATTEMPTS: '1' });
    admin = await login(t.app);
    user = (await createUserAndLogin(t.app, admin, 'allowed-user')).token;
  });
  afterAll(async () => {
    await t?.close();
    for (const l of [internal, capture, redirector]) await l?.close();
    await mock?.close();
  });

  const inject = (method: InjectOptions['method'], url: string, token: string, payload?: InjectOptions['payload']) =>
    t.app.inject({ method, url, headers: bearer(token), ...(payload === undefined ? {} : { payload }) });

  it('lets an allow-listed address through, by literal and by name', async () => {
    for (const [id, url] of [
      ['allowed-literal', `${mock.url}/v1`],
      ['allowed-name', `http://localhost:${new URL(mock.url).port}/v1`],
    ] as const) {
      const created = await inject('POST', '/api/agents', admin, agentBody(id, url));
      expect(created.statusCode, created.body).toBe(201);
      const res = await inject('POST', `/api/agents/${id}/validate`, admin);
      expect(res.statusCode, res.body).toBe(200);
      expect(res.json<{ data: { ok: boolean } }>().data.ok).toBe(true);
    }
  });

  it('never follows a redirect: the target gets nothing, the call fails', async () => {
    capture.requests.length = 0;
    const created = await inject('POST', '/api/agents', admin, agentBody('redirecting', `${redirector.url}/v1`));
    expect(created.statusCode, created.body).toBe(201);
    const validated = await inject('POST', '/api/agents/redirecting/validate', admin);
    expect(validated.statusCode, validated.body).toBe(200);
    const check = validated.json<{ data: { ok: boolean; endpoints: { error?: { status?: number } }[] } }>().data;
    expect(check.ok).toBe(false);
    expect(check.endpoints[0]?.error?.status).toBe(302);
    const res = await inject('POST', '/api/chat/completions', user, { agentId: 'redirecting', stream: true, messages: [{ role: 'user', content: 'hi' }] });
    expect(parseSse(res.body).some((e) => e.event === 'error'), res.body).toBe(true);
    expect(redirector.requests.length).toBe(2);
    expect(capture.requests.length).toBe(0);
  });

  describe('a stored key and a moved endpoint', () => {
    it('drops the stored key when PATCH moves the endpoint to another origin without a key: the new host never sees it', async () => {
      const created = await inject('POST', '/api/agents', admin, agentBody('keyed', `${mock.url}/v1`));
      expect(created.statusCode, created.body).toBe(201);
      capture.requests.length = 0;
      const moved = await inject('PATCH', '/api/agents/keyed', admin, { endpoint: `${capture.url}/v1` });
      expect(moved.statusCode, moved.body).toBe(200);
      expect(moved.json<{ data: { hasApiKey: boolean } }>().data.hasApiKey).toBe(false);
      await inject('POST', '/api/agents/keyed/validate', admin);
      await inject('POST', '/api/chat/completions', user, { agentId: 'keyed', stream: true, messages: [{ role: 'user', content: 'hi' }] });
      expect(capture.requests.length).toBe(2);
      for (const request of capture.requests) expect(JSON.stringify(request.headers)).not.toContain(STORED_KEY);
    });

    it('keeps the key while the origin stays the same, and sends a key given in the same request to the new origin', async () => {
      const created = await inject('POST', '/api/agents', admin, agentBody('keyed-same', `${mock.url}/v1`));
      expect(created.statusCode, created.body).toBe(201);
      const samePlace = await inject('PATCH', '/api/agents/keyed-same', admin, { endpoint: `${mock.url}/v1/chat/completions` });
      expect(samePlace.json<{ data: { hasApiKey: boolean } }>().data.hasApiKey).toBe(true);
      capture.requests.length = 0;
      const moved = await inject('PATCH', '/api/agents/keyed-same', admin, { endpoint: `${capture.url}/v1`, apiKey: 'sk-new-host-key' });
      expect(moved.json<{ data: { hasApiKey: boolean } }>().data.hasApiKey).toBe(true);
      await inject('POST', '/api/agents/keyed-same/validate', admin);
      expect(capture.requests.map((r) => r.headers.authorization)).toEqual(['Bearer sk-new-host-key']);
    });

    it('drops a fallback key when the fallback moves (the existing rule)', async () => {
      const created = await inject('POST', '/api/agents', admin, agentBody('keyed-fallback', `${mock.url}/v1`, { fallbacks: [{ provider: 'openai', endpoint: `${mock.url}/v1`, apiKey: STORED_KEY }] }));
      expect(created.statusCode, created.body).toBe(201);
      const moved = await inject('PATCH', '/api/agents/keyed-fallback', admin, { fallbacks: [{ provider: 'openai', endpoint: `${capture.url}/v1` }] });
      expect(moved.json<{ data: { fallbacks: { hasApiKey: boolean }[] } }>().data.fallbacks[0]?.hasApiKey).toBe(false);
    });
  });

  describe('upstream error text', () => {
    let adminCreated = false;
    async function leakyAgent(): Promise<void> {
      if (adminCreated) return;
      const created = await inject('POST', '/api/agents', admin, agentBody('leaky', `${internal.url}/v1`));
      expect(created.statusCode, created.body).toBe(201);
      adminCreated = true;
    }

    async function turnAs(token: string, stream: boolean) {
      await leakyAgent();
      return inject('POST', '/api/chat/completions', token, { agentId: 'leaky', stream, messages: [{ role: 'user', content: 'hello' }] });
    }

    it('reaches a user only as the stable code and a generic message: live, blocking, stored, replayed and on /v1', async () => {
      const streamed = await turnAs(user, true);
      const events = parseSse(streamed.body);
      const error = events.find((e) => e.event === 'error')?.json as { code: string; message: string };
      expect(error.code).toBe('UPSTREAM_ERROR');
      expect(error.message).toBe('The model provider failed to answer');
      expect(streamed.body).not.toContain(INTERNAL_SECRET);
      const turnId = (events[0]?.json as { messageId: string }).messageId;
      const sessionId = (events.at(-1)?.json as { sessionId: string }).sessionId;

      const blocking = await turnAs(user, false);
      expect(blocking.statusCode).toBe(502);
      expect(blocking.json<ErrorJson>().error).toEqual(expect.objectContaining({ code: 'UPSTREAM_ERROR', message: 'The model provider failed to answer' }));

      const session = await inject('GET', `/api/chat-sessions/${sessionId}`, user);
      expect(session.statusCode).toBe(200);
      expect(session.body).toContain('UPSTREAM_ERROR');
      expect(session.body).not.toContain(INTERNAL_SECRET);

      const replayed = await inject('GET', `/api/chat/stream?messageId=${turnId}&lastEventId=0`, user);
      expect(replayed.body).toContain('UPSTREAM_ERROR');
      expect(replayed.body).not.toContain(INTERNAL_SECRET);

      for (const stream of [false, true]) {
        const v1 = await inject('POST', '/v1/chat/completions', user, { model: 'leaky', stream, messages: [{ role: 'user', content: 'hello' }] });
        expect(v1.body).toContain('UPSTREAM_ERROR');
        expect(v1.body).not.toContain(INTERNAL_SECRET);
      }

      // The detail was kept where admins look: the stored answer.
      const row = await t.backend.database.db.selectFrom('messages').select(['error_code', 'error_message']).where('id', '=', turnId).executeTakeFirstOrThrow();
      expect(row.error_code).toBe('UPSTREAM_ERROR');
      expect(row.error_message).toContain(INTERNAL_SECRET);
    });

    it('reaches an admin with the detail, live and stored', async () => {
      const streamed = await turnAs(admin, true);
      const events = parseSse(streamed.body);
      const error = events.find((e) => e.event === 'error')?.json as { code: string; message: string };
      expect(error.code).toBe('UPSTREAM_ERROR');
      expect(error.message).toContain(INTERNAL_SECRET);
      const sessionId = (events.at(-1)?.json as { sessionId: string }).sessionId;
      const session = await inject('GET', `/api/chat-sessions/${sessionId}`, admin);
      expect(session.body).toContain(INTERNAL_SECRET);
      await t.app.deps.failures.settled();
      // The failed-attempt log keeps the detail too, for operators.
      const attempts = await t.backend.database.db.selectFrom('upstream_failures').select(['status', 'error_code', 'detail']).where('agent_id', '=', 'leaky').execute();
      expect(attempts.length).toBeGreaterThan(0);
      expect(attempts.every((a) => a.status === 500 && a.error_code === 'UPSTREAM_ERROR' && a.detail?.includes(INTERNAL_SECRET))).toBe(true);
    });

    it('reaches an admin\'s chat-only API key as it reaches a user: the detail needs the admin scope', async () => {
      const created = await inject('POST', '/api/auth/api-keys', admin, { name: 'chat-only', scopes: ['chat'] });
      expect(created.statusCode, created.body).toBe(201);
      const chatKey = created.json<{ data: { key: string } }>().data.key;
      // An agent of its own: the earlier turns' failures may have opened the breaker of `leaky`'s endpoint.
      const agent = await inject('POST', '/api/agents', admin, agentBody('leaky-for-keys', `${internal.url}/v1`));
      expect(agent.statusCode, agent.body).toBe(201);
      const streamed = await inject('POST', '/api/chat/completions', chatKey, { agentId: 'leaky-for-keys', stream: true, messages: [{ role: 'user', content: 'hello' }] });
      const events = parseSse(streamed.body);
      const error = events.find((e) => e.event === 'error')?.json as { code: string; message: string };
      expect(error).toEqual(expect.objectContaining({ code: 'UPSTREAM_ERROR', message: 'The model provider failed to answer' }));
      expect(streamed.body).not.toContain(INTERNAL_SECRET);
      const sessionId = (events.at(-1)?.json as { sessionId: string }).sessionId;
      const session = await inject('GET', `/api/chat-sessions/${sessionId}`, chatKey);
      expect(session.statusCode).toBe(200);
      expect(session.body).not.toContain(INTERNAL_SECRET);
    });
  });
});
