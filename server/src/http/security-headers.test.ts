import Fastify from 'fastify';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createMockUpstream } from '../../../tools/src/mock-upstream/index.js';
import { bearer, buildTestApp, login, type TestApp } from '../test/app.js';
import { backendNames } from '../test/backends.js';
import { API_CSP, registerSecurityHeaders, responseHeaders, securityHeaders } from './security-headers.js';

describe('security headers', () => {
  it("are helmet's, computed once, without a CSP when it is turned off", () => {
    const headers = securityHeaders({ contentSecurityPolicy: false, crossOriginEmbedderPolicy: false });
    expect(headers).toMatchObject({
      'x-content-type-options': 'nosniff',
      'x-frame-options': 'SAMEORIGIN',
      'referrer-policy': 'no-referrer',
      'cross-origin-opener-policy': 'same-origin',
      'cross-origin-resource-policy': 'same-origin',
    });
    expect(headers['strict-transport-security']).toMatch(/^max-age=\d+/);
    expect(headers).not.toHaveProperty('content-security-policy');
    expect(headers).not.toHaveProperty('cross-origin-embedder-policy');
    expect(Object.isFrozen(headers)).toBe(true);
  });

  it("are the API's: a CSP that allows nothing, no-store, and HSTS only in production", () => {
    const development = responseHeaders({ production: false });
    expect(development['content-security-policy']).toBe("default-src 'none'; frame-ancestors 'none'");
    expect(development['cache-control']).toBe('no-store');
    expect(development).not.toHaveProperty('strict-transport-security');
    expect(responseHeaders({ production: true })['strict-transport-security']).toBe('max-age=31536000; includeSubDomains');
    expect(Object.isFrozen(development)).toBe(true);
  });

  it('follow the options given (a CSP when asked for)', () => {
    expect(securityHeaders({})['content-security-policy']).toContain("default-src 'self'");
  });

  it('land on every reply, errors and unknown routes included, and a route can still override one', async () => {
    const app = Fastify();
    registerSecurityHeaders(app, securityHeaders({ contentSecurityPolicy: false, crossOriginEmbedderPolicy: false }));
    app.get('/ok', async () => ({ ok: true }));
    app.get('/framed', async (_request, reply) => reply.header('x-frame-options', 'DENY').send({ ok: true }));
    app.get('/boom', async () => {
      throw new Error('boom');
    });
    try {
      for (const url of ['/ok', '/boom', '/missing']) {
        const res = await app.inject({ url });
        expect(res.headers['x-content-type-options'], url).toBe('nosniff');
        expect(res.headers['x-frame-options'], url).toBe('SAMEORIGIN');
      }
      expect((await app.inject({ url: '/framed' })).headers['x-frame-options']).toBe('DENY');
    } finally {
      await app.close();
    }
  });
});

describe.each(await backendNames())('response headers of the running app on %s', (backendName) => {
  let t: TestApp;
  let admin: string;
  let sessionId: string;
  let mock: Awaited<ReturnType<typeof createMockUpstream>>;

  beforeAll(async () => {
    mock = await createMockUpstream({ port: 0, host: '127.0.0.1', defaultChunks: 2, defaultIntervalMs: 1 });
    t = await buildTestApp(backendName);
    admin = await login(t.app);
    const agent = await t.app.inject({
      method: 'POST',
      url: '/api/agents',
      headers: bearer(admin),
      payload: { id: 'gpt', name: 'GPT', provider: 'openai', endpoint: `${mock.url}/v1/chat/completions`, apiKey: 'k', model: 'm' },
    });
    expect(agent.statusCode, agent.body).toBe(201);
    const turn = await t.app.inject({ method: 'POST', url: '/api/chat/completions', headers: bearer(admin), payload: { agentId: 'gpt', stream: false, messages: [{ role: 'user', content: 'private words' }] } });
    expect(turn.statusCode, turn.body).toBe(200);
    sessionId = turn.json<{ data: { sessionId: string } }>().data.sessionId;
    expect((await t.app.inject({ method: 'POST', url: '/api/auth/api-keys', headers: bearer(admin), payload: { name: 'k' } })).statusCode).toBe(201);
  });
  afterAll(async () => {
    await t.close();
    await mock.close();
  });

  it('forbid caching and loading anything on every API answer carrying private data, errors included, and send no HSTS outside production', async () => {
    const urls = [
      '/api/chat-sessions',
      `/api/chat-sessions/${sessionId}`,
      '/api/chat-sessions/search?q=private',
      '/api/chat/history',
      '/api/auth/profile',
      '/api/auth/api-keys',
      '/api/admin/users',
      '/api/admin/audit',
      '/api/admin/usage',
      '/api/admin/system',
      '/api/agents',
      '/api/agents/gpt',
      '/v1/models',
      '/api/no-such-route',
    ];
    for (const url of urls) {
      const res = await t.app.inject({ method: 'GET', url, headers: bearer(admin) });
      expect(res.statusCode, `${url} ${res.body.slice(0, 200)}`).toBeLessThan(500);
      expect(res.headers['cache-control'], url).toBe('no-store');
      expect(res.headers['content-security-policy'], url).toBe(API_CSP);
      expect(res.headers['x-content-type-options'], url).toBe('nosniff');
      expect(res.headers['strict-transport-security'], url).toBeUndefined();
    }
    // Without credentials (a 401) too: the refusal is no more cacheable than the answer.
    const anonymous = await t.app.inject({ method: 'GET', url: '/api/chat-sessions' });
    expect(anonymous.statusCode).toBe(401);
    expect(anonymous.headers['cache-control']).toBe('no-store');
  });

  it('keep the event stream its own caching rule and the security headers', async () => {
    const res = await t.app.inject({ method: 'POST', url: '/api/chat/completions', headers: bearer(admin), payload: { agentId: 'gpt', stream: true, chatId: sessionId, messages: [{ role: 'user', content: 'stream' }] } });
    expect(res.headers['content-type']).toContain('text/event-stream');
    expect(res.headers['cache-control']).toBe('no-cache, no-transform');
    expect(res.headers['content-security-policy']).toBe(API_CSP);
  });

  it('send HSTS in production only', async () => {
    const production = await buildTestApp(backendName, { NODE_ENV: 'production' });
    try {
      const res = await production.app.inject({ method: 'GET', url: '/health/live' });
      expect(res.headers['strict-transport-security']).toBe('max-age=31536000; includeSubDomains');
      expect(res.headers['content-security-policy']).toBe(API_CSP);
    } finally {
      await production.close();
    }
  });
});
