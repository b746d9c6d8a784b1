import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { AxeBuilder } from '@axe-core/playwright';
import pg from 'pg';
import { chromium, type Browser, type BrowserContext, type Page } from 'playwright-core';
import type { TestContext } from 'vitest';
import { en } from '../src/i18n/en.js';
import { zhCN } from '../src/i18n/zh-CN.js';

/**
 * The browser journeys' world: the built server as a process (the README's
 * start command: embedded PGlite, in-process state, the simulated upstream),
 * and Debian's Chromium driven by playwright-core. Nothing here downloads a
 * browser.
 */

const here = path.dirname(fileURLToPath(import.meta.url));
const repoRoot = path.resolve(here, '../..');
const mainJs = path.join(repoRoot, 'server/dist/main.js');
export const OUTPUT_DIR = path.join(repoRoot, 'web/test-output');
export const SCREENSHOT_DIR = path.join(OUTPUT_DIR, 'screenshots');
export const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';
export const ADMIN_PASSWORD = 'admin-password-for-browser-tests';

export type Backend = 'embedded' | 'postgres+redis';
const POSTGRES_URL = process.env.TEST_POSTGRES_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres';
const REDIS_URL = process.env.TEST_REDIS_URL ?? 'redis://127.0.0.1:6379/0';
const REQUIRE_SERVICES = process.env.LLMCHAT_REQUIRE_SERVICES === '1';

async function postgresAnswers(): Promise<boolean> {
  const client = new pg.Client({ connectionString: POSTGRES_URL, connectionTimeoutMillis: 2000 });
  try {
    await client.connect();
    await client.query('select 1');
    return true;
  } catch {
    return false;
  } finally {
    await client.end().catch(() => undefined);
  }
}

function redisAnswers(): Promise<boolean> {
  const { hostname, port } = new URL(REDIS_URL);
  return new Promise((resolve) => {
    const socket = net.connect(Number(port || 6379), hostname);
    const done = (ok: boolean) => {
      socket.destroy();
      resolve(ok);
    };
    socket.setTimeout(2000, () => done(false));
    socket.on('error', () => done(false));
    socket.on('connect', () => socket.write('PING\r\n'));
    socket.on('data', (d: Buffer) => done(d.toString().startsWith('+PONG')));
  });
}

/**
 * The backends the journeys run on, like the server's suites: embedded
 * always; PostgreSQL + Redis when they answer (required when
 * LLMCHAT_REQUIRE_SERVICES=1, as in .ci/run).
 */
export async function backends(): Promise<Backend[]> {
  const [pgOk, redisOk] = await Promise.all([postgresAnswers(), redisAnswers()]);
  if (REQUIRE_SERVICES && !(pgOk && redisOk)) throw new Error(`LLMCHAT_REQUIRE_SERVICES=1 but PostgreSQL reachable=${pgOk}, Redis reachable=${redisOk}`);
  return pgOk && redisOk ? ['embedded', 'postgres+redis'] : ['embedded'];
}

/** A fresh database and Redis key prefix for one server, and how to remove them. */
export interface Services {
  env: Record<string, string>;
  dispose(): Promise<void>;
}

export async function servicesFor(): Promise<Services> {
  const name = `llmchat_e2e_${crypto.randomUUID().replaceAll('-', '').slice(0, 12)}`;
  const admin = new pg.Client({ connectionString: POSTGRES_URL });
  await admin.connect();
  await admin.query(`CREATE DATABASE ${name}`);
  await admin.end();
  const url = new URL(POSTGRES_URL);
  url.pathname = `/${name}`;
  return {
    env: {
      DATABASE_URL: url.toString(),
      REDIS_URL,
      REDIS_KEY_PREFIX: `${name}:`,
      JWT_SECRET: 'browser-test-jwt-secret-long-enough-0123456789',
      SECRETS_KEY: 'browser-test-secrets-key-long-enough-0123456789',
      MOCK_UPSTREAM: 'true',
      // Instances on one database share the demo agent, whose endpoint is the simulated upstream of whichever
      // instance wrote it last; each instance's address guard allows only its own, so loopback is allowed here.
      UPSTREAM_ALLOWED_CIDRS: '127.0.0.0/8',
    },
    async dispose() {
      const cleanup = new pg.Client({ connectionString: POSTGRES_URL });
      await cleanup.connect();
      await cleanup.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
      await cleanup.end();
    },
  };
}

