import type { InjectOptions, LightMyRequestResponse } from 'fastify';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ADMIN_PASSWORD, ADMIN_USERNAME, bearer, buildTestApp, createUserAndLogin, login, type TestApp } from '../../test/app.js';
import { backendNames } from '../../test/backends.js';

interface UserView {
  id: string;
  username: string;
  displayName: string | null;
  email: string | null;
  role: 'user' | 'admin';
  status: 'active' | 'disabled';
  dailyTokenQuota: number | null;
  lockedUntil: string | null;
}

const PASSWORDS = new Set<string>([ADMIN_PASSWORD, 'user-password-123']);

function errorCode(res: LightMyRequestResponse): string {
  return res.json<{ error: { code: string } }>().error.code;
}

describe.each(await backendNames())('user administration on %s', (backendName) => {
  let t: TestApp;
  let adminToken: string;
  let adminId: string;

  async function call(options: InjectOptions): Promise<LightMyRequestResponse> {
    const res = await t.app.inject(options);
    for (const p of PASSWORDS) expect(res.body, 'a response contains a password').not.toContain(p);
    expect(res.body).not.toMatch(/\$argon2|"password_?hash"\s*:/i);
    return res;
  }

  const admin = (options: InjectOptions) => call({ ...options, headers: { ...bearer(adminToken), ...(options.headers ?? {}) } });

  async function counts() {
    const db = t.backend.database.db;
    const n = async (table: 'users' | 'audit_log' | 'refresh_tokens') =>
      Number((await db.selectFrom(table).select((eb) => eb.fn.countAll<number>().as('n')).executeTakeFirstOrThrow()).n);
    return { users: await n('users'), audit: await n('audit_log'), refreshTokens: await n('refresh_tokens') };
  }

  async function usersSnapshot() {
    return t.backend.database.db.selectFrom('users').selectAll().orderBy('id').execute();
  }

  async function lastAudit(action: string) {
    return t.backend.database.db.selectFrom('audit_log').selectAll().where('action', '=', action).orderBy('id', 'desc').limit(1).executeTakeFirst();
  }

  let seq = 0;
  async function newUser(extra: Record<string, unknown> = {}) {
    const username = `member${++seq}`;
    const password = `member-password-${seq}`;
    PASSWORDS.add(password);
    const res = await admin({ method: 'POST', url: '/api/admin/users', payload: { username, password, ...extra } });
    expect(res.statusCode, res.body).toBe(201);
    return { ...res.json<{ data: UserView }>().data, password };
  }

  beforeAll(async () => {
    t = await buildTestApp(backendName);
    adminToken = await login(t.app);
    adminId = (await t.backend.database.db.selectFrom('users').select('id').where('username', '=', ADMIN_USERNAME).executeTakeFirstOrThrow()).id;
  });
  afterAll(async () => {
    await t.close();
  });

  describe('access', () => {
    const routes: [InjectOptions['method'], string, Record<string, unknown>?][] = [
      ['GET', '/api/admin/users'],
      ['POST', '/api/admin/users', { username: 'intruder', password: 'intruder-password' }],
      ['GET', '/api/admin/users/00000000-0000-4000-8000-000000000000'],
      ['PATCH', '/api/admin/users/00000000-0000-4000-8000-000000000000', { displayName: 'x' }],
      ['POST', '/api/admin/users/00000000-0000-4000-8000-000000000000/disable'],
      ['POST', '/api/admin/users/00000000-0000-4000-8000-000000000000/enable'],
      ['POST', '/api/admin/users/00000000-0000-4000-8000-000000000000/reset-password', { password: 'new-password-1' }],
      ['PATCH', '/api/admin/users/00000000-0000-4000-8000-000000000000/role', { role: 'admin' }],
      ['POST', '/api/admin/users/00000000-0000-4000-8000-000000000000/role', { role: 'admin' }],
    ];

    it.each(routes)('%s %s is 401 without a token and 403 for a user, writing nothing', async (method, url, payload) => {
      const { token } = await createUserAndLogin(t.app, adminToken, `plain${++seq}`);
      const before = await counts();
      const anonymous = await call({ method, url, ...(payload ? { payload } : {}) });
      expect(anonymous.statusCode).toBe(401);
      const user = await call({ method, url, headers: bearer(token), ...(payload ? { payload } : {}) });
      expect(user.statusCode).toBe(403);
      expect(errorCode(user)).toBe('FORBIDDEN');
      expect(await counts()).toEqual(before);
    });
  });

  describe('POST /api/admin/users', () => {
    it('creates a user (201), audits it with the actor, and never returns the password', async () => {
      PASSWORDS.add('created-password-1');
      const res = await admin({ method: 'POST', url: '/api/admin/users', payload: { username: 'Created.User', password: 'created-password-1', displayName: 'Created', email: 'c@example.com', dailyTokenQuota: 5000 } });
      expect(res.statusCode).toBe(201);
      const user = res.json<{ success: boolean; data: UserView }>();
      expect(user.success).toBe(true);
      expect(user.data).toMatchObject({ username: 'Created.User', displayName: 'Created', email: 'c@example.com', role: 'user', status: 'active', dailyTokenQuota: 5000 });
      const audit = await lastAudit('user.create');
      expect(audit).toMatchObject({ actor_id: adminId, actor_username: ADMIN_USERNAME, target_id: user.data.id, success: true });
      expect(JSON.stringify(audit)).not.toContain('created-password-1');
      const stored = await t.backend.database.db.selectFrom('users').select('password_hash').where('id', '=', user.data.id).executeTakeFirstOrThrow();
      expect(stored.password_hash.startsWith('$argon2id$')).toBe(true);
      expect((await login(t.app, 'created.user', 'created-password-1')).length).toBeGreaterThan(0);
    });

    const bad: [string, unknown, number, string][] = [
      ['a taken username in another case', { username: 'ADMIN', password: 'another-password-1' }, 409, 'USERNAME_TAKEN'],
      ['a short password', { username: 'weakling', password: 'short' }, 422, 'PASSWORD_TOO_WEAK'],
      ['a password over 256 characters', { username: 'weakling', password: 'p'.repeat(257) }, 422, 'PASSWORD_TOO_WEAK'],
      ['the username as password', { username: 'mirror', password: 'mirror' + '' }, 422, 'PASSWORD_TOO_WEAK'],
      ['a missing password', { username: 'nopass' }, 400, 'VALIDATION_FAILED'],
      ['a missing username', { password: 'some-password-1' }, 400, 'VALIDATION_FAILED'],
      ['a numeric password', { username: 'numpass', password: 1234567890 }, 400, 'VALIDATION_FAILED'],
      ['a boolean username', { username: true, password: 'some-password-1' }, 400, 'VALIDATION_FAILED'],
      ['a bad username', { username: 'no spaces!', password: 'some-password-1' }, 400, 'VALIDATION_FAILED'],
      ['an oversized username', { username: 'u'.repeat(1000), password: 'some-password-1' }, 400, 'VALIDATION_FAILED'],
      ['an oversized password', { username: 'bigpass', password: 'p'.repeat(2000) }, 400, 'VALIDATION_FAILED'],
      ['an unknown role', { username: 'rooted', password: 'some-password-1', role: 'root' }, 400, 'VALIDATION_FAILED'],
      ['a password hash', { username: 'hashy', password: 'some-password-1', password_hash: 'x' }, 400, 'VALIDATION_FAILED'],
      ['a negative quota', { username: 'quota1', password: 'some-password-1', dailyTokenQuota: -1 }, 400, 'VALIDATION_FAILED'],
      ['a fractional quota', { username: 'quota2', password: 'some-password-1', dailyTokenQuota: 1.5 }, 400, 'VALIDATION_FAILED'],
      ['a quota as text', { username: 'quota3', password: 'some-password-1', dailyTokenQuota: '100' }, 400, 'VALIDATION_FAILED'],
      ['a bad email', { username: 'mailer', password: 'some-password-1', email: 'nope' }, 400, 'VALIDATION_FAILED'],
    ];
    it.each(bad)('rejects %s and writes nothing', async (_label, payload, status, code) => {
      const before = await counts();
      const res = await admin({ method: 'POST', url: '/api/admin/users', payload: payload as Record<string, unknown> });
      expect(res.statusCode).toBe(status);
      expect(errorCode(res)).toBe(code);
      expect(await counts()).toEqual(before);
    });

    it('rejects malformed JSON and writes nothing', async () => {
      const before = await counts();
      const res = await admin({ method: 'POST', url: '/api/admin/users', payload: '{bad', headers: { 'content-type': 'application/json' } });
      expect(res.statusCode).toBe(400);
      expect(errorCode(res)).toBe('INVALID_JSON');
      expect(await counts()).toEqual(before);
    });
  });

  describe('GET /api/admin/users', () => {
    it('pages, searches and filters', async () => {
      await newUser({ displayName: 'Zebra Keeper' });
      const disabled = await newUser({ displayName: 'Sleepy' });
      await admin({ method: 'POST', url: `/api/admin/users/${disabled.id}/disable` });

      const page1 = await admin({ method: 'GET', url: '/api/admin/users?page=1&pageSize=2' });
      expect(page1.statusCode).toBe(200);
      const body1 = page1.json<{ data: { items: UserView[]; total: number; page: number; pageSize: number } }>().data;
      expect(body1.items).toHaveLength(2);
      expect(body1.page).toBe(1);
      expect(body1.pageSize).toBe(2);
      const page2 = (await admin({ method: 'GET', url: '/api/admin/users?page=2&pageSize=2' })).json<{ data: { items: UserView[]; total: number } }>().data;
      expect(page2.total).toBe(body1.total);
      expect(page2.items.map((u) => u.id)).not.toContain(body1.items[0]?.id);

      const byName = (await admin({ method: 'GET', url: '/api/admin/users?q=zebra' })).json<{ data: { items: UserView[] } }>().data;
      expect(byName.items.map((u) => u.displayName)).toEqual(['Zebra Keeper']);
      const byUsername = (await admin({ method: 'GET', url: `/api/admin/users?q=${ADMIN_USERNAME.toUpperCase()}` })).json<{ data: { items: UserView[] } }>().data;
      expect(byUsername.items.map((u) => u.username)).toContain(ADMIN_USERNAME);
      // LIKE wildcards in q are literal.
      expect((await admin({ method: 'GET', url: '/api/admin/users?q=%25' })).json<{ data: { total: number } }>().data.total).toBe(0);

      const admins = (await admin({ method: 'GET', url: '/api/admin/users?role=admin' })).json<{ data: { items: UserView[] } }>().data;
      expect(admins.items.every((u) => u.role === 'admin')).toBe(true);
      const off = (await admin({ method: 'GET', url: '/api/admin/users?status=disabled' })).json<{ data: { items: UserView[] } }>().data;
      expect(off.items.map((u) => u.id)).toContain(disabled.id);
      expect(off.items.every((u) => u.status === 'disabled')).toBe(true);
    });

    it.each([
      ['pageSize=0'],
      ['pageSize=101'],
      ['page=0'],
      ['page=abc'],
      ['role=root'],
      ['status=gone'],
      [`q=${'q'.repeat(101)}`],
      ['unknown=1'],
    ])('rejects ?%s with 400', async (query) => {
      const res = await admin({ method: 'GET', url: `/api/admin/users?${query}` });
      expect(res.statusCode).toBe(400);
      expect(errorCode(res)).toBe('VALIDATION_FAILED');
    });
  });

  describe('GET and PATCH /api/admin/users/:id', () => {
    it('gets a user; an unknown id is 404 and a malformed one 400', async () => {
      const user = await newUser();
      const res = await admin({ method: 'GET', url: `/api/admin/users/${user.id}` });
      expect(res.statusCode).toBe(200);
      expect(res.json<{ data: UserView }>().data.username).toBe(user.username);
      const unknown = await admin({ method: 'GET', url: '/api/admin/users/00000000-0000-4000-8000-000000000000' });
      expect(unknown.statusCode).toBe(404);
      expect(errorCode(unknown)).toBe('USER_NOT_FOUND');
      expect((await admin({ method: 'GET', url: '/api/admin/users/123' })).statusCode).toBe(400);
    });

    it('updates display name, email and quota, clears them with null, and audits', async () => {
      const user = await newUser();
      const res = await admin({ method: 'PATCH', url: `/api/admin/users/${user.id}`, payload: { displayName: 'Renamed', email: 'r@example.com', dailyTokenQuota: 100 } });
      expect(res.statusCode).toBe(200);
      expect(res.json<{ data: UserView }>().data).toMatchObject({ displayName: 'Renamed', email: 'r@example.com', dailyTokenQuota: 100 });
      const audit = await lastAudit('user.update');
      expect(audit).toMatchObject({ actor_id: adminId, target_id: user.id });
      const cleared = await admin({ method: 'PATCH', url: `/api/admin/users/${user.id}`, payload: { displayName: null, email: null, dailyTokenQuota: null } });
      expect(cleared.json<{ data: UserView }>().data).toMatchObject({ displayName: null, email: null, dailyTokenQuota: null });
    });

    it.each([
      ['an empty body', {}],
      ['an unknown field', { username: 'renamed' }],
      ['a numeric display name', { displayName: 5 }],
      ['an oversized display name', { displayName: 'd'.repeat(101) }],
      ['a bad role', { role: 'owner' }],
      ['a bad status field', { status: 'disabled' }],
    ])('PATCH rejects %s and changes nothing', async (_label, payload) => {
      const user = await newUser();
      const before = await usersSnapshot();
      const auditBefore = (await counts()).audit;
      const res = await admin({ method: 'PATCH', url: `/api/admin/users/${user.id}`, payload });
      expect(res.statusCode).toBe(400);
      expect(await usersSnapshot()).toEqual(before);
      expect((await counts()).audit).toBe(auditBefore);
    });

    it('PATCH of an unknown user is 404', async () => {
      const res = await admin({ method: 'PATCH', url: '/api/admin/users/00000000-0000-4000-8000-000000000000', payload: { displayName: 'x' } });
      expect(res.statusCode).toBe(404);
    });
  });

  describe('roles', () => {
    it('PATCH and POST /:id/role change the role, take effect on existing tokens, and are audited', async () => {
      const user = await newUser();
      const token = await login(t.app, user.username, user.password);
      expect((await call({ method: 'GET', url: '/api/admin/users', headers: bearer(token) })).statusCode).toBe(403);
      const promoted = await admin({ method: 'PATCH', url: `/api/admin/users/${user.id}/role`, payload: { role: 'admin' } });
      expect(promoted.json<{ data: UserView }>().data.role).toBe('admin');
      expect((await call({ method: 'GET', url: '/api/admin/users', headers: bearer(token) })).statusCode).toBe(200);
      const audit = await lastAudit('user.role');
      expect(audit).toMatchObject({ actor_id: adminId, target_id: user.id });
      expect(audit?.detail).toMatchObject({ fromRole: 'user', toRole: 'admin' });
      const demoted = await admin({ method: 'POST', url: `/api/admin/users/${user.id}/role`, payload: { role: 'user' } });
      expect(demoted.json<{ data: UserView }>().data.role).toBe('user');
      expect((await call({ method: 'GET', url: '/api/admin/users', headers: bearer(token) })).statusCode).toBe(403);
    });

    it.each([[{}], [{ role: 'superuser' }], [{ role: 'admin', extra: true }], [{ role: 1 }]])('rejects role body %j', async (payload) => {
      const user = await newUser();
      const res = await admin({ method: 'PATCH', url: `/api/admin/users/${user.id}/role`, payload });
      expect(res.statusCode).toBe(400);
      expect((await admin({ method: 'GET', url: `/api/admin/users/${user.id}` })).json<{ data: UserView }>().data.role).toBe('user');
    });
  });

  describe('disable and enable', () => {
    it('disable signs the user out everywhere; enable lets them back in; both audited', async () => {
      const user = await newUser();
      const token = await login(t.app, user.username, user.password);
      const res = await admin({ method: 'POST', url: `/api/admin/users/${user.id}/disable` });
      expect(res.statusCode).toBe(200);
      expect(res.json<{ data: UserView }>().data.status).toBe('disabled');
      const live = await t.backend.database.db.selectFrom('refresh_tokens').select('id').where('user_id', '=', user.id).where('revoked_at', 'is', null).execute();
      expect(live).toHaveLength(0);
      expect((await call({ method: 'GET', url: '/api/auth/profile', headers: bearer(token) })).statusCode).toBe(403);
      expect(await lastAudit('user.disable')).toMatchObject({ actor_id: adminId, target_id: user.id });
      const enabled = await admin({ method: 'POST', url: `/api/admin/users/${user.id}/enable` });
      expect(enabled.json<{ data: UserView }>().data.status).toBe('active');
      expect(await lastAudit('user.enable')).toMatchObject({ actor_id: adminId, target_id: user.id });
      expect((await call({ method: 'GET', url: '/api/auth/profile', headers: bearer(token) })).statusCode).toBe(200);
    });

    it('an unknown user is 404', async () => {
      for (const action of ['disable', 'enable']) {
        const res = await admin({ method: 'POST', url: `/api/admin/users/00000000-0000-4000-8000-000000000000/${action}` });
        expect(res.statusCode).toBe(404);
      }
    });
  });

  describe('POST /:id/reset-password', () => {
    it('sets the chosen password, ends sessions, and returns no password', async () => {
      const user = await newUser();
      const refresh = await t.app.inject({ method: 'POST', url: '/api/auth/login', payload: { username: user.username, password: user.password } });
      const cookie = refresh.cookies.find((c) => c.name === 'llmchat_refresh')?.value ?? '';

      const chosen = 'admin-chosen-password';
      PASSWORDS.add(chosen);
      const res = await admin({ method: 'POST', url: `/api/admin/users/${user.id}/reset-password`, payload: { password: chosen } });
      expect(res.statusCode).toBe(200);
      expect(res.json<{ data: UserView }>().data.lockedUntil).toBeNull();
      expect(await lastAudit('user.reset_password')).toMatchObject({ actor_id: adminId, target_id: user.id });
      expect((await t.app.inject({ method: 'POST', url: '/api/auth/refresh', cookies: { llmchat_refresh: cookie } })).statusCode).toBe(401);
      expect((await t.app.inject({ method: 'POST', url: '/api/auth/login', payload: { username: user.username, password: user.password } })).statusCode).toBe(401);
      expect((await login(t.app, user.username, chosen)).length).toBeGreaterThan(0);
    });

    it('accepts newPassword as the field name', async () => {
      const user = await newUser();
      PASSWORDS.add('another-chosen-password');
      const res = await admin({ method: 'POST', url: `/api/admin/users/${user.id}/reset-password`, payload: { newPassword: 'another-chosen-password' } });
      expect(res.statusCode).toBe(200);
    });

    it.each([
      ['no password (the server never generates one)', {}, 400],
      ['a numeric password', { password: 12345678 }, 400],
      ['two different passwords', { password: 'first-password-1', newPassword: 'second-password-2' }, 400],
      ['an extra field', { password: 'first-password-1', notify: true }, 400],
      ['a weak password', { password: 'short' }, 422],
    ])('rejects %s and changes nothing', async (_label, payload, status) => {
      const user = await newUser();
      const before = await usersSnapshot();
      const res = await admin({ method: 'POST', url: `/api/admin/users/${user.id}/reset-password`, payload });
      expect(res.statusCode).toBe(status);
      expect(await usersSnapshot()).toEqual(before);
    });

    it('the username as password is too weak', async () => {
      const user = await newUser();
      const res = await admin({ method: 'POST', url: `/api/admin/users/${user.id}/reset-password`, payload: { password: user.username } });
      expect(res.statusCode).toBe(422);
      expect(errorCode(res)).toBe('PASSWORD_TOO_WEAK');
    });
  });
});

