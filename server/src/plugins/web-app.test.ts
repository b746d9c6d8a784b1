import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadConfig } from '../config.js';
import { backendNames } from '../test/backends.js';
import { buildTestApp, type TestApp } from '../test/app.js';
import { IMMUTABLE, WEB_CSP } from './web-app.js';

/** A stand-in for `web/dist`: the shape Vite builds (index.html + hashed files under assets/). */
function fakeBuild(): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'llmchat-web-'));
  fs.mkdirSync(path.join(dir, 'assets'));
  fs.writeFileSync(path.join(dir, 'index.html'), '<!doctype html><title>LLMChat</title><div id="root"></div>');
  fs.writeFileSync(path.join(dir, 'assets', 'index-Ab12Cd34.js'), 'console.log("app")');
  fs.writeFileSync(path.join(dir, 'favicon.svg'), '<svg xmlns="http://www.w3.org/2000/svg"/>');
  return dir;
}

describe.each(await backendNames())('serving the web app on %s', (name) => {
  let t: TestApp;
  const dist = fakeBuild();
  beforeAll(async () => {
    t = await buildTestApp(name, { WEB_DIST_DIR: dist });
  });
  afterAll(async () => {
    await t.close();
    fs.rmSync(dist, { recursive: true, force: true });
  });

  it('serves index.html at / with no-cache and a strict script policy', async () => {
    const res = await t.app.inject({ method: 'GET', url: '/' });
    expect(res.statusCode).toBe(200);
    expect(res.headers['content-type']).toMatch(/^text\/html/);
    expect(res.headers['cache-control']).toBe('no-cache');
    expect(res.headers['content-security-policy']).toBe(WEB_CSP);
    expect(res.body).toContain('<div id="root">');
  });

  it('serves hashed assets with a year-long immutable cache', async () => {
    const res = await t.app.inject({ method: 'GET', url: '/assets/index-Ab12Cd34.js' });
    expect(res.statusCode).toBe(200);
    expect(res.headers['content-type']).toMatch(/javascript/);
    expect(res.headers['cache-control']).toBe(IMMUTABLE);
    expect(res.body).toBe('console.log("app")');
  });

  it('serves other top-level files with revalidation', async () => {
    const res = await t.app.inject({ method: 'GET', url: '/favicon.svg' });
    expect(res.statusCode).toBe(200);
    expect(res.headers['cache-control']).toBe('no-cache');
  });

  it('answers client routes with index.html so a reload keeps the page', async () => {
    for (const url of ['/c/3f1e2b9a-0000-4000-8000-000000000000', '/admin/users?q=x', '/profile']) {
      const res = await t.app.inject({ method: 'GET', url });
      expect(res.statusCode, url).toBe(200);
      expect(res.headers['content-type'], url).toMatch(/^text\/html/);
      expect(res.body, url).toContain('<div id="root">');
    }
  });

  it('keeps unknown API, /v1, /health and asset paths as JSON 404s', async () => {
    for (const url of ['/api/nope', '/api', '/v1/nope', '/health/nope', '/assets/missing-123.js']) {
      const res = await t.app.inject({ method: 'GET', url });
      expect(res.statusCode, url).toBe(404);
      expect(res.json<{ error: { code: string } }>().error.code, url).toBe('NOT_FOUND');
    }
  });

  it('does not answer other methods with the page', async () => {
    const res = await t.app.inject({ method: 'POST', url: '/profile', payload: {} });
    expect(res.statusCode).toBe(404);
    expect(res.json<{ error: { code: string } }>().error.code).toBe('NOT_FOUND');
  });

  it('still serves the API beside the page', async () => {
    const res = await t.app.inject({ method: 'GET', url: '/api/auth/options' });
    expect(res.statusCode).toBe(200);
    expect(res.json<{ data: { registrationOpen: boolean } }>().data.registrationOpen).toBe(false);
  });
});

describe('WEB_DIST_DIR', () => {
  it('rejects a directory with no index.html, naming the variable', () => {
    const empty = fs.mkdtempSync(path.join(os.tmpdir(), 'llmchat-web-empty-'));
    try {
      expect(() => loadConfig({ WEB_DIST_DIR: empty })).toThrow(/WEB_DIST_DIR must be a directory holding index.html/);
    } finally {
      fs.rmSync(empty, { recursive: true, force: true });
    }
  });

  it('off serves no web app', () => {
    expect(loadConfig({ WEB_DIST_DIR: 'off' }).webDistDir).toBeUndefined();
  });
});
