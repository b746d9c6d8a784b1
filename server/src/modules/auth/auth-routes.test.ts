import { SignJWT } from 'jose';
import type { InjectOptions, LightMyRequestResponse } from 'fastify';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ADMIN_PASSWORD, ADMIN_USERNAME, bearer, buildTestApp, createUserAndLogin, login, type TestApp } from '../../test/app.js';
import { backendNames } from '../../test/backends.js';
import { REFRESH_COOKIE } from './routes.js';
import { keyIdOf, sha256, TOKEN_AUDIENCE } from './tokens.js';

/** Every password a test uses; no response may ever contain one. */
const PASSWORDS = new Set<string>([ADMIN_PASSWORD]);

function assertNoSecrets(res: LightMyRequestResponse): void {
  for (const p of PASSWORDS) expect(res.body, `response leaks password ${p}`).not.toContain(p);
  expect(res.body).not.toMatch(/\$argon2|"(password|key|token)_?hash"\s*:/i);
}

async function call(t: TestApp, options: InjectOptions): Promise<LightMyRequestResponse> {
  const res = await t.app.inject(options);
  assertNoSecrets(res);
  return res;
}

function refreshCookieOf(res: LightMyRequestResponse): string {
  const cookie = res.cookies.find((c) => c.name === REFRESH_COOKIE);
  if (!cookie) throw new Error(`no ${REFRESH_COOKIE} cookie in response ${res.statusCode} ${res.body}`);
  return cookie.value;
}

function errorCode(res: LightMyRequestResponse): string {
  return res.json<{ error: { code: string } }>().error.code;
}

async function counts(t: TestApp) {
  const db = t.backend.database.db;
  const n = async (table: 'users' | 'audit_log' | 'refresh_tokens' | 'api_keys') =>
    Number((await db.selectFrom(table).select((eb) => eb.fn.countAll<number>().as('n')).executeTakeFirstOrThrow()).n);
  return { users: await n('users'), audit: await n('audit_log'), refreshTokens: await n('refresh_tokens'), apiKeys: await n('api_keys') };
}

async function auditActions(t: TestApp, action: string) {
  return t.backend.database.db.selectFrom('audit_log').selectAll().where('action', '=', action).orderBy('id', 'asc').execute();
}

async function loginRes(t: TestApp, username: string, password: string, remoteAddress?: string) {
  return call(t, { method: 'POST', url: '/api/auth/login', payload: { username, password }, ...(remoteAddress ? { remoteAddress } : {}) });
}

let userSeq = 0;
async function newUser(t: TestApp, adminToken: string, prefix = 'user') {
  const username = `${prefix}${++userSeq}`;
  const password = `pw-${username}-secret`;
  PASSWORDS.add(password);
  const { token, userId } = await createUserAndLogin(t.app, adminToken, username, password);
  return { username, password, token, userId };
}