export interface RunningServer {
  url: string;
  /** The server's output so far, for failure messages. */
  output(): string;
  stop(): Promise<void>;
}

async function until<T>(what: string, probe: () => Promise<T | undefined>, limitMs: number): Promise<T> {
  const deadline = Date.now() + limitMs;
  for (;;) {
    const value = await probe().catch(() => undefined);
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`gave up waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

/**
 * A loopback port below 32768 that is free now: ports from 32768 up are the
 * kernel's for outgoing connections (a random pick there found one in use),
 * and a pick below can still be some other listener's, so it is tried first.
 */
async function freeLowPort(): Promise<number> {
  for (let tries = 0; tries < 50; tries++) {
    const port = 20_000 + Math.floor(Math.random() * 12_768);
    const free = await new Promise<boolean>((resolve) => {
      const probe = net.createServer();
      probe.once('error', () => resolve(false));
      probe.listen(port, '127.0.0.1', () => probe.close(() => resolve(true)));
    });
    if (free) return port;
  }
  throw new Error('no free loopback port between 20000 and 32767');
}

/** Starts one server; with `shared`, on services another server uses too (a cluster), which the caller disposes. */
export async function startServer(env: Record<string, string> = {}, backend: Backend = 'embedded', shared?: Services): Promise<RunningServer> {
  if (!fs.existsSync(mainJs)) throw new Error(`${mainJs} is missing: run npm run build first`);
  if (!fs.existsSync(path.join(repoRoot, 'web/dist/index.html'))) throw new Error('web/dist is missing: run npm run build first');
  const own = backend === 'postgres+redis' && !shared ? await servicesFor() : undefined;
  const services = shared ?? own;
  const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'llmchat-e2e-'));
  const port = await freeLowPort();
  let output = '';
  const child: ChildProcess = spawn(process.execPath, [mainJs], {
    env: {
      PATH: process.env.PATH,
      DATA_DIR: dataDir,
      HOST: '127.0.0.1',
      PORT: String(port),
      MOCK_UPSTREAM_PORT: '0',
      ADMIN_PASSWORD,
      LOG_LEVEL: 'warn',
      CHAT_RATE_LIMIT_PER_MINUTE: '0',
      LOGIN_RATE_LIMIT_PER_MINUTE: '0',
      ...services?.env,
      ...env,
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  child.stdout?.on('data', (d: Buffer) => (output += d.toString()));
  child.stderr?.on('data', (d: Buffer) => (output += d.toString()));
  const url = `http://127.0.0.1:${port}`;
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  try {
    await until('the server to be ready', async () => ((await fetch(`${url}/health/ready`)).ok ? true : undefined), 60_000);
  } catch (err) {
    child.kill('SIGKILL');
    await own?.dispose();
    throw new Error(`${(err as Error).message}\n${output}`, { cause: err });
  }
  return {
    url,
    output: () => output,
    async stop() {
      if (child.exitCode === null) {
        child.kill('SIGTERM');
        await exited;
      }
      fs.rmSync(dataDir, { recursive: true, force: true });
      await own?.dispose();
    },
  };
}

/** Calls the API directly (setting the stage for a journey, or checking what the server stored). */
export async function apiCall<T>(base: string, token: string | undefined, method: string, url: string, body?: unknown): Promise<T> {
  const res = await fetch(`${base}${url}`, {
    method,
    headers: { ...(token ? { authorization: `Bearer ${token}` } : {}), ...(body === undefined ? {} : { 'content-type': 'application/json' }) },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await res.text();
  if (!res.ok) throw new Error(`${method} ${url}: ${res.status} ${text}`);
  const json = JSON.parse(text) as { data?: T } & T;
  return json.data ?? json;
}

export async function apiLogin(base: string, username: string, password: string): Promise<string> {
  return (await apiCall<{ token: string }>(base, undefined, 'POST', '/api/auth/login', { username, password })).token;
}

export async function createUser(base: string, adminToken: string, username: string, password: string, role: 'user' | 'admin' = 'user'): Promise<void> {
  await apiCall(base, adminToken, 'POST', '/api/admin/users', { username, password, role });
}

export async function launchBrowser(): Promise<Browser> {
  if (!fs.existsSync(CHROMIUM)) throw new Error(`Chromium is not at ${CHROMIUM}: install Debian's chromium (apt-get install chromium) or set CHROMIUM_PATH`);
  return chromium.launch({ executablePath: CHROMIUM, headless: true, args: ['--headless', '--no-sandbox', '--disable-gpu'] });
}

export async function newContext(browser: Browser, base: string, options: { width?: number; height?: number; locale?: string; colorScheme?: 'light' | 'dark' } = {}): Promise<BrowserContext> {
  const context = await browser.newContext({
    baseURL: base,
    viewport: { width: options.width ?? 1280, height: options.height ?? 800 },
    locale: options.locale ?? 'en-US',
    colorScheme: options.colorScheme ?? 'light',
  });
  await context.grantPermissions(['clipboard-read', 'clipboard-write'], { origin: base });
  return context;
}

export async function screenshot(page: Page, name: string): Promise<string> {
  fs.mkdirSync(SCREENSHOT_DIR, { recursive: true });
  const file = path.join(SCREENSHOT_DIR, `${name}.png`);
  await page.screenshot({ path: file, fullPage: false });
  return file;
}

/** axe-core on the page as it is: the serious and critical violations, described for a failure message. */
export async function seriousViolations(page: Page): Promise<string[]> {
  const result = await new AxeBuilder({ page }).withTags(['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa', 'best-practice']).analyze();
  return result.violations
    .filter((v) => v.impact === 'serious' || v.impact === 'critical')
    .map((v) => `${v.id} (${v.impact}): ${v.help} — ${v.nodes.map((n) => n.target.join(' ')).slice(0, 3).join(' | ')}`);
}

export async function signIn(page: Page, username: string, password: string): Promise<void> {
  await page.goto('/login');
  await page.locator('#username').fill(username);
  await page.locator('#password').fill(password);
  await page.locator('form button[type=submit]').click();
  await page.locator('#chat-input').waitFor();
}

/**
 * A TCP proxy in front of the server, standing in for a network path that
 * can break: `dropAll()` cuts every open connection, as a lost Wi-Fi or a
 * restarted load balancer would. New connections go through again.
 */
export async function startProxy(target: string): Promise<{ url: string; dropAll(): number; retarget(url: string): void; connectionsTo(url: string): number; close(): Promise<void> }> {
  let { hostname, port } = new URL(target);
  const sockets = new Set<net.Socket>();
  const opened = new Map<string, number>();
  const proxy = net.createServer((client) => {
    opened.set(port, (opened.get(port) ?? 0) + 1);
    const upstream = net.connect(Number(port), hostname);
    for (const s of [client, upstream]) {
      sockets.add(s);
      s.on('close', () => sockets.delete(s));
      s.on('error', () => s.destroy());
    }
    client.pipe(upstream);
    upstream.pipe(client);
    client.on('close', () => upstream.destroy());
    upstream.on('close', () => client.destroy());
  });
  await new Promise<void>((resolve) => proxy.listen(0, '127.0.0.1', resolve));
  const address = proxy.address() as net.AddressInfo;
  return {
    url: `http://127.0.0.1:${address.port}`,
    /** Connections opened to the server at `url` so far. */
    connectionsTo: (url: string) => opened.get(new URL(url).port) ?? 0,
    /** New connections go to another server from now on (a load balancer moving the client). */
    retarget(url: string) {
      ({ hostname, port } = new URL(url));
    },
    dropAll() {
      const n = sockets.size;
      for (const s of sockets) s.destroy();
      return n;
    },
    close: () =>
      new Promise<void>((resolve) => {
        for (const s of sockets) s.destroy();
        proxy.close(() => resolve());
      }),
  };
}

/**
 * What makes the page wider than the window (a phone then scrolls the whole
 * interface sideways): the document itself, and any element that scrolls
 * sideways without being meant to (code blocks and tables are). Empty when
 * nothing does.
 */
export async function horizontalOverflow(page: Page): Promise<string[]> {
  return page.evaluate(() => {
    const root = document.documentElement;
    const found: string[] = [];
    const name = (el: Element) => `${el.tagName.toLowerCase()}${el.id ? `#${el.id}` : ''}${typeof el.className === 'string' && el.className ? `.${el.className.trim().split(/\s+/).join('.')}` : ''}`;
    if (root.scrollWidth > root.clientWidth) {
      // Name the elements that reach past the window's right edge, outermost first, for whoever reads the failure.
      const clipped = (el: Element) => el.parentElement?.closest('pre, .table-wrap, [data-scrolls-sideways]') !== null;
      const past = Array.from(document.body.querySelectorAll('*')).filter((el) => el.getBoundingClientRect().right > root.clientWidth + 1 && !clipped(el));
      found.push(`the document is ${root.scrollWidth} px wide in a ${root.clientWidth} px window; past the edge: ${past.slice(0, 4).map(name).join(', ')}`);
    }
    for (const el of Array.from(document.body.querySelectorAll('*'))) {
      const overflowX = getComputedStyle(el).overflowX;
      if (overflowX !== 'auto' && overflowX !== 'scroll') continue;
      if (el.closest('pre, .table-wrap, [data-scrolls-sideways]')) continue;
      if (el.scrollWidth <= el.clientWidth + 1) continue;
      const edge = el.getBoundingClientRect().right;
      const past = Array.from(el.querySelectorAll('*')).filter((inner) => inner.getBoundingClientRect().right > edge + 1 && inner.parentElement?.closest('pre, .table-wrap, [data-scrolls-sideways]') === null);
      found.push(`${name(el)} scrolls sideways: ${el.scrollWidth} px of content in ${el.clientWidth} px; too wide: ${past.slice(0, 4).map(name).join(', ')}`);
    }
    return found;
  });
}

/** The layouts issue 18's journeys run in: English and Chinese at 1280 px and 375 px, each with its dictionary. */
export const LAYOUTS = [
  ['en-US', 1280, en],
  ['en-US', 375, en],
  ['zh-CN', 1280, zhCN],
  ['zh-CN', 375, zhCN],
] as const;

/** In an afterEach: a screenshot of the page the failed test left, named after the test. */
export async function screenshotIfFailed(ctx: TestContext, page: Page | undefined): Promise<void> {
  if (ctx.task.result?.state === 'fail' && page) await screenshot(page, `failed-${ctx.task.name.slice(0, 50).replace(/\W+/g, '-')}`).catch(() => undefined);
}

/** In an afterAll: closes the journey's browser contexts, the browser and the server, whichever were started. */
export async function closeAll(contexts: readonly BrowserContext[], browser: Browser | undefined, server: RunningServer | undefined): Promise<void> {
  for (const c of contexts) await c.close().catch(() => undefined);
  await browser?.close();
  await server?.stop();
}

/** Another agent on the server's simulated upstream, beside the demo agent (an OpenAI-compatible endpoint of its own key and model). */
export async function simulatedAgent(base: string, adminToken: string, agent: { id: string; name: string; description: string; model: string } & Record<string, unknown>): Promise<void> {
  const demo = await apiCall<{ endpoint: string }>(base, adminToken, 'GET', '/api/agents/demo');
  await apiCall(base, adminToken, 'POST', '/api/agents', { provider: 'openai', endpoint: `${new URL(demo.endpoint).origin}/v1/chat/completions`, apiKey: `${agent.id}-key`, ...agent });
}
