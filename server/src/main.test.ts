import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { withChildren } from '../../tools/src/bench/processes.js';
import { createMockUpstream, type MockUpstream } from '../../tools/src/mock-upstream/index.js';
import { backendNames, createBackend, type Backend } from './test/backends.js';
import { sampleSum } from './test/prometheus-text.js';
import { eventually, parseSse } from './test/sse.js';

/**
 * The README's start command, as a process: no DATABASE_URL, no REDIS_URL.
 * Runs the built server (npm test builds before it tests).
 */
const here = path.dirname(fileURLToPath(import.meta.url));
const mainJs = path.resolve(here, '../dist/main.js');

describe.skipIf(!fs.existsSync(mainJs))('the server process on embedded defaults', () => {
  const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'llmchat-main-'));
  let child: ChildProcess | undefined;
  let output = '';

  afterAll(async () => {
    if (child && child.exitCode === null) {
      const exited = new Promise((resolve) => child?.once('exit', resolve));
      child.kill('SIGTERM');
      await exited;
    }
    fs.rmSync(dataDir, { recursive: true, force: true });
  });

  it('starts with no services, seeds the simulated demo agent and answers a chat; the admin password is in a file, not the log', async () => {
    // PORT and METRICS_PORT (PORT + 1) both below 32768.
    const port = 20_000 + Math.floor(Math.random() * 12_767);
    child = spawn(process.execPath, [mainJs], {
      env: { PATH: process.env.PATH, DATA_DIR: dataDir, PORT: String(port), METRICS_PORT: String(port + 1), HOST: '127.0.0.1', MOCK_UPSTREAM_PORT: '0', LOG_LEVEL: 'info' },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    child.stdout?.on('data', (d: Buffer) => (output += d.toString()));
    child.stderr?.on('data', (d: Buffer) => (output += d.toString()));
    const base = `http://127.0.0.1:${port}`;
    await eventually(async () => (await fetch(`${base}/health/ready`).catch(() => undefined))?.ok, 'the server to be ready', 60_000);

    const password = fs.readFileSync(path.join(dataDir, 'initial-admin-password'), 'utf8').trim();
    expect(password.length).toBeGreaterThanOrEqual(16);
    expect(output).not.toContain(password);

    const login = await fetch(`${base}/api/auth/login`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ username: 'admin', password }) });
    expect(login.status).toBe(200);
    const { token } = (await login.json()) as { token: string };
    const agents = (await (await fetch(`${base}/api/agents`, { headers: { authorization: `Bearer ${token}` } })).json()) as { data: { id: string; simulated: boolean }[] };
    expect(agents.data).toContainEqual(expect.objectContaining({ id: 'demo', simulated: true }));

    const chat = await fetch(`${base}/api/chat/completions`, {
      method: 'POST',
      headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
      body: JSON.stringify({ agentId: 'demo', stream: true, messages: [{ role: 'user', content: 'hello demo' }] }),
    });
    const events = parseSse(await chat.text());
    expect(events.at(-1)?.event).toBe('end');
    const text = events.filter((e) => e.event === 'chunk').map((e) => (e.json as { content: string }).content).join('');
    expect(text).toContain('Simulated answer to: hello demo');
    // METRICS_PORT: the turn is counted, on a port of its own, without sign-in.
    const metrics = await fetch(`http://127.0.0.1:${port + 1}/metrics`);
    expect(metrics.status).toBe(200);
    expect(sampleSum(await metrics.text(), 'llmchat_turns_total', { agent: 'demo', outcome: 'complete' })).toBe(1);

    // The simulated upstream is allowed on exactly its own origin: any other loopback port is refused.
    const demo = (await (await fetch(`${base}/api/agents/demo`, { headers: { authorization: `Bearer ${token}` } })).json()) as { data: { endpoint: string } };
    const mockPort = Number(new URL(demo.data.endpoint).port);
    const elsewhere = await fetch(`${base}/api/agents`, {
      method: 'POST',
      headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
      body: JSON.stringify({ id: 'next-door', name: 'next door', provider: 'openai', endpoint: `http://127.0.0.1:${mockPort + 1}/v1`, model: 'm' }),
    });
    expect(elsewhere.status).toBe(400);
    expect(((await elsewhere.json()) as { error: { code: string } }).error.code).toBe('UPSTREAM_ADDRESS_FORBIDDEN');
    // The start alone may take most of the readiness wait's 60 s on a loaded machine (PGlite, migrations).
  }, 90_000);

  it('stops cleanly on SIGTERM', async () => {
    const exited = new Promise<number | null>((resolve) => child?.once('exit', (code) => resolve(code)));
    child?.kill('SIGTERM');
    expect(await exited).toBe(0);
  });
});

