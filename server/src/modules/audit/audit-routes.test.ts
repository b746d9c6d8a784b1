import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ADMIN_USERNAME, bearer, buildTestApp, createUserAndLogin, login, type TestApp } from '../../test/app.js';
import { backendNames } from '../../test/backends.js';
import type { AuditEntry } from './audit-log.js';

interface Page {
  entries: AuditEntry[];
  nextCursor: number | null;
}

describe.each(await backendNames())('audit routes on %s', (backendName) => {
  let t: TestApp;
  let adminToken: string;
  let userToken: string;

  beforeAll(async () => {
    t = await buildTestApp(backendName);
    adminToken = await login(t.app);
    userToken = (await createUserAndLogin(t.app, adminToken, 'auditee')).token;
    // Some failed logins to filter on.
    for (let i = 0; i < 3; i++) await t.app.inject({ method: 'POST', url: '/api/auth/login', payload: { username: 'auditee', password: `wrong-${i}` } });
  });
  afterAll(async () => {
    await t.close();
  });

  const get = (url: string, token = adminToken) => t.app.inject({ method: 'GET', url, headers: bearer(token) });

  it('lists entries newest first with filters on action and actor', async () => {
    const res = await get('/api/admin/audit?action=auth.login');
    expect(res.statusCode).toBe(200);
    const page = res.json<{ success: boolean; data: Page }>();
    expect(page.success).toBe(true);
    expect(page.data.entries.length).toBeGreaterThanOrEqual(5);
    expect(page.data.entries.every((e) => e.action === 'auth.login')).toBe(true);
    const ids = page.data.entries.map((e) => e.id);
    expect([...ids].sort((a, b) => b - a)).toEqual(ids);

    const byActor = (await get('/api/admin/audit?actor=auditee&action=auth.login')).json<{ data: Page }>().data.entries;
    expect(byActor.map((e) => e.success)).toEqual([false, false, false, true]);

    const created = (await get(`/api/admin/audit?action=user.create&actor=${ADMIN_USERNAME}`)).json<{ data: Page }>().data.entries;
    expect(created).toHaveLength(1);
    expect(created[0]?.detail).toMatchObject({ username: 'auditee' });
  });

  it('filters by time', async () => {
    const future = new Date(Date.now() + 3_600_000).toISOString();
    const none = (await get(`/api/admin/audit?from=${encodeURIComponent(future)}`)).json<{ data: Page }>().data;
    expect(none.entries).toHaveLength(0);
    const all = (await get(`/api/admin/audit?to=${encodeURIComponent(future)}`)).json<{ data: Page }>().data;
    expect(all.entries.length).toBeGreaterThan(0);
  });

  it('pages by cursor without gaps or repeats', async () => {
    const everything = (await get('/api/admin/audit?limit=200')).json<{ data: Page }>().data.entries.map((e) => e.id);
    const seen: number[] = [];
    let url = '/api/admin/audit?limit=2';
    for (;;) {
      const page = (await get(url)).json<{ data: Page }>().data;
      expect(page.entries.length).toBeLessThanOrEqual(2);
      seen.push(...page.entries.map((e) => e.id));
      if (page.nextCursor === null) break;
      url = `/api/admin/audit?limit=2&before=${page.nextCursor}`;
    }
    expect(seen).toEqual(everything);
  });

  it.each([['limit=0'], ['limit=201'], ['limit=abc'], ['before=0'], ['before=x'], ['from=yesterday'], ['to=2024-13-45T00:00:00Z'], [`action=${'a'.repeat(101)}`], ['bogus=1']])(
    'rejects ?%s with 400',
    async (query) => {
      const res = await get(`/api/admin/audit?${query}`);
      expect(res.statusCode).toBe(400);
      expect(res.json<{ error: { code: string } }>().error.code).toBe('VALIDATION_FAILED');
    },
  );

  it('is for admins only', async () => {
    for (const url of ['/api/admin/audit', '/api/admin/audit/export.csv']) {
      expect((await t.app.inject({ method: 'GET', url })).statusCode).toBe(401);
      const res = await get(url, userToken);
      expect(res.statusCode).toBe(403);
      expect(res.json<{ error: { code: string } }>().error.code).toBe('FORBIDDEN');
    }
  });

  it('exports CSV with a header, escaping and formula protection, honouring filters', async () => {
    await t.app.deps.audit.record({ action: 'test.csv', actorUsername: '=HYPERLINK("http://evil")', targetId: 'a,b', detail: { note: 'line one\nline "two"' } });
    const res = await get('/api/admin/audit/export.csv?action=test.csv');
    expect(res.statusCode).toBe(200);
    expect(res.headers['content-type']).toBe('text/csv; charset=utf-8');
    expect(res.headers['content-disposition']).toMatch(/^attachment; filename="audit-log-[\d-]+\.csv"$/);
    const [header, row, end] = res.body.split(/\r\n(?=(?:[^"]*"[^"]*")*[^"]*$)/);
    expect(header).toBe('id,at,actor_id,actor_username,action,target_type,target_id,success,ip,detail');
    expect(end).toBe('');
    expect(row).toContain(`,"'=HYPERLINK(""http://evil"")",test.csv,,"a,b",true,,`);
    expect(row).toContain('"{""note"":""line one\\nline \\""two\\""""}"');
  });

  it('exports everything by default, newest first, and limits on request', async () => {
    const all = await get('/api/admin/audit/export.csv');
    const total = (await get('/api/admin/audit?limit=200')).json<{ data: Page }>().data.entries.length;
    expect(all.body.trimEnd().split('\r\n')).toHaveLength(total + 1);
    const two = await get('/api/admin/audit/export.csv?limit=2');
    expect(two.body.trimEnd().split('\r\n')).toHaveLength(3);
    expect((await get('/api/admin/audit/export.csv?limit=0')).statusCode).toBe(400);
  });
});
