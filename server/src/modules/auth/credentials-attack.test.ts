import type { FastifyInstance, InjectOptions, LightMyRequestResponse } from 'fastify';
import { SignJWT } from 'jose';
import pino from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildApp } from '../../app.js';
import { MemoryState } from '../../shared-state/memory-state.js';
import { Channels } from '../../shared-state/shared-state.js';
import { ADMIN_USERNAME, bearer, buildTestApp, createUserAndLogin, login, testConfig, type TestApp } from '../../test/app.js';
import { backendNames } from '../../test/backends.js';
import { eventually } from '../../test/sse.js';
import { REFRESH_COOKIE } from './routes.js';
import { keyIdOf, TOKEN_AUDIENCE, TOKEN_ISSUER } from './tokens.js';

/**
 * Finding 6 of issue 14, tried as an attacker against running apps: stolen
 * credentials die with a password change or reset (on every instance),
 * forged or stale JWTs are refused, a rotated JWT secret keeps people
 * signed in only for its grace period, and a personal API key can do only
 * what its scopes say.
 */

const NEXT_JWT_SECRET = 'rotated-jwt-secret-that-is-long-enough-9876543210';

function codeOf(res: LightMyRequestResponse): string | undefined {
  try {
    return res.json<{ error?: { code?: string } }>().error?.code;
  } catch {
    return undefined;
  }
}

function cookieOf(res: LightMyRequestResponse): string {
  const cookie = res.cookies.find((c) => c.name === REFRESH_COOKIE);
  if (!cookie) throw new Error(`no refresh cookie in ${res.statusCode} ${res.body}`);
  return cookie.value;
}