describe('a bad configuration', () => {
  it.skipIf(!fs.existsSync(mainJs))('stops the process with a message naming the variable', async () => {
    const child = spawn(process.execPath, [mainJs], { env: { PATH: process.env.PATH, PORT: 'eighty', DATA_DIR: os.tmpdir() }, stdio: ['ignore', 'pipe', 'pipe'] });
    let stderr = '';
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    const code = await new Promise<number | null>((resolve) => child.once('exit', resolve));
    expect(code).toBe(78);
    expect(stderr).toContain('PORT must be an integer');
  });

  it.skipIf(!fs.existsSync(mainJs))('refuses to start with a weak ADMIN_PASSWORD, saying why, and never prints it', async () => {
    const child = spawn(process.execPath, [mainJs], { env: { PATH: process.env.PATH, ADMIN_PASSWORD: 'Password1234!', DATA_DIR: os.tmpdir() }, stdio: ['ignore', 'pipe', 'pipe'] });
    let stderr = '';
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    const code = await new Promise<number | null>((resolve) => child.once('exit', resolve));
    expect(code).toBe(78);
    expect(stderr).toContain('ADMIN_PASSWORD is too weak: it is one of the most commonly used passwords');
    expect(stderr).not.toContain('Password1234!');
  });

  it.skipIf(!fs.existsSync(mainJs))('refuses to start in production with an insecure refresh cookie unless forced', async () => {
    const child = spawn(process.execPath, [mainJs], {
      env: { PATH: process.env.PATH, NODE_ENV: 'production', COOKIE_SECURE: 'false', DATA_DIR: os.tmpdir(), PORT: '0' },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stderr = '';
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    const code = await new Promise<number | null>((resolve) => child.once('exit', resolve));
    expect(code).toBe(78);
    expect(stderr).toContain('COOKIE_SECURE is false with NODE_ENV=production');
  });
});

/** Pids of a process's direct children, from /proc (Linux). */
const childPids = (pid: number): number[] => withChildren(pid).slice(1);

const withServices = (await backendNames()).includes('postgres+redis');

describe.skipIf(!fs.existsSync(mainJs) || !withServices || process.platform !== 'linux')('WORKERS=2 on PostgreSQL and Redis', () => {
  let backend: Backend;
  let mock: MockUpstream;
  let child: ChildProcess | undefined;
  let output = '';
  const port = 20_000 + Math.floor(Math.random() * 12_768);
  const base = `http://127.0.0.1:${port}`;
  const password = 'workers-admin-password-1';
  let token = '';

  beforeAll(async () => {
    backend = await createBackend('postgres+redis');
    mock = await createMockUpstream({ port: 0, defaultChunks: 3, defaultIntervalMs: 1 });
  });
  afterAll(async () => {
    if (child && child.exitCode === null) {
      const exited = new Promise((resolve) => child?.once('exit', resolve));
      child.kill('SIGKILL');
      await exited;
    }
    await mock.close();
    await backend.dispose();
  });

  async function chat(text: string, overloadedRetries = 3): Promise<string> {
    const response = await fetch(`${base}/api/chat/completions`, {
      method: 'POST',
      headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
      body: JSON.stringify({ agentId: 'workers', stream: true, messages: [{ role: 'user', content: text }] }),
      // A connection nobody serves must fail the test, not hang it.
      signal: AbortSignal.timeout(10_000),
    });
    const body = await response.text();
    if (response.status === 503 && body.includes('"OVERLOADED"') && overloadedRetries > 0) {
      // A stalled event loop on a crowded machine sheds for a second; a client waits Retry-After and asks again.
      await new Promise((resolve) => setTimeout(resolve, Number(response.headers.get('retry-after') ?? 1) * 1000));
      return chat(text, overloadedRetries - 1);
    }
    // On a failure, what the server said and its recent log (a 503 OVERLOADED logs why it sheds).
    expect(response.status, `${body}\n${output.slice(-2000)}`).toBe(200);
    const events = parseSse(body);
    expect(events.at(-1)?.event, body).toBe('end');
    return events.filter((e) => e.event === 'chunk').map((e) => (e.json as { content: string }).content).join('');
  }

  it('forks two server processes that share the port and answer chats', async () => {
    child = spawn(process.execPath, [mainJs], {
      env: {
        PATH: process.env.PATH,
        PORT: String(port),
        HOST: '127.0.0.1',
        WORKERS: '2',
        DATABASE_URL: backend.databaseUrl,
        REDIS_URL: backend.redisUrl,
        REDIS_KEY_PREFIX: backend.redisPrefix,
        JWT_SECRET: 'workers-test-jwt-secret-0123456789abcdef',
        // The mock upstream listens on loopback, which the outbound policy refuses unless allowed.
        UPSTREAM_ALLOWED_CIDRS: '127.0.0.0/8',
        SECRETS_KEY: 'workers-test-secrets-key-0123456789abcdef',
        ADMIN_USERNAME: 'admin',
        ADMIN_PASSWORD: password,
        LOG_LEVEL: 'info',
      },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    child.stdout?.on('data', (d: Buffer) => (output += d.toString()));
    child.stderr?.on('data', (d: Buffer) => (output += d.toString()));
    const pid = child.pid ?? 0;
    await eventually(async () => childPids(pid).length === 2 && (await fetch(`${base}/health/ready`).catch(() => undefined))?.ok === true, 'two ready workers', 60_000);

    const login = await fetch(`${base}/api/auth/login`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ username: 'admin', password }) });
    expect(login.status).toBe(200);
    token = ((await login.json()) as { token: string }).token;
    const created = await fetch(`${base}/api/agents`, {
      method: 'POST',
      headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
      body: JSON.stringify({ id: 'workers', name: 'Workers', provider: 'openai', endpoint: `${mock.url}/v1/chat/completions`, apiKey: 'k', model: 'mock-model' }),
    });
    expect(created.status).toBe(201);
    // The agent was created on one worker; both must serve it (change notices over Redis).
    const answers = await Promise.all(Array.from({ length: 6 }, (_, i) => chat(`question ${i}`)));
    answers.forEach((text) => expect(text.length).toBeGreaterThan(0));
  });

  it('replaces a worker that dies, and keeps answering meanwhile', async () => {
    const pid = child?.pid ?? 0;
    const before = childPids(pid);
    const [victim] = before;
    expect(victim).toBeDefined();
    process.kill(victim ?? 0, 'SIGKILL');
    // Chats right as the worker dies: each is answered by the live worker. A connection the dead one
    // had taken, or a kept-alive one to it that the client has not yet seen closed, is reset, and the
    // client asks again after a moment, as a client does; none is left hanging (a timeout fails at once).
    const chatUntilAnswered = async (text: string, attempt = 1): Promise<string> =>
      chat(attempt === 1 ? text : `${text}, attempt ${attempt}`).catch(async (err: unknown) => {
        // fetch fails with a TypeError when the connection breaks; a wrong answer or a timeout fails the test.
        if (!(err instanceof TypeError) || attempt >= 4) throw err;
        await new Promise((resolve) => setTimeout(resolve, 200 * attempt));
        return chatUntilAnswered(text, attempt + 1);
      });
    const answers = await Promise.all(Array.from({ length: 8 }, (_, i) => chatUntilAnswered(`while one worker is gone ${i}`)));
    answers.forEach((text) => expect(text.length).toBeGreaterThan(0));
    await eventually(async () => {
      const now = childPids(pid);
      const replacement = now.find((p) => p !== victim && !before.includes(p));
      return now.length === 2 && replacement !== undefined && output.includes(`"pid":${replacement},`) && /"pid":\d+,[^\n]*LLMChat is listening/.test(output.slice(output.lastIndexOf('a server worker exited')));
    }, 'a replacement worker, listening', 60_000);
    expect(output).toContain('a server worker exited; starting another');
  });

  it('stops every worker and exits 0 on SIGTERM', async () => {
    const pid = child?.pid ?? 0;
    const exited = new Promise<number | null>((resolve) => child?.once('exit', (code) => resolve(code)));
    child?.kill('SIGTERM');
    const code = await exited;
    expect(code, output.slice(-3000)).toBe(0);
    expect(childPids(pid)).toEqual([]);
  });
});