describe.each(await backendNames())('the last admin on %s', (backendName) => {
  let t: TestApp;
  let adminToken: string;
  let adminId: string;

  beforeAll(async () => {
    t = await buildTestApp(backendName);
    adminToken = await login(t.app);
    adminId = (await t.backend.database.db.selectFrom('users').select('id').where('username', '=', ADMIN_USERNAME).executeTakeFirstOrThrow()).id;
  });
  afterAll(async () => {
    await t.close();
  });

  it('cannot be demoted or disabled; once another admin exists it can', async () => {
    for (const options of [
      { method: 'PATCH', url: `/api/admin/users/${adminId}/role`, payload: { role: 'user' } },
      { method: 'PATCH', url: `/api/admin/users/${adminId}`, payload: { role: 'user' } },
      { method: 'POST', url: `/api/admin/users/${adminId}/disable` },
    ] as InjectOptions[]) {
      const res = await t.app.inject({ ...options, headers: bearer(adminToken) });
      expect(res.statusCode, JSON.stringify(options)).toBe(409);
      expect(errorCode(res)).toBe('LAST_ADMIN');
    }
    const row = await t.backend.database.db.selectFrom('users').select(['role', 'status']).where('id', '=', adminId).executeTakeFirstOrThrow();
    expect(row).toEqual({ role: 'admin', status: 'active' });

    // A disabled admin does not count as an active one.
    const other = await createUserAndLogin(t.app, adminToken, 'second-admin', 'second-admin-password', 'admin');
    await t.app.inject({ method: 'POST', url: `/api/admin/users/${other.userId}/disable`, headers: bearer(adminToken) });
    expect((await t.app.inject({ method: 'POST', url: `/api/admin/users/${adminId}/disable`, headers: bearer(adminToken) })).statusCode).toBe(409);

    await t.app.inject({ method: 'POST', url: `/api/admin/users/${other.userId}/enable`, headers: bearer(adminToken) });
    const demoted = await t.app.inject({ method: 'PATCH', url: `/api/admin/users/${adminId}/role`, payload: { role: 'user' }, headers: bearer(adminToken) });
    expect(demoted.statusCode).toBe(200);
    // The former admin's token no longer opens admin routes; the new admin's does.
    expect((await t.app.inject({ method: 'GET', url: '/api/admin/users', headers: bearer(adminToken) })).statusCode).toBe(403);
    expect((await t.app.inject({ method: 'GET', url: '/api/admin/users', headers: bearer(other.token) })).statusCode).toBe(200);
  });
});