describe.each(await backendNames())('auth routes on %s', (backendName) => {
  let t: TestApp;
  let adminToken: string;

  beforeAll(async () => {
    t = await buildTestApp(backendName);
    adminToken = await login(t.app);
  });
  afterAll(async () => {
    await t.close();
  });

  describe('POST /api/auth/login', () => {
    it('returns the access token, the user and an httpOnly SameSite=Strict refresh cookie', async () => {
      const res = await loginRes(t, ADMIN_USERNAME, ADMIN_PASSWORD);
      expect(res.statusCode).toBe(200);
      const body = res.json<{ token: string; accessToken: string; expiresIn: number; user: Record<string, unknown> }>();
      expect(body.token).toBe(body.accessToken);
      expect(body.expiresIn).toBe(t.config.accessTokenTtlSeconds);
      expect(Object.keys(body.user).sort()).toEqual(['displayName', 'id', 'role', 'username']);
      expect(body.user).toMatchObject({ username: ADMIN_USERNAME, displayName: null, role: 'admin' });
      expect(typeof body.user.id).toBe('string');
      const cookie = res.cookies.find((c) => c.name === REFRESH_COOKIE);
      expect(cookie).toMatchObject({ httpOnly: true, sameSite: 'Strict', path: '/api/auth' });
      expect(cookie?.secure).toBeFalsy(); // COOKIE_SECURE is off in tests
      expect(cookie?.value).toMatch(/^[A-Za-z0-9_-]{43}$/);
      expect(res.headers['cache-control']).toBe('no-store');
    });

    it('marks the cookie Secure when COOKIE_SECURE is on', async () => {
      const secure = await buildTestApp(backendName, { COOKIE_SECURE: 'true' });
      try {
        const res = await secure.app.inject({ method: 'POST', url: '/api/auth/login', payload: { username: ADMIN_USERNAME, password: ADMIN_PASSWORD } });
        expect(res.cookies.find((c) => c.name === REFRESH_COOKIE)?.secure).toBe(true);
      } finally {
        await secure.close();
      }
    });

    it('stores only the hash of the refresh token', async () => {
      const res = await loginRes(t, ADMIN_USERNAME, ADMIN_PASSWORD);
      const token = refreshCookieOf(res);
      const rows = await t.backend.database.db.selectFrom('refresh_tokens').select('token_hash').execute();
      expect(rows.some((r) => r.token_hash === token)).toBe(false);
      expect(rows.every((r) => /^[0-9a-f]{64}$/.test(r.token_hash))).toBe(true);
    });

    it('treats the username case-insensitively', async () => {
      const res = await loginRes(t, ADMIN_USERNAME.toUpperCase(), ADMIN_PASSWORD);
      expect(res.statusCode).toBe(200);
      expect(res.json<{ user: { username: string } }>().user.username).toBe(ADMIN_USERNAME);
    });

    it('gives the same 401 for an unknown user and a wrong password, and audits both', async () => {
      const before = (await auditActions(t, 'auth.login')).length;
      const unknown = await loginRes(t, 'nobody-here', 'whatever-password');
      const wrong = await loginRes(t, ADMIN_USERNAME, 'wrong-password');
      expect(unknown.statusCode).toBe(401);
      expect(wrong.statusCode).toBe(401);
      expect(errorCode(unknown)).toBe('INVALID_CREDENTIALS');
      expect(errorCode(wrong)).toBe('INVALID_CREDENTIALS');
      expect(unknown.json<{ error: { message: string } }>().error.message).toBe(wrong.json<{ error: { message: string } }>().error.message);
      const rows = (await auditActions(t, 'auth.login')).slice(before);
      expect(rows.map((r) => r.success)).toEqual([false, false]);
      expect(rows.map((r) => r.actor_username)).toEqual(['nobody-here', ADMIN_USERNAME]);
      // The attempted password is never in the audit detail.
      expect(JSON.stringify(rows)).not.toContain('wrong-password');
      // Reset the admin's failure count so later tests are not near a lockout.
      expect((await loginRes(t, ADMIN_USERNAME, ADMIN_PASSWORD)).statusCode).toBe(200);
    });

    const badBodies: [string, InjectOptions][] = [
      ['missing username', { payload: { password: 'x' } }],
      ['missing password', { payload: { username: 'admin' } }],
      ['numeric username', { payload: { username: 12345, password: ADMIN_PASSWORD } }],
      ['array username', { payload: { username: ['admin'], password: ADMIN_PASSWORD } }],
      ['numeric password', { payload: { username: 'admin', password: 12345678 } }],
      ['null password', { payload: { username: 'admin', password: null } }],
      ['extra property', { payload: { username: 'admin', password: ADMIN_PASSWORD, role: 'admin' } }],
      ['empty username', { payload: { username: '', password: ADMIN_PASSWORD } }],
      ['oversized username', { payload: { username: 'a'.repeat(129), password: ADMIN_PASSWORD } }],
      ['oversized password', { payload: { username: 'admin', password: 'p'.repeat(1025) } }],
      ['a JSON array', { payload: '[]', headers: { 'content-type': 'application/json' } }],
      ['malformed JSON', { payload: '{bad', headers: { 'content-type': 'application/json' } }],
      ['empty JSON body', { payload: '', headers: { 'content-type': 'application/json' } }],
      ['no body', {}],
    ];
    it.each(badBodies)('rejects %s with 400 and writes nothing', async (_label, options) => {
      const before = await counts(t);
      const res = await call(t, { method: 'POST', url: '/api/auth/login', ...options });
      expect(res.statusCode).toBe(400);
      expect(['VALIDATION_FAILED', 'INVALID_JSON']).toContain(errorCode(res));
      expect(res.json<{ error: { requestId: string } }>().error.requestId).toEqual(expect.any(String));
      expect(await counts(t)).toEqual(before);
    });

    it('rejects a non-JSON content type with 415', async () => {
      const before = await counts(t);
      const res = await call(t, { method: 'POST', url: '/api/auth/login', payload: 'username=admin', headers: { 'content-type': 'application/x-www-form-urlencoded' } });
      expect(res.statusCode).toBe(415);
      expect(await counts(t)).toEqual(before);
    });
  });

  describe('access tokens', () => {
    async function adminId(): Promise<string> {
      const row = await t.backend.database.db.selectFrom('users').select('id').where('username', '=', ADMIN_USERNAME).executeTakeFirstOrThrow();
      return row.id;
    }

    async function sign(claims: Record<string, unknown>, options: { exp: number; secret?: string; iss?: string; sub?: string }) {
      return new SignJWT(claims)
        .setProtectedHeader({ alg: 'HS256', kid: keyIdOf(options.secret ?? t.config.jwtSecret ?? '') })
        .setSubject(options.sub ?? (await adminId()))
        .setIssuer(options.iss ?? 'llmchat')
        .setAudience(TOKEN_AUDIENCE)
        .setIssuedAt(options.exp - 60)
        .setExpirationTime(options.exp)
        .sign(new TextEncoder().encode(options.secret ?? t.config.jwtSecret));
    }

    it('GET /profile without a token is 401 UNAUTHENTICATED', async () => {
      const res = await call(t, { method: 'GET', url: '/api/auth/profile' });
      expect(res.statusCode).toBe(401);
      expect(errorCode(res)).toBe('UNAUTHENTICATED');
    });

    it('an expired token is 401 TOKEN_EXPIRED', async () => {
      const token = await sign({ username: ADMIN_USERNAME, role: 'admin', typ: 'access' }, { exp: Math.floor(Date.now() / 1000) - 3600 });
      const res = await call(t, { method: 'GET', url: '/api/auth/profile', headers: bearer(token) });
      expect(res.statusCode).toBe(401);
      expect(errorCode(res)).toBe('TOKEN_EXPIRED');
    });

    it('a tampered token is 401 TOKEN_INVALID', async () => {
      const { token } = await newUser(t, adminToken);
      const [header, payload, signature] = token.split('.') as [string, string, string];
      const claims = JSON.parse(Buffer.from(payload, 'base64url').toString()) as Record<string, unknown>;
      const forged = Buffer.from(JSON.stringify({ ...claims, role: 'admin' })).toString('base64url');
      const res = await call(t, { method: 'GET', url: '/api/admin/users', headers: bearer(`${header}.${forged}.${signature}`) });
      expect(res.statusCode).toBe(401);
      expect(errorCode(res)).toBe('TOKEN_INVALID');
    });

    const invalid: [string, () => Promise<string>][] = [
      ['signed with another secret', () => sign({ username: ADMIN_USERNAME, role: 'admin', typ: 'access' }, { exp: Math.floor(Date.now() / 1000) + 600, secret: 'another-secret-that-is-long-enough-0123456789' })],
      ['from another issuer', () => sign({ username: ADMIN_USERNAME, role: 'admin', typ: 'access' }, { exp: Math.floor(Date.now() / 1000) + 600, iss: 'someone-else' })],
      ['of another type', () => sign({ username: ADMIN_USERNAME, role: 'admin', typ: 'refresh' }, { exp: Math.floor(Date.now() / 1000) + 600 })],
      ['with a non-UUID subject', () => sign({ username: ADMIN_USERNAME, role: 'admin', typ: 'access' }, { exp: Math.floor(Date.now() / 1000) + 600, sub: 'admin' })],
      ['unsigned (alg none)', async () => {
        const enc = (o: unknown) => Buffer.from(JSON.stringify(o)).toString('base64url');
        return `${enc({ alg: 'none' })}.${enc({ sub: await adminId(), username: ADMIN_USERNAME, role: 'admin', typ: 'access', iss: 'llmchat', exp: Math.floor(Date.now() / 1000) + 600 })}.`;
      }],
      ['garbage', () => Promise.resolve('not-a-jwt')],
    ];
    it.each(invalid)('a token %s is 401 TOKEN_INVALID', async (_label, make) => {
      const res = await call(t, { method: 'GET', url: '/api/auth/profile', headers: bearer(await make()) });
      expect(res.statusCode).toBe(401);
      expect(errorCode(res)).toBe('TOKEN_INVALID');
    });

    it('a token of a deleted user is rejected', async () => {
      const { token, userId } = await newUser(t, adminToken);
      await t.backend.database.db.deleteFrom('users').where('id', '=', userId).execute();
      const res = await call(t, { method: 'GET', url: '/api/auth/profile', headers: bearer(token) });
      expect(res.statusCode).toBe(401);
      expect(errorCode(res)).toBe('TOKEN_INVALID');
    });

    it("a disabled user's existing access token is rejected at once", async () => {
      const { token, userId, username, password } = await newUser(t, adminToken);
      expect((await call(t, { method: 'GET', url: '/api/auth/profile', headers: bearer(token) })).statusCode).toBe(200);
      const disabled = await call(t, { method: 'POST', url: `/api/admin/users/${userId}/disable`, headers: bearer(adminToken) });
      expect(disabled.statusCode).toBe(200);
      const res = await call(t, { method: 'GET', url: '/api/auth/profile', headers: bearer(token) });
      expect(res.statusCode).toBe(403);
      expect(errorCode(res)).toBe('ACCOUNT_DISABLED');
      // The right password says "disabled"; a wrong one still says only "wrong".
      const right = await loginRes(t, username, password);
      expect(right.statusCode).toBe(403);
      expect(errorCode(right)).toBe('ACCOUNT_DISABLED');
      const wrong = await loginRes(t, username, 'not-the-password');
      expect(errorCode(wrong)).toBe('INVALID_CREDENTIALS');
      await call(t, { method: 'POST', url: `/api/admin/users/${userId}/enable`, headers: bearer(adminToken) });
      expect((await call(t, { method: 'GET', url: '/api/auth/profile', headers: bearer(token) })).statusCode).toBe(200);
      expect((await loginRes(t, username, password)).statusCode).toBe(200);
    });

    it('role comes from the account: a demoted admin loses admin routes with the same token', async () => {
      const { token, userId } = await newUser(t, adminToken, 'demoted');
      await call(t, { method: 'PATCH', url: `/api/admin/users/${userId}/role`, headers: bearer(adminToken), payload: { role: 'admin' } });
      expect((await call(t, { method: 'GET', url: '/api/admin/users', headers: bearer(token) })).statusCode).toBe(200);
      await call(t, { method: 'PATCH', url: `/api/admin/users/${userId}/role`, headers: bearer(adminToken), payload: { role: 'user' } });
      const res = await call(t, { method: 'GET', url: '/api/admin/users', headers: bearer(token) });
      expect(res.statusCode).toBe(403);
      expect(errorCode(res)).toBe('FORBIDDEN');
    });
  });

  describe('GET /api/auth/profile', () => {
    it("returns the caller's account without secrets", async () => {
      const { token, username, userId } = await newUser(t, adminToken);
      const res = await call(t, { method: 'GET', url: '/api/auth/profile', headers: bearer(token) });
      expect(res.statusCode).toBe(200);
      const body = res.json<{ success: boolean; data: Record<string, unknown>; timestamp: string }>();
      expect(body.success).toBe(true);
      expect(body.data).toMatchObject({ id: userId, username, role: 'user', status: 'active' });
      expect(Object.keys(body.data).sort()).toEqual(['createdAt', 'dailyTokenQuota', 'displayName', 'email', 'id', 'lastLoginAt', 'lockedUntil', 'monthlyTokenQuota', 'role', 'status', 'tokenUsage', 'updatedAt', 'username']);
    });
  });

  describe('POST /api/auth/refresh', () => {
    it('rotates the token in one family; reusing a rotated one revokes the whole family', async () => {
      const { username, password } = await newUser(t, adminToken);
      const first = refreshCookieOf(await loginRes(t, username, password));

      const r1 = await call(t, { method: 'POST', url: '/api/auth/refresh', cookies: { [REFRESH_COOKIE]: first } });
      expect(r1.statusCode).toBe(200);
      const body = r1.json<{ token: string; accessToken: string; expiresIn: number; user: { username: string } }>();
      expect(body.user.username).toBe(username);
      expect((await call(t, { method: 'GET', url: '/api/auth/profile', headers: bearer(body.token) })).statusCode).toBe(200);
      const second = refreshCookieOf(r1);
      expect(second).not.toBe(first);

      const r2 = await call(t, { method: 'POST', url: '/api/auth/refresh', cookies: { [REFRESH_COOKIE]: second } });
      expect(r2.statusCode).toBe(200);
      const third = refreshCookieOf(r2);

      const db = t.backend.database.db;
      const { family_id: family } = await db.selectFrom('refresh_tokens').select('family_id').where('token_hash', '=', sha256(first)).executeTakeFirstOrThrow();
      const rows = await db.selectFrom('refresh_tokens').select(['token_hash', 'rotated_at']).where('family_id', '=', family).orderBy('created_at').execute();
      expect(rows.map((r) => r.token_hash).sort()).toEqual([first, second, third].map(sha256).sort());
      expect(rows.filter((r) => r.rotated_at === null).map((r) => r.token_hash)).toEqual([sha256(third)]);

      const reuse = await call(t, { method: 'POST', url: '/api/auth/refresh', cookies: { [REFRESH_COOKIE]: first } });
      expect(reuse.statusCode).toBe(401);
      expect(errorCode(reuse)).toBe('REFRESH_TOKEN_REUSED');
      const cleared = reuse.cookies.find((c) => c.name === REFRESH_COOKIE);
      expect(cleared?.value).toBe('');

      // The newest token of the family stops working too.
      const newest = await call(t, { method: 'POST', url: '/api/auth/refresh', cookies: { [REFRESH_COOKIE]: third } });
      expect(newest.statusCode).toBe(401);
      expect(errorCode(newest)).toBe('REFRESH_TOKEN_INVALID');
      expect((await auditActions(t, 'auth.refresh_reuse')).length).toBeGreaterThanOrEqual(1);
    });

    it('a second login is its own family and survives reuse in the first', async () => {
      const { username, password } = await newUser(t, adminToken);
      const a = refreshCookieOf(await loginRes(t, username, password));
      const b = refreshCookieOf(await loginRes(t, username, password));
      await call(t, { method: 'POST', url: '/api/auth/refresh', cookies: { [REFRESH_COOKIE]: a } });
      await call(t, { method: 'POST', url: '/api/auth/refresh', cookies: { [REFRESH_COOKIE]: a } });
      expect((await call(t, { method: 'POST', url: '/api/auth/refresh', cookies: { [REFRESH_COOKIE]: b } })).statusCode).toBe(200);
    });

    it('without a cookie, or with an unknown one, is 401 REFRESH_TOKEN_INVALID', async () => {
      const before = await counts(t);
      for (const cookies of [undefined, { [REFRESH_COOKIE]: 'unknown-token' }, { [REFRESH_COOKIE]: 'x'.repeat(5000) }]) {
        const res = await call(t, { method: 'POST', url: '/api/auth/refresh', ...(cookies ? { cookies } : {}) });
        expect(res.statusCode).toBe(401);
        expect(errorCode(res)).toBe('REFRESH_TOKEN_INVALID');
      }
      expect(await counts(t)).toEqual(before);
    });

    it('an expired refresh token is 401 REFRESH_TOKEN_INVALID', async () => {
      const { username, password, userId } = await newUser(t, adminToken);
      const cookie = refreshCookieOf(await loginRes(t, username, password));
      await t.backend.database.db.updateTable('refresh_tokens').set({ expires_at: new Date(Date.now() - 1000) }).where('user_id', '=', userId).execute();
      const res = await call(t, { method: 'POST', url: '/api/auth/refresh', cookies: { [REFRESH_COOKIE]: cookie } });
      expect(res.statusCode).toBe(401);
      expect(errorCode(res)).toBe('REFRESH_TOKEN_INVALID');
    });

    it("a disabled user's refresh token no longer works", async () => {
      const { username, password, userId } = await newUser(t, adminToken);
      const cookie = refreshCookieOf(await loginRes(t, username, password));
      await call(t, { method: 'POST', url: `/api/admin/users/${userId}/disable`, headers: bearer(adminToken) });
      const res = await call(t, { method: 'POST', url: '/api/auth/refresh', cookies: { [REFRESH_COOKIE]: cookie } });
      expect(res.statusCode).toBe(401);
    });
  });

  describe('POST /api/auth/logout', () => {
    it('revokes the session family, clears the cookie and is audited', async () => {
      const { username, password } = await newUser(t, adminToken);
      const cookie = refreshCookieOf(await loginRes(t, username, password));
      const rotated = refreshCookieOf(await call(t, { method: 'POST', url: '/api/auth/refresh', cookies: { [REFRESH_COOKIE]: cookie } }));
      const before = (await auditActions(t, 'auth.logout')).length;
      const res = await call(t, { method: 'POST', url: '/api/auth/logout', cookies: { [REFRESH_COOKIE]: rotated } });
      expect(res.statusCode).toBe(200);
      expect(res.json<{ success: boolean; data: unknown }>()).toMatchObject({ success: true, data: { done: true } });
      const cleared = res.cookies.find((c) => c.name === REFRESH_COOKIE);
      expect(cleared?.value).toBe('');
      expect(cleared?.path).toBe('/api/auth');
      const after = await call(t, { method: 'POST', url: '/api/auth/refresh', cookies: { [REFRESH_COOKIE]: rotated } });
      expect(after.statusCode).toBe(401);
      expect(errorCode(after)).toBe('REFRESH_TOKEN_INVALID');
      const audits = (await auditActions(t, 'auth.logout')).slice(before);
      expect(audits).toHaveLength(1);
      expect(audits[0]?.actor_id).toEqual(expect.any(String));
    });

    it('without a cookie still succeeds and writes nothing', async () => {
      const before = await counts(t);
      const res = await call(t, { method: 'POST', url: '/api/auth/logout' });
      expect(res.statusCode).toBe(200);
      expect(await counts(t)).toEqual(before);
    });
  });

  describe('POST /api/auth/change-password', () => {
    it('needs the current password, applies the policy and ends the other sessions', async () => {
      const { username, password, token } = await newUser(t, adminToken);
      const here = refreshCookieOf(await loginRes(t, username, password));
      const elsewhere = refreshCookieOf(await loginRes(t, username, password));
      const change = (payload: unknown) =>
        call(t, { method: 'POST', url: '/api/auth/change-password', headers: bearer(token), cookies: { [REFRESH_COOKIE]: here }, payload: payload as Record<string, unknown> });

      const before = await counts(t);
      const wrong = await change({ oldPassword: 'not-my-password', newPassword: 'brand-new-password-1' });
      expect(wrong.statusCode).toBe(403);
      expect(errorCode(wrong)).toBe('CURRENT_PASSWORD_INCORRECT');

      const short = await change({ oldPassword: password, newPassword: 'short' });
      expect(short.statusCode).toBe(422);
      expect(errorCode(short)).toBe('PASSWORD_TOO_WEAK');
      const tooLong = await change({ oldPassword: password, newPassword: 'x'.repeat(257) });
      expect(errorCode(tooLong)).toBe('PASSWORD_TOO_WEAK');
      const sameAsName = await change({ oldPassword: password, newPassword: username.toUpperCase() });
      expect(errorCode(sameAsName)).toBe('PASSWORD_TOO_WEAK');
      const unchanged = await change({ oldPassword: password, newPassword: password });
      expect(errorCode(unchanged)).toBe('PASSWORD_TOO_WEAK');

      for (const bad of [{ newPassword: 'brand-new-password-1' }, { oldPassword: password }, { oldPassword: password, newPassword: 12345678 }, { oldPassword: password, currentPassword: 'different', newPassword: 'brand-new-password-1' }, { oldPassword: password, newPassword: 'brand-new-password-1', extra: 1 }]) {
        const res = await change(bad);
        expect(res.statusCode, JSON.stringify(bad)).toBe(400);
      }
      // Only the wrong-password attempt was recorded (audit); nothing else was written.
      const mid = await counts(t);
      expect({ ...mid, audit: before.audit }).toEqual(before);
      expect(mid.audit).toBe(before.audit + 1);
      expect((await loginRes(t, username, password)).statusCode).toBe(200);

      const newPassword = `${password}-changed`;
      PASSWORDS.add(newPassword);
      const ok = await change({ oldPassword: password, newPassword });
      expect(ok.statusCode).toBe(200);
      expect(errorCode(await loginRes(t, username, password))).toBe('INVALID_CREDENTIALS');
      expect((await loginRes(t, username, newPassword)).statusCode).toBe(200);
      // This session keeps working; the other one is signed out.
      expect((await call(t, { method: 'POST', url: '/api/auth/refresh', cookies: { [REFRESH_COOKIE]: here } })).statusCode).toBe(200);
      expect((await call(t, { method: 'POST', url: '/api/auth/refresh', cookies: { [REFRESH_COOKIE]: elsewhere } })).statusCode).toBe(401);
      const audits = await auditActions(t, 'auth.password_change');
      expect(audits.some((a) => a.success && a.actor_username === username)).toBe(true);
    });

    it('accepts currentPassword as the name of the current password', async () => {
      const { username, password, token } = await newUser(t, adminToken);
      const newPassword = `${password}-v2`;
      PASSWORDS.add(newPassword);
      const res = await call(t, { method: 'POST', url: '/api/auth/change-password', headers: bearer(token), payload: { currentPassword: password, newPassword } });
      expect(res.statusCode).toBe(200);
      expect((await loginRes(t, username, newPassword)).statusCode).toBe(200);
    });

    it('needs a signed-in caller', async () => {
      const res = await call(t, { method: 'POST', url: '/api/auth/change-password', payload: { oldPassword: 'a', newPassword: 'b' } });
      expect(res.statusCode).toBe(401);
    });
  });

  describe('POST /api/auth/register while registration is closed', () => {
    it('is 403 REGISTRATION_CLOSED and creates nobody', async () => {
      const before = await counts(t);
      const res = await call(t, { method: 'POST', url: '/api/auth/register', payload: { username: 'newcomer', password: 'newcomer-password' } });
      expect(res.statusCode).toBe(403);
      expect(errorCode(res)).toBe('REGISTRATION_CLOSED');
      expect(await counts(t)).toEqual(before);
    });

    it('GET /api/auth/options tells the sign-in page, without a token, that registration is closed', async () => {
      const res = await call(t, { method: 'GET', url: '/api/auth/options' });
      expect(res.statusCode).toBe(200);
      expect(res.json<{ data: unknown }>().data).toEqual({ registrationOpen: false });
    });
  });
});

