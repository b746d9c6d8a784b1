import type { InjectOptions, LightMyRequestResponse } from 'fastify';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { bearer, buildTestApp, createUserAndLogin, login, type TestApp } from '../../test/app.js';
import { backendNames } from '../../test/backends.js';
import { sha256 } from './tokens.js';

interface KeyView {
  id: string;
  name: string;
  prefix: string;
  createdAt: string;
  lastUsedAt: string | null;
  expiresAt: string | null;
  revokedAt: string | null;
}

function errorCode(res: LightMyRequestResponse): string {
  return res.json<{ error: { code: string } }>().error.code;
}

describe.each(await backendNames())('personal API keys on %s', (backendName) => {
  let t: TestApp;
  let adminToken: string;
  let alice: { token: string; userId: string };
  let bob: { token: string; userId: string };
  /** Every full key handed out; list and error responses must never contain one. */
  const issued: string[] = [];

  async function call(options: InjectOptions): Promise<LightMyRequestResponse> {
    const res = await t.app.inject(options);
    for (const key of issued) expect(res.body).not.toContain(key);
    expect(res.body).not.toMatch(/"key_?hash"\s*:/i);
    return res;
  }

  async function createKey(token: string, payload: Record<string, unknown>): Promise<{ key: string; apiKey: KeyView }> {
    const res = await t.app.inject({ method: 'POST', url: '/api/auth/api-keys', headers: bearer(token), payload });
    expect(res.statusCode, res.body).toBe(201);
    const data = res.json<{ data: { key: string; apiKey: KeyView } }>().data;
    issued.push(data.key);
    return data;
  }

  async function keyCount(): Promise<number> {
    const row = await t.backend.database.db.selectFrom('api_keys').select((eb) => eb.fn.countAll<number>().as('n')).executeTakeFirstOrThrow();
    return Number(row.n);
  }

  beforeAll(async () => {
    t = await buildTestApp(backendName);
    adminToken = await login(t.app);
    alice = await createUserAndLogin(t.app, adminToken, 'alice');
    bob = await createUserAndLogin(t.app, adminToken, 'bob');
  });
  afterAll(async () => {
    await t.close();
  });

  it('creates a key, shows it once and stores only its SHA-256', async () => {
    const { key, apiKey } = await createKey(alice.token, { name: 'laptop script' });
    expect(key).toMatch(/^llmc_[A-Za-z0-9_-]{43}$/);
    expect(apiKey).toMatchObject({ name: 'laptop script', prefix: key.slice(0, 12), lastUsedAt: null, revokedAt: null, scopes: ['chat'] });
    // No expiry asked: API_KEY_DEFAULT_EXPIRY_DAYS (90).
    expect(Math.round((new Date(apiKey.expiresAt ?? 0).getTime() - new Date(apiKey.createdAt).getTime()) / 86_400_000)).toBe(90);
    const row = await t.backend.database.db.selectFrom('api_keys').selectAll().where('id', '=', apiKey.id).executeTakeFirstOrThrow();
    expect(row.key_hash).toBe(sha256(key));
    expect(row.user_id).toBe(alice.userId);
    const audit = await t.backend.database.db.selectFrom('audit_log').selectAll().where('action', '=', 'api_key.create').where('target_id', '=', apiKey.id).execute();
    expect(audit).toHaveLength(1);
    expect(JSON.stringify(audit)).not.toContain(key);
  });

  it('sets an expiry when asked', async () => {
    const { apiKey } = await createKey(alice.token, { name: 'short-lived', expiresInDays: 7 });
    const days = (new Date(apiKey.expiresAt ?? 0).getTime() - new Date(apiKey.createdAt).getTime()) / 86_400_000;
    expect(Math.round(days)).toBe(7);
  });

  it("lists only the caller's keys, without the key or its hash", async () => {
    await createKey(bob.token, { name: 'bob key' });
    const res = await call({ method: 'GET', url: '/api/auth/api-keys', headers: bearer(alice.token) });
    expect(res.statusCode).toBe(200);
    const keys = res.json<{ data: KeyView[] }>().data;
    expect(keys.length).toBeGreaterThan(0);
    expect(keys.map((k) => k.name)).not.toContain('bob key');
    for (const k of keys) expect(Object.keys(k).sort()).toEqual(['createdAt', 'expiresAt', 'id', 'lastUsedAt', 'name', 'prefix', 'revokedAt', 'scopes']);
  });

  it('authenticates as its owner and records when it was used', async () => {
    const { key, apiKey } = await createKey(alice.token, { name: 'sdk' });
    const res = await call({ method: 'GET', url: '/api/auth/profile', headers: bearer(key) });
    expect(res.statusCode).toBe(200);
    expect(res.json<{ data: { id: string } }>().data.id).toBe(alice.userId);
    const row = await t.backend.database.db.selectFrom('api_keys').select('last_used_at').where('id', '=', apiKey.id).executeTakeFirstOrThrow();
    expect(row.last_used_at).not.toBeNull();
  });

  it("another user's key is 404 API_KEY_NOT_FOUND, admins included, and stays usable", async () => {
    const { key, apiKey } = await createKey(alice.token, { name: 'private' });
    for (const token of [bob.token, adminToken]) {
      const res = await call({ method: 'DELETE', url: `/api/auth/api-keys/${apiKey.id}`, headers: bearer(token) });
      expect(res.statusCode).toBe(404);
      expect(errorCode(res)).toBe('API_KEY_NOT_FOUND');
    }
    expect((await call({ method: 'GET', url: '/api/auth/profile', headers: bearer(key) })).statusCode).toBe(200);
  });

  it('revoking stops the key at once; revoking again is harmless', async () => {
    const { key, apiKey } = await createKey(alice.token, { name: 'to revoke' });
    const res = await call({ method: 'DELETE', url: `/api/auth/api-keys/${apiKey.id}`, headers: bearer(alice.token) });
    expect(res.statusCode).toBe(200);
    const revokedAt = res.json<{ data: KeyView }>().data.revokedAt;
    expect(revokedAt).not.toBeNull();
    const rejected = await call({ method: 'GET', url: '/api/auth/profile', headers: bearer(key) });
    expect(rejected.statusCode).toBe(401);
    expect(errorCode(rejected)).toBe('API_KEY_INVALID');
    const again = await call({ method: 'DELETE', url: `/api/auth/api-keys/${apiKey.id}`, headers: bearer(alice.token) });
    expect(again.statusCode).toBe(200);
    expect(again.json<{ data: KeyView }>().data.revokedAt).toBe(revokedAt);
  });

  it('an expired key is rejected', async () => {
    const { key, apiKey } = await createKey(alice.token, { name: 'expiring', expiresInDays: 1 });
    await t.backend.database.db.updateTable('api_keys').set({ expires_at: new Date(Date.now() - 1000) }).where('id', '=', apiKey.id).execute();
    const res = await call({ method: 'GET', url: '/api/auth/profile', headers: bearer(key) });
    expect(res.statusCode).toBe(401);
    expect(errorCode(res)).toBe('API_KEY_INVALID');
  });

  it('an unknown key is rejected', async () => {
    const res = await call({ method: 'GET', url: '/api/auth/profile', headers: bearer(`llmc_${'A'.repeat(43)}`) });
    expect(res.statusCode).toBe(401);
    expect(errorCode(res)).toBe('API_KEY_INVALID');
  });

  it("a disabled user's key is rejected", async () => {
    const carol = await createUserAndLogin(t.app, adminToken, 'carol');
    const { key } = await createKey(carol.token, { name: 'carol key' });
    await t.app.inject({ method: 'POST', url: `/api/admin/users/${carol.userId}/disable`, headers: bearer(adminToken) });
    const res = await call({ method: 'GET', url: '/api/auth/profile', headers: bearer(key) });
    expect(res.statusCode).toBe(403);
    expect(errorCode(res)).toBe('ACCOUNT_DISABLED');
  });

  it('an unknown key id is 404 and a malformed one 400', async () => {
    const unknown = await call({ method: 'DELETE', url: '/api/auth/api-keys/00000000-0000-4000-8000-000000000000', headers: bearer(alice.token) });
    expect(unknown.statusCode).toBe(404);
    const malformed = await call({ method: 'DELETE', url: '/api/auth/api-keys/not-a-uuid', headers: bearer(alice.token) });
    expect(malformed.statusCode).toBe(400);
  });

  it('every route needs a signed-in caller', async () => {
    for (const [method, url] of [['GET', '/api/auth/api-keys'], ['POST', '/api/auth/api-keys'], ['DELETE', '/api/auth/api-keys/00000000-0000-4000-8000-000000000000']] as const) {
      const res = await call({ method, url, payload: method === 'POST' ? { name: 'x' } : undefined });
      expect(res.statusCode, `${method} ${url}`).toBe(401);
    }
  });

  const badBodies: [string, InjectOptions][] = [
    ['a missing name', { payload: {} }],
    ['an empty name', { payload: { name: '' } }],
    ['an oversized name', { payload: { name: 'n'.repeat(101) } }],
    ['a numeric name', { payload: { name: 42 } }],
    ['zero days', { payload: { name: 'x', expiresInDays: 0 } }],
    ['fractional days', { payload: { name: 'x', expiresInDays: 1.5 } }],
    ['days as text', { payload: { name: 'x', expiresInDays: '7' } }],
    ['too many days', { payload: { name: 'x', expiresInDays: 3651 } }],
    ['an extra property', { payload: { name: 'x', userId: '00000000-0000-4000-8000-000000000000' } }],
    ['malformed JSON', { payload: '{bad', headers: { 'content-type': 'application/json' } }],
  ];
  it.each(badBodies)('POST rejects %s with 400 and creates no key', async (_label, options) => {
    const before = await keyCount();
    const res = await call({ method: 'POST', url: '/api/auth/api-keys', ...options, headers: { ...bearer(alice.token), ...(options.headers ?? {}) } });
    expect(res.statusCode).toBe(400);
    expect(await keyCount()).toBe(before);
  });
});
