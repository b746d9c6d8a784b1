import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createMockUpstream, type MockUpstream } from '../../tools/src/mock-upstream/index.js';
import { composeAnswer } from '../../tools/src/mock-upstream/answer.js';
import { backendNames, createBackend, type Backend } from './test/backends.js';
import { eventually, readSse, type ParsedEvent } from './test/sse.js';

/**
 * Real server processes on one PostgreSQL and one Redis: what one instance
 * starts, another can stop, and finishes when the first one dies (kill -9).
 * Runs the built server (npm test builds before it tests).
 */
const here = path.dirname(fileURLToPath(import.meta.url));
const mainJs = path.resolve(here, '../dist/main.js');
const withServices = (await backendNames()).includes('postgres+redis');
const PASSWORD = 'instances-admin-password-1';

interface Instance {
  name: string;
  base: string;
  child: ChildProcess;
  output: () => string;
}

describe.skipIf(!fs.existsSync(mainJs) || !withServices)('several server processes on one PostgreSQL and Redis', () => {
  let backend: Backend;
  let mock: MockUpstream;
  const instances: Instance[] = [];
  let token = '';

  function startInstance(name: string, extraEnv: Record<string, string> = {}): Instance {
    // Below 32768: ports from there up are the kernel's for outgoing connections, and one in use there fails the listen.
    const port = 20_000 + Math.floor(Math.random() * 12_000);
    let output = '';
    const child = spawn(process.execPath, [mainJs], {
      env: {
        PATH: process.env.PATH,
        PORT: String(port),
        HOST: '127.0.0.1',
        DATABASE_URL: backend.databaseUrl,
        REDIS_URL: backend.redisUrl,
        REDIS_KEY_PREFIX: backend.redisPrefix,
        JWT_SECRET: 'instances-test-jwt-secret-0123456789abcdef',
        SECRETS_KEY: 'instances-test-secrets-key-0123456789abcdef',
        ADMIN_USERNAME: 'admin',
        ADMIN_PASSWORD: PASSWORD,
        LOG_LEVEL: 'warn',
        CHAT_RATE_LIMIT_PER_MINUTE: '0',
        INSTANCE_HEARTBEAT_TTL_SECONDS: '2',
        TAKEOVER_SCAN_INTERVAL_MS: '300',
        CHECKPOINT_INTERVAL_MS: '200',
        // The mock upstream listens on loopback, which the outbound policy refuses unless allowed.
        UPSTREAM_ALLOWED_CIDRS: '127.0.0.0/8',
        ...extraEnv,
      },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    child.stdout?.on('data', (d: Buffer) => (output += d.toString()));
    child.stderr?.on('data', (d: Buffer) => (output += d.toString()));
    const instance = { name, base: `http://127.0.0.1:${port}`, child, output: () => output };
    instances.push(instance);
    return instance;
  }

  const ready = (instance: Instance) =>
    eventually(async () => {
      if (instance.child.exitCode !== null) throw new Error(`${instance.name} exited with ${instance.child.exitCode}: ${instance.output()}`);
      return (await fetch(`${instance.base}/health/ready`).catch(() => undefined))?.ok;
    }, `${instance.name} to be ready`, 60_000);

  beforeAll(async () => {
    backend = await createBackend('postgres+redis');
    mock = await createMockUpstream({ port: 0, defaultChunks: 4, defaultIntervalMs: 1 });
    const a = startInstance('A');
    await ready(a);
    const b = startInstance('B');
    await ready(b);
    const login = await fetch(`${a.base}/api/auth/login`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ username: 'admin', password: PASSWORD }) });
    token = ((await login.json()) as { token: string }).token;
    const created = await fetch(`${a.base}/api/agents`, {
      method: 'POST',
      headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
      body: JSON.stringify({ id: 'slow', name: 'Slow', provider: 'openai', endpoint: `${mock.url}/v1/chat/completions`, apiKey: 'k', model: 'mock-model' }),
    });
    expect(created.status).toBe(201);
  });
  afterAll(async () => {
    for (const instance of instances) {
      if (instance.child.exitCode === null && instance.child.signalCode === null) {
        const exited = new Promise((resolve) => instance.child.once('exit', resolve));
        instance.child.kill('SIGKILL');
        await exited;
      }
    }
    await mock.close();
    await backend.dispose();
  });

  const headers = () => ({ authorization: `Bearer ${token}`, 'content-type': 'application/json' });
  const ask = (instance: Instance, content: string) =>
    fetch(`${instance.base}/api/chat/completions`, { method: 'POST', headers: headers(), body: JSON.stringify({ agentId: 'slow', stream: true, messages: [{ role: 'user', content }] }) });

  /** The text a client shows: chunks in order, dropping what came before a `reset`. */
  function shownText(events: ParsedEvent[]): string {
    let text = '';
    for (const e of events) {
      if (e.event === 'reset') text = '';
      if (e.event === 'chunk') text += (e.json as { content: string }).content;
    }
    return text;
  }

  it('stops, from one instance, an answer running on another', async () => {
    const [a, b] = instances;
    if (!a || !b) throw new Error('instances missing');
    const response = await ask(a, 'stop me from elsewhere [[mock chunks=200 interval=50]]');
    let messageId = '';
    let stopSent: Promise<number> | undefined;
    const events = await readSse(response.body as ReadableStream<Uint8Array>, (event) => {
      if (event.event === 'start') messageId = (event.json as { messageId: string }).messageId;
      if (event.event === 'chunk' && messageId && !stopSent) {
        stopSent = fetch(`${b.base}/api/chat/stop`, { method: 'POST', headers: headers(), body: JSON.stringify({ messageId }) }).then((r) => r.status);
      }
    });
    expect(await stopSent).toBe(200);
    const end = events.at(-1);
    expect(end?.event).toBe('end');
    expect((end?.json as { status: string }).status).toBe('stopped');
    expect(events.filter((e) => e.event === 'chunk').length).toBeLessThan(200);
  });

  it('finishes on another instance an answer whose instance was killed mid-answer; the client reconnects there and the answer is stored once', async () => {
    const [a, b] = instances;
    if (!a || !b) throw new Error('instances missing');
    const response = await ask(a, 'outlive your instance [[mock chunks=40 interval=50]]');
    let messageId = '';
    let chunks = 0;
    const before = await readSse(response.body as ReadableStream<Uint8Array>, (event) => {
      if (event.event === 'start') messageId = (event.json as { messageId: string }).messageId;
      if (event.event === 'chunk') chunks++;
      // Partway through the answer, the serving instance dies without any shutdown work.
      if (chunks === 5) {
        a.child.kill('SIGKILL');
        return false;
      }
    }).catch(() => [] as ParsedEvent[]);
    expect(messageId).not.toBe('');
    const lastSeen = before.at(-1)?.id ?? '';
    expect(lastSeen).toMatch(new RegExp(`^${messageId}:\\d+$`));

    // The client reconnects, as EventSource does, to whichever instance answers: B.
    const resumed = await fetch(`${b.base}/api/chat/stream?messageId=${messageId}`, { headers: { authorization: `Bearer ${token}`, 'last-event-id': lastSeen } });
    expect(resumed.status).toBe(200);
    const after = await readSse(resumed.body as ReadableStream<Uint8Array>, () => undefined);
    const all = [...before, ...after];

    // No event twice, none out of order.
    const ids = all.map((e) => Number(e.id?.split(':')[1]));
    expect(new Set(ids).size).toBe(ids.length);
    expect([...ids].sort((x, y) => x - y)).toEqual(ids);
    // B took the answer over (reset, then the text the client had) and continued it from there, not from the start.
    expect(after.some((e) => e.event === 'reset'), JSON.stringify(after.map((e) => [e.id, e.event])) + b.output().slice(-2000)).toBe(true);
    const takeoverCall = mock.requests.filter((r) => JSON.stringify(r.body).includes('outlive your instance')).at(-1)?.body as { messages: { role: string; content: string }[] };
    expect(takeoverCall.messages.at(-1)?.role).toBe('assistant');
    expect(takeoverCall.messages.at(-1)?.content).toMatch(/^Simulated answer to: out/);
    const end = all.at(-1);
    expect(end?.event).toBe('end');
    expect((end?.json as { status: string }).status).toBe('complete');

    const db = backend.database.db;
    const stored = await db.selectFrom('messages').select(['id', 'status', 'content', 'owner_instance']).where('role', '=', 'assistant').where('id', '=', messageId).execute();
    expect(stored).toHaveLength(1);
    expect(stored[0]?.status).toBe('complete');
    expect(stored[0]?.content).toBe(shownText(all));
    // Each word once: the text the client had, joined with the continuation.
    expect(stored[0]?.content).toBe(composeAnswer('outlive your instance', false, 40));
    // Nothing is left streaming anywhere.
    expect(await db.selectFrom('messages').select('id').where('status', '=', 'streaming').execute()).toEqual([]);
    expect(b.output()).toContain('took over an answer whose instance is gone');
  });

  it('on SIGTERM, lets an answer run until the drain deadline, then hands it over; the client reconnects and gets it complete', async () => {
    const b = instances[1];
    if (!b) throw new Error('instance B missing');
    const c = startInstance('C', { DRAIN_TIMEOUT_MS: '300' });
    await ready(c);
    const response = await ask(c, 'hand me over [[mock chunks=40 interval=50]]');
    let messageId = '';
    let chunks = 0;
    const exited = new Promise<number | null>((resolve) => c.child.once('exit', (code) => resolve(code)));
    const before = await readSse(response.body as ReadableStream<Uint8Array>, (event) => {
      if (event.event === 'start') messageId = (event.json as { messageId: string }).messageId;
      if (event.event === 'chunk' && ++chunks === 3) c.child.kill('SIGTERM');
    }).catch(() => [] as ParsedEvent[]);
    // C ended the stream without an `end`: the answer is not over, it moved.
    expect(before.some((e) => e.event === 'end')).toBe(false);
    expect(await exited).toBe(0);
    expect(c.output()).toContain('handing the running answers over');

    const resumed = await fetch(`${b.base}/api/chat/stream?messageId=${messageId}`, { headers: { authorization: `Bearer ${token}`, 'last-event-id': before.at(-1)?.id ?? '' } });
    const after = await readSse(resumed.body as ReadableStream<Uint8Array>, () => undefined);
    const all = [...before, ...after];
    const ids = all.map((e) => Number(e.id?.split(':')[1]));
    expect(new Set(ids).size).toBe(ids.length);
    expect([...ids].sort((x, y) => x - y)).toEqual(ids);
    expect((all.at(-1)?.json as { status: string }).status).toBe('complete');
    const stored = await backend.database.db.selectFrom('messages').select(['status', 'content']).where('id', '=', messageId).execute();
    expect(stored).toEqual([{ status: 'complete', content: shownText(all) }]);
  });
});