describe.each(await backendNames())('credentials after a compromise, on %s', (backendName) => {
  let t: TestApp;
  /** A second instance on the same database and shared state whose cache never expires on its own within a test. */
  let b: FastifyInstance;
  let adminToken: string;
  const extra: { app: FastifyInstance; state?: MemoryState }[] = [];
  let seq = 0;

  /** Another app instance over the same data: its own pools and Redis connections on postgres+redis, shared handles on PGlite. */
  async function anotherInstance(env: Record<string, string>, options: { ownChannel?: boolean } = {}): Promise<FastifyInstance> {
    const backend = t.backend;
    if (backend.name === 'pglite+memory') {
      // Embedded mode is one process: its notices are in-process. A missed notice is a state that does not share them.
      const state = options.ownChannel ? new MemoryState() : undefined;
      const app = await buildApp({ config: testConfig(env), database: backend.database, state: state ?? backend.state, logger: pino({ level: 'silent' }), logRequests: false });
      extra.push({ app, ...(state ? { state } : {}) });
      return app;
    }
    const config = testConfig({
      DATABASE_URL: backend.databaseUrl ?? '',
      REDIS_URL: backend.redisUrl ?? '',
      // A different prefix is a different channel: this instance hears no notice from the others.
      REDIS_KEY_PREFIX: options.ownChannel ? `${backend.redisPrefix ?? ''}deaf:` : (backend.redisPrefix ?? ''),
      ...env,
    });
    const app = await buildApp({ config, logger: pino({ level: 'silent' }), logRequests: false });
    extra.push({ app });
    return app;
  }

  /** Returns once `app` hears users-changed notices published by instance A (a Redis SUBSCRIBE completes asynchronously). */
  async function hearsA(app: FastifyInstance): Promise<void> {
    let heard = false;
    const stop = await app.deps.state.subscribe(Channels.usersChanged, (m) => {
      if (m.includes('warm-up')) heard = true;
    });
    await eventually(async () => {
      await t.app.deps.state.publish(Channels.usersChanged, JSON.stringify({ userId: 'warm-up' }));
      await new Promise((resolve) => setTimeout(resolve, 20));
      return heard;
    }, 'instance B to hear instance A');
    await stop();
  }

  async function newUser(role: 'user' | 'admin' = 'user') {
    const username = `victim${++seq}`;
    const password = `first-password-of-${username}`;
    const { token, userId } = await createUserAndLogin(t.app, adminToken, username, password, role);
    return { username, password, token, userId };
  }

  async function signIn(app: FastifyInstance, username: string, password: string): Promise<{ token: string; cookie: string }> {
    const res = await app.inject({ method: 'POST', url: '/api/auth/login', payload: { username, password } });
    expect(res.statusCode, res.body).toBe(200);
    return { token: res.json<{ token: string }>().token, cookie: cookieOf(res) };
  }

  const profile = (app: FastifyInstance, credential: string) => app.inject({ method: 'GET', url: '/api/auth/profile', headers: bearer(credential) });
  const refresh = (app: FastifyInstance, cookie: string) => app.inject({ method: 'POST', url: '/api/auth/refresh', cookies: { [REFRESH_COOKIE]: cookie } });

  async function createKey(credential: string, payload: Record<string, unknown>): Promise<LightMyRequestResponse> {
    return t.app.inject({ method: 'POST', url: '/api/auth/api-keys', headers: bearer(credential), payload });
  }

  async function newKey(credential: string, payload: Record<string, unknown> = {}): Promise<string> {
    const res = await createKey(credential, { name: `key-${++seq}`, ...payload });
    expect(res.statusCode, res.body).toBe(201);
    return res.json<{ data: { key: string } }>().data.key;
  }

  async function adminId(): Promise<string> {
    const row = await t.backend.database.db.selectFrom('users').select('id').where('username', '=', ADMIN_USERNAME).executeTakeFirstOrThrow();
    return row.id;
  }

  /** A token as someone holding `secret` could mint it. */
  async function forge(secret: string, claims: { aud?: string; iatSeconds?: number; expSeconds?: number; kid?: string } = {}): Promise<string> {
    const now = Date.now() / 1000;
    return new SignJWT({ username: ADMIN_USERNAME, role: 'admin', typ: 'access' })
      .setProtectedHeader({ alg: 'HS256', kid: claims.kid ?? keyIdOf(secret) })
      .setSubject(await adminId())
      .setIssuer(TOKEN_ISSUER)
      .setAudience(claims.aud ?? TOKEN_AUDIENCE)
      .setIssuedAt(claims.iatSeconds ?? now)
      .setExpirationTime(claims.expSeconds ?? Math.floor(now) + 600)
      .sign(new TextEncoder().encode(secret));
  }

  beforeAll(async () => {
    t = await buildTestApp(backendName);
    adminToken = await login(t.app);
    b = await anotherInstance({ AUTH_CACHE_TTL_MS: '600000' });
    await hearsA(b);
  });
  afterAll(async () => {
    for (const { app, state } of extra.splice(0)) {
      await app.close();
      await state?.close();
    }
    await t.close();
  });

  describe('a password change', () => {
    it("kills a stolen access token at once, on this instance and on a second one that had it cached; the victim's own session goes on", async () => {
      const victim = await newUser();
      // The attacker holds a session of their own (access token and refresh cookie) and uses it on both instances.
      const stolen = await signIn(t.app, victim.username, victim.password);
      expect((await profile(t.app, stolen.token)).statusCode).toBe(200);
      expect((await profile(b, stolen.token)).statusCode).toBe(200);
      // The victim, signed in elsewhere, changes the password.
      const own = await signIn(t.app, victim.username, victim.password);
      const changed = await t.app.inject({
        method: 'POST',
        url: '/api/auth/change-password',
        headers: bearer(own.token),
        cookies: { [REFRESH_COOKIE]: own.cookie },
        payload: { currentPassword: victim.password, newPassword: `second-password-of-${victim.username}` },
      });
      expect(changed.statusCode, changed.body).toBe(200);
      const next = changed.json<{ data: { accessToken: string; apiKeysRevoked: number } }>().data;

      const here = await profile(t.app, stolen.token);
      expect(here.statusCode).toBe(401);
      expect(codeOf(here)).toBe('TOKEN_REVOKED');
      // Instance B's cache never expires within this test: only the cross-instance notice can refuse it there.
      await eventually(async () => codeOf(await profile(b, stolen.token)) === 'TOKEN_REVOKED', 'instance B to refuse the stolen token');
      // The attacker's refresh cookie is dead too, on either instance.
      expect(codeOf(await refresh(b, stolen.cookie))).toBe('REFRESH_TOKEN_INVALID');
      // So is the victim's own old access token; the one the change handed back works everywhere.
      expect(codeOf(await profile(t.app, own.token))).toBe('TOKEN_REVOKED');
      expect((await profile(t.app, next.accessToken)).statusCode).toBe(200);
      expect((await profile(b, next.accessToken)).statusCode).toBe(200);
      // The victim's session (its refresh family) survives and mints tokens that work.
      const renewed = await refresh(t.app, own.cookie);
      expect(renewed.statusCode, renewed.body).toBe(200);
      expect((await profile(b, renewed.json<{ token: string }>().token)).statusCode).toBe(200);
      const row = await t.backend.database.db.selectFrom('users').select('tokens_valid_after').where('id', '=', victim.userId).executeTakeFirstOrThrow();
      expect(row.tokens_valid_after).not.toBeNull();
    });

    it('revokes the personal API keys by default, and keeps them when asked not to', async () => {
      const victim = await newUser();
      const key = await newKey(victim.token);
      const change = (token: string, from: string, to: string, revokeApiKeys?: boolean) =>
        t.app.inject({ method: 'POST', url: '/api/auth/change-password', headers: bearer(token), payload: { currentPassword: from, newPassword: to, ...(revokeApiKeys === undefined ? {} : { revokeApiKeys }) } });

      const kept = await change(victim.token, victim.password, 'kept-keys-password-1', false);
      expect(kept.statusCode, kept.body).toBe(200);
      expect(kept.json<{ data: { apiKeysRevoked: number } }>().data.apiKeysRevoked).toBe(0);
      expect((await profile(t.app, key)).statusCode).toBe(200);
      expect((await profile(b, key)).statusCode).toBe(200);

      const next = kept.json<{ data: { accessToken: string } }>().data.accessToken;
      const revoked = await change(next, 'kept-keys-password-1', 'revoked-keys-password-2');
      expect(revoked.statusCode, revoked.body).toBe(200);
      expect(revoked.json<{ data: { apiKeysRevoked: number } }>().data.apiKeysRevoked).toBe(1);
      for (const app of [t.app, b]) {
        const res = await profile(app, key);
        expect(res.statusCode).toBe(401);
        expect(codeOf(res)).toBe('API_KEY_INVALID');
      }
    });

    it('with a wrong current password changes nothing: the stolen token and the keys still work', async () => {
      const victim = await newUser();
      const key = await newKey(victim.token);
      const res = await t.app.inject({ method: 'POST', url: '/api/auth/change-password', headers: bearer(victim.token), payload: { currentPassword: 'not-the-password', newPassword: 'whatever-password-9' } });
      expect(res.statusCode).toBe(403);
      expect((await profile(t.app, victim.token)).statusCode).toBe(200);
      expect((await profile(t.app, key)).statusCode).toBe(200);
      const row = await t.backend.database.db.selectFrom('users').select('tokens_valid_after').where('id', '=', victim.userId).executeTakeFirstOrThrow();
      expect(row.tokens_valid_after).toBeNull();
    });
  });

  describe('an admin password reset', () => {
    it('kills the access tokens, sessions and API keys of the user, on every instance', async () => {
      const victim = await newUser();
      const session = await signIn(t.app, victim.username, victim.password);
      const key = await newKey(victim.token);
      expect((await profile(b, victim.token)).statusCode).toBe(200);
      const reset = await t.app.inject({ method: 'POST', url: `/api/admin/users/${victim.userId}/reset-password`, headers: bearer(adminToken), payload: { password: 'reset-by-admin-password-1' } });
      expect(reset.statusCode, reset.body).toBe(200);
      expect(codeOf(await profile(t.app, victim.token))).toBe('TOKEN_REVOKED');
      await eventually(async () => codeOf(await profile(b, victim.token)) === 'TOKEN_REVOKED', 'instance B to refuse the token');
      expect(codeOf(await profile(b, key))).toBe('API_KEY_INVALID');
      expect(codeOf(await refresh(b, session.cookie))).toBe('REFRESH_TOKEN_INVALID');
      // The new password signs in, and its tokens work on both instances.
      const fresh = await signIn(t.app, victim.username, 'reset-by-admin-password-1');
      expect((await profile(b, fresh.token)).statusCode).toBe(200);
    });

    it('keeps the API keys when the admin says so', async () => {
      const victim = await newUser();
      const key = await newKey(victim.token);
      const reset = await t.app.inject({ method: 'POST', url: `/api/admin/users/${victim.userId}/reset-password`, headers: bearer(adminToken), payload: { password: 'reset-keeps-keys-pw-1', revokeApiKeys: false } });
      expect(reset.statusCode, reset.body).toBe(200);
      expect(codeOf(await profile(t.app, victim.token))).toBe('TOKEN_REVOKED');
      expect((await profile(t.app, key)).statusCode).toBe(200);
    });
  });

  it('when an instance misses the notice (shared state down), its cache TTL bounds the damage: the next database read refuses the token', async () => {
    const deaf = await anotherInstance({ AUTH_CACHE_TTL_MS: '200' }, { ownChannel: true });
    const victim = await newUser();
    expect((await profile(deaf, victim.token)).statusCode).toBe(200);
    const reset = await t.app.inject({ method: 'POST', url: `/api/admin/users/${victim.userId}/reset-password`, headers: bearer(adminToken), payload: { password: 'missed-notice-password-1' } });
    expect(reset.statusCode, reset.body).toBe(200);
    await eventually(async () => codeOf(await profile(deaf, victim.token)) === 'TOKEN_REVOKED', 'the deaf instance to refuse the token once its cache expired');
  });

  describe('forged and stale JWTs', () => {
    it('refuses a genuine signature for another audience, without an audience, or naming an unknown key', async () => {
      const secret = t.config.jwtSecret ?? '';
      expect((await profile(t.app, await forge(secret))).statusCode).toBe(200);
      for (const token of [await forge(secret, { aud: 'another-service' }), await forge(secret, { aud: 'llmchat' }), await forge(secret, { kid: 'unknown-kid' })]) {
        const res = await profile(t.app, token);
        expect(res.statusCode).toBe(401);
        expect(codeOf(res)).toBe('TOKEN_INVALID');
      }
    });

    it('refuses a token older than ACCESS_TOKEN_MAX_AGE whatever its exp says', async () => {
      const now = Date.now() / 1000;
      const overAge = await forge(t.config.jwtSecret ?? '', { iatSeconds: now - t.config.accessTokenMaxAgeSeconds - 5, expSeconds: Math.floor(now) + 30 * 86_400 });
      const res = await profile(t.app, overAge);
      expect(res.statusCode).toBe(401);
      expect(codeOf(res)).toBe('TOKEN_EXPIRED');
    });

    it('after a JWT_SECRET rotation accepts tokens of the previous secret during the grace period only', async () => {
      const before = await signIn(t.app, ADMIN_USERNAME, t.config.adminPassword ?? '');
      const old = t.config.jwtSecret ?? '';
      const inGrace = await anotherInstance({ JWT_SECRET: NEXT_JWT_SECRET, JWT_SECRET_PREVIOUS: old, JWT_SECRET_PREVIOUS_UNTIL: new Date(Date.now() + 3_600_000).toISOString() });
      const afterGrace = await anotherInstance({ JWT_SECRET: NEXT_JWT_SECRET, JWT_SECRET_PREVIOUS: old, JWT_SECRET_PREVIOUS_UNTIL: '2020-01-01T00:00:00Z' });
      const rotated = await anotherInstance({ JWT_SECRET: NEXT_JWT_SECRET });
      // Nobody is signed out by the rotation...
      expect((await profile(inGrace, before.token)).statusCode).toBe(200);
      // ...and new sessions are signed with the new secret.
      const renewed = await refresh(inGrace, before.cookie);
      expect(renewed.statusCode, renewed.body).toBe(200);
      expect((await profile(rotated, renewed.json<{ token: string }>().token)).statusCode).toBe(200);
      // After the grace period, or without the previous secret, the old secret's tokens are refused, even freshly minted ones.
      for (const [app, token] of [[afterGrace, before.token], [afterGrace, await forge(old)], [rotated, before.token]] as const) {
        const res = await profile(app, token);
        expect(res.statusCode).toBe(401);
        expect(codeOf(res)).toBe('TOKEN_INVALID');
      }
    });
  });

  describe('API key scopes', () => {
    const adminRoutes: [InjectOptions['method'], string][] = [
      ['GET', '/api/admin/users'],
      ['GET', '/api/admin/audit'],
      ['POST', '/api/agents/reload'],
    ];

    async function keyCount(): Promise<number> {
      return Number((await t.backend.database.db.selectFrom('api_keys').select((eb) => eb.fn.countAll<number>().as('n')).executeTakeFirstOrThrow()).n);
    }

    it("an admin's chat key (the default) chats but cannot reach admin routes or make or revoke keys", async () => {
      const chatKey = await newKey(adminToken);
      const other = (await createKey(adminToken, { name: 'target' })).json<{ data: { apiKey: { id: string } } }>().data.apiKey.id;
      expect((await t.app.inject({ method: 'GET', url: '/api/chat-sessions', headers: bearer(chatKey) })).statusCode).toBe(200);
      expect((await t.app.inject({ method: 'GET', url: '/v1/models', headers: bearer(chatKey) })).statusCode).toBe(200);
      for (const [method, url] of adminRoutes) {
        const res = await t.app.inject({ method, url, headers: bearer(chatKey) });
        expect(res.statusCode, `${method} ${url}`).toBe(403);
        expect(codeOf(res)).toBe('INSUFFICIENT_SCOPE');
      }
      const before = await keyCount();
      const made = await createKey(chatKey, { name: 'minted-by-a-key' });
      expect(made.statusCode).toBe(403);
      expect(codeOf(made)).toBe('INSUFFICIENT_SCOPE');
      expect(await keyCount()).toBe(before);
      const revoke = await t.app.inject({ method: 'DELETE', url: `/api/auth/api-keys/${other}`, headers: bearer(chatKey) });
      expect(codeOf(revoke)).toBe('INSUFFICIENT_SCOPE');
      expect((await profile(t.app, adminToken)).statusCode).toBe(200);
    });

    it('the admin scope opens admin routes for an admin only; a key hands on only scopes it holds', async () => {
      const adminKey = await newKey(adminToken, { scopes: ['chat', 'admin'] });
      for (const [method, url] of adminRoutes) {
        expect((await t.app.inject({ method, url, headers: bearer(adminKey) })).statusCode, `${method} ${url}`).not.toBe(403);
      }
      // Not a keys key: it cannot make one, not even a lesser one.
      expect(codeOf(await createKey(adminKey, { name: 'x' }))).toBe('INSUFFICIENT_SCOPE');

      const keysKey = await newKey(adminToken, { scopes: ['keys'] });
      const before = await keyCount();
      const escalate = await createKey(keysKey, { name: 'escalated', scopes: ['admin'] });
      expect(escalate.statusCode).toBe(403);
      expect(codeOf(escalate)).toBe('INSUFFICIENT_SCOPE');
      expect(await keyCount()).toBe(before);
      const lesser = await createKey(keysKey, { name: 'lesser' });
      expect(lesser.statusCode, lesser.body).toBe(201);
      expect(lesser.json<{ data: { apiKey: { scopes: string[] } } }>().data.apiKey.scopes).toEqual(['chat']);

      // A user cannot give any key the admin scope.
      const user = await newUser();
      const denied = await createKey(user.token, { name: 'wannabe', scopes: ['chat', 'admin'] });
      expect(denied.statusCode).toBe(403);
      expect(codeOf(denied)).toBe('FORBIDDEN');
      const bogus = await createKey(user.token, { name: 'bogus', scopes: ['root'] });
      expect(bogus.statusCode).toBe(400);
      expect(codeOf(bogus)).toBe('VALIDATION_FAILED');
    });

    it("shows an agent's configuration (endpoint) to an admin's key only with the admin scope", async () => {
      const agent = await t.app.inject({
        method: 'POST',
        url: '/api/agents',
        headers: bearer(adminToken),
        payload: { id: 'scoped-view', name: 'Scoped', provider: 'openai', endpoint: 'https://llm.example.com/v1/chat/completions', model: 'm' },
      });
      expect(agent.statusCode, agent.body).toBe(201);
      const view = async (credential: string) => (await t.app.inject({ method: 'GET', url: '/api/agents/scoped-view', headers: bearer(credential) })).json<{ data: Record<string, unknown> }>().data;
      expect(await view(adminToken)).toHaveProperty('endpoint');
      expect(await view(await newKey(adminToken, { scopes: ['chat', 'admin'] }))).toHaveProperty('endpoint');
      const chatView = await view(await newKey(adminToken));
      expect(chatView).toMatchObject({ id: 'scoped-view' });
      expect(chatView).not.toHaveProperty('endpoint');
    });

    it('an admin scope does not outlive a demotion', async () => {
      const admin2 = await newUser('admin');
      const key = await newKey(admin2.token, { scopes: ['chat', 'admin'] });
      expect((await t.app.inject({ method: 'GET', url: '/api/admin/users', headers: bearer(key) })).statusCode).toBe(200);
      const demoted = await t.app.inject({ method: 'PATCH', url: `/api/admin/users/${admin2.userId}/role`, headers: bearer(adminToken), payload: { role: 'user' } });
      expect(demoted.statusCode, demoted.body).toBe(200);
      expect(codeOf(await t.app.inject({ method: 'GET', url: '/api/admin/users', headers: bearer(key) }))).toBe('FORBIDDEN');
    });
  });
});
