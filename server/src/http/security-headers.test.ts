import Fastify from 'fastify';
import { describe, expect, it } from 'vitest';
import { registerSecurityHeaders, securityHeaders } from './security-headers.js';

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

  it('follow the options given (a CSP when asked for)', () => {
    expect(securityHeaders({})['content-security-policy']).toContain("default-src 'self'");
  });

  it('land on every reply, errors and unknown routes included, and a route can still override one', async () => {
    const app = Fastify();
    registerSecurityHeaders(app, { contentSecurityPolicy: false, crossOriginEmbedderPolicy: false });
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
