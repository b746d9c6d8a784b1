import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { REFRESH_COOKIE } from '../modules/auth/routes.js';
import { ADMIN_PASSWORD, ADMIN_USERNAME, buildTestApp, type TestApp } from '../test/app.js';
import { backendNames } from '../test/backends.js';
import { crossSiteReason } from './same-origin.js';

describe('crossSiteReason', () => {
  it('trusts Sec-Fetch-Site first, then compares Origin with Host', () => {
    expect(crossSiteReason({ secFetchSite: 'same-origin', origin: 'https://evil.example' }, 'chat.example.com')).toBeUndefined();
    expect(crossSiteReason({ secFetchSite: 'cross-site' }, 'chat.example.com')).toBe('Sec-Fetch-Site is cross-site');
    expect(crossSiteReason({ secFetchSite: 'same-site' }, 'chat.example.com')).toBe('Sec-Fetch-Site is same-site');
    expect(crossSiteReason({ origin: 'https://chat.example.com' }, 'chat.example.com')).toBeUndefined();
    expect(crossSiteReason({ origin: 'https://chat.example.com' }, 'chat.example.com:443')).toBeUndefined();
    expect(crossSiteReason({ origin: 'http://127.0.0.1:3000' }, '127.0.0.1:3000')).toBeUndefined();
    expect(crossSiteReason({ origin: 'http://127.0.0.1:3001' }, '127.0.0.1:3000')).toMatch(/not this site/);
    expect(crossSiteReason({ origin: 'https://chat.example.com.evil.example' }, 'chat.example.com')).toMatch(/not this site/);
    expect(crossSiteReason({ origin: 'null' }, 'chat.example.com')).toMatch(/not this site/);
    // Not a browser: nothing to tell, and the cookie is SameSite=Strict anyway.
    expect(crossSiteReason({}, 'chat.example.com')).toBeUndefined();
  });
});

describe.each(await backendNames())('the cookie-authenticated routes on %s, called from another site', (backendName) => {
  let t: TestApp;
  let cookie: string;

  beforeAll(async () => {
    t = await buildTestApp(backendName);
    const res = await t.app.inject({ method: 'POST', url: '/api/auth/login', payload: { username: ADMIN_USERNAME, password: ADMIN_PASSWORD } });
    cookie = res.cookies.find((c) => c.name === REFRESH_COOKIE)?.value ?? '';
    expect(cookie).not.toBe('');
  });
  afterAll(async () => {
    await t.close();
  });

  const post = (url: string, headers: Record<string, string>) =>
    t.app.inject({ method: 'POST', url, headers: { host: 'chat.example.com', ...headers }, cookies: { [REFRESH_COOKIE]: cookie } });

  it('refuses refresh and logout with 403 CROSS_SITE_REQUEST and leaves the session as it was', async () => {
    const attacks: Record<string, string>[] = [
      { 'sec-fetch-site': 'cross-site', origin: 'https://evil.example' },
      { 'sec-fetch-site': 'same-site', origin: 'https://other.example.com' },
      { origin: 'https://evil.example' },
      { origin: 'null' },
    ];
    for (const headers of attacks) {
      for (const url of ['/api/auth/refresh', '/api/auth/logout']) {
        const res = await post(url, headers);
        expect(res.statusCode, `${url} ${JSON.stringify(headers)}`).toBe(403);
        expect(res.json<{ error: { code: string } }>().error.code).toBe('CROSS_SITE_REQUEST');
        // Nothing spent or cleared: no new cookie, no cleared cookie.
        expect(res.cookies.find((c) => c.name === REFRESH_COOKIE)).toBeUndefined();
      }
    }
    // The refresh token the attacks carried is still the live one: neither rotated nor revoked.
    const own = await post('/api/auth/refresh', { 'sec-fetch-site': 'same-origin', origin: 'https://chat.example.com' });
    expect(own.statusCode, own.body).toBe(200);
    cookie = own.cookies.find((c) => c.name === REFRESH_COOKIE)?.value ?? '';
  });

  it("accepts the site's own pages and clients that are not browsers", async () => {
    const byOrigin = await post('/api/auth/refresh', { origin: 'https://chat.example.com' });
    expect(byOrigin.statusCode, byOrigin.body).toBe(200);
    cookie = byOrigin.cookies.find((c) => c.name === REFRESH_COOKIE)?.value ?? '';
    const noHeaders = await post('/api/auth/refresh', {});
    expect(noHeaders.statusCode, noHeaders.body).toBe(200);
    cookie = noHeaders.cookies.find((c) => c.name === REFRESH_COOKIE)?.value ?? '';
    const logout = await post('/api/auth/logout', { 'sec-fetch-site': 'same-origin' });
    expect(logout.statusCode, logout.body).toBe(200);
    expect((await post('/api/auth/refresh', {})).statusCode).toBe(401);
  });
});