describe.each(await backendNames())('open registration and login rate limits on %s', (backendName) => {
  let t: TestApp;
  const LIMIT = 3;

  beforeAll(async () => {
    t = await buildTestApp(backendName, { OPEN_REGISTRATION: 'true', LOGIN_RATE_LIMIT_PER_MINUTE: String(LIMIT) });
  });
  afterAll(async () => {
    await t.close();
  });

  const register = (payload: unknown, remoteAddress: string) =>
    call(t, { method: 'POST', url: '/api/auth/register', payload: payload as Record<string, unknown>, remoteAddress });

  it('GET /api/auth/options says registration is open', async () => {
    const res = await call(t, { method: 'GET', url: '/api/auth/options' });
    expect(res.statusCode).toBe(200);
    expect(res.json<{ data: unknown }>().data).toEqual({ registrationOpen: true });
  });

  it('registers a user, signs them in and audits it', async () => {
    PASSWORDS.add('newcomer-password');
    const res = await register({ username: 'Newcomer', password: 'newcomer-password', displayName: 'New Comer', email: 'new@example.com' }, '10.9.0.1');
    expect(res.statusCode).toBe(201);
    const body = res.json<{ token: string; user: { username: string; role: string; displayName: string } }>();
    expect(body.user).toMatchObject({ username: 'Newcomer', role: 'user', displayName: 'New Comer' });
    refreshCookieOf(res);
    const profile = await call(t, { method: 'GET', url: '/api/auth/profile', headers: bearer(body.token) });
    expect(profile.json<{ data: { email: string } }>().data.email).toBe('new@example.com');
    expect((await auditActions(t, 'auth.register')).map((a) => a.actor_username)).toContain('Newcomer');
  });

  const badRegistrations: [string, unknown, number][] = [
    ['a taken username (any case)', { username: 'NEWCOMER', password: 'another-password-1' }, 409],
    ['a short password', { username: 'shorty', password: 'short' }, 422],
    ['the username as password', { username: 'samesame', password: 'SameSame' }, 422],
    ['a username with spaces', { username: 'two words', password: 'good-password-1' }, 400],
    ['a too-short username', { username: 'ab', password: 'good-password-1' }, 400],
    ['a too-long username', { username: 'a'.repeat(65), password: 'good-password-1' }, 400],
    ['a role', { username: 'sneaky', password: 'good-password-1', role: 'admin' }, 400],
    ['a bad email', { username: 'mailer', password: 'good-password-1', email: 'not-an-email' }, 400],
    ['an oversized display name', { username: 'longname', password: 'good-password-1', displayName: 'x'.repeat(101) }, 400],
    ['a numeric username', { username: 123456, password: 'good-password-1' }, 400],
  ];
  let ipSeq = 0;
  it.each(badRegistrations)('rejects %s and creates nobody', async (_label, payload, status) => {
    const db = t.backend.database.db;
    const before = Number((await db.selectFrom('users').select((eb) => eb.fn.countAll<number>().as('n')).executeTakeFirstOrThrow()).n);
    const res = await register(payload, `10.9.1.${++ipSeq}`);
    expect(res.statusCode).toBe(status);
    const after = Number((await db.selectFrom('users').select((eb) => eb.fn.countAll<number>().as('n')).executeTakeFirstOrThrow()).n);
    expect(after).toBe(before);
  });

  it('limits login attempts per client address', async () => {
    for (let i = 1; i <= LIMIT; i++) {
      expect((await loginRes(t, `someone${i}`, 'wrong-password', '10.1.0.1')).statusCode).toBe(401);
    }
    const limited = await loginRes(t, ADMIN_USERNAME, ADMIN_PASSWORD, '10.1.0.1');
    expect(limited.statusCode).toBe(429);
    expect(errorCode(limited)).toBe('RATE_LIMITED');
    expect(Number(limited.headers['retry-after'])).toBeGreaterThan(0);
    // Another address is not affected.
    expect((await loginRes(t, ADMIN_USERNAME, ADMIN_PASSWORD, '10.1.0.2')).statusCode).toBe(200);
    expect((await auditActions(t, 'auth.login_rate_limited')).length).toBeGreaterThanOrEqual(1);
  });

  it('does not limit login attempts per username: another address still signs in', async () => {
    // A per-name limit would let anyone keep another person out; names are guarded by the sign-in throttle instead.
    for (let i = 1; i <= LIMIT + 2; i++) {
      expect((await loginRes(t, ADMIN_USERNAME, 'wrong-password', `10.2.0.${i}`)).statusCode).toBe(401);
    }
    expect((await loginRes(t, ADMIN_USERNAME, ADMIN_PASSWORD, '10.2.0.99')).statusCode).toBe(200);
  });

  it('limits registrations per client address', async () => {
    for (let i = 1; i <= LIMIT; i++) {
      PASSWORDS.add(`reg-password-${i}`);
      expect((await register({ username: `reguser${i}`, password: `reg-password-${i}` }, '10.3.0.1')).statusCode).toBe(201);
    }
    const limited = await register({ username: 'reguser-extra', password: 'reg-password-x' }, '10.3.0.1');
    expect(limited.statusCode).toBe(429);
    expect((await t.backend.database.db.selectFrom('users').select('id').where('username', '=', 'reguser-extra').execute()).length).toBe(0);
  });
});
