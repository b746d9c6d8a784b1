import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';
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
    const port = 20_000 + Math.floor(Math.random() * 20_000);
    child = spawn(process.execPath, [mainJs], {
      env: { PATH: process.env.PATH, DATA_DIR: dataDir, PORT: String(port), HOST: '127.0.0.1', MOCK_UPSTREAM_PORT: '0', LOG_LEVEL: 'info' },
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
  });

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
});
