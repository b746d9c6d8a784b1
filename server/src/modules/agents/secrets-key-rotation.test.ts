import { spawn } from 'node:child_process';
import crypto from 'node:crypto';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { FastifyInstance } from 'fastify';
import pino from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createMockUpstream, type MockUpstream } from '../../../../tools/src/mock-upstream/index.js';
import { buildApp } from '../../app.js';
import { bearer, buildTestApp, login, testConfig, type TestApp } from '../../test/app.js';
import { backendNames } from '../../test/backends.js';
import { createSecretBox, deriveKey, secretsKeyId } from './secret-box.js';
import { rotateStoredSecrets } from './secrets-key-rotation.js';

/**
 * SECRETS_KEY rotation against running apps: instances on the new key with
 * the old one as SECRETS_KEY_PREVIOUS keep calling upstream, the rotation
 * re-encrypts every stored key (the real `rotate-secrets-key` command on
 * PostgreSQL), and an instance with only the new key then still sends each
 * agent's own key upstream.
 */

const here = path.dirname(fileURLToPath(import.meta.url));
const CLI = path.resolve(here, '../../rotate-secrets-key-cli.ts');
const OLD_KEY = testConfig().secretsKey ?? '';
const NEW_KEY = 'rotated-secrets-key-that-is-long-enough-0123456789';
const UPSTREAM_KEY = 'sk-rotation-primary-key';
const LEGACY_KEY = 'sk-rotation-legacy-v1-key';

/** What the release before key ids wrote. */
function sealV1(secretsKey: string, plain: string): string {
  const iv = crypto.randomBytes(12);
  const cipher = crypto.createCipheriv('aes-256-gcm', deriveKey(secretsKey), iv, { authTagLength: 16 });
  const data = Buffer.concat([cipher.update(plain, 'utf8'), cipher.final()]);
  return ['v1', iv.toString('base64url'), cipher.getAuthTag().toString('base64url'), data.toString('base64url')].join(':');
}

/** A loopback proxy in front of the mock upstream that remembers the Authorization header of each request. */
async function capturingUpstream(target: string): Promise<{ url: string; seen: string[]; close(): Promise<void> }> {
  const seen: string[] = [];
  const to = new URL(target);
  const server = http.createServer((req, res) => {
    seen.push(String(req.headers.authorization ?? ''));
    const upstream = http.request({ host: to.hostname, port: to.port, method: req.method, path: req.url, headers: req.headers }, (answer) => {
      res.writeHead(answer.statusCode ?? 502, answer.headers);
      answer.pipe(res);
    });
    upstream.on('error', () => res.destroy());
    req.pipe(upstream);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, seen, close: () => new Promise((resolve) => server.close(() => resolve())) };
}

function runCli(env: Record<string, string>): Promise<{ code: number | null; output: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['--import', 'tsx', CLI], { env: { PATH: process.env.PATH, LOG_LEVEL: 'silent', ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
    let output = '';
    child.stdout.on('data', (d: Buffer) => (output += d.toString()));
    child.stderr.on('data', (d: Buffer) => (output += d.toString()));
    child.on('error', reject);
    child.on('exit', (code) => resolve({ code, output }));
  });
}

describe.each(await backendNames())('rotating SECRETS_KEY on %s', (backendName) => {
  let t: TestApp;
  let mock: MockUpstream;
  let upstream: Awaited<ReturnType<typeof capturingUpstream>>;
  let adminToken: string;
  const others: FastifyInstance[] = [];

  /** Another instance over the same data, with its own secrets. */
  async function instance(env: Record<string, string>): Promise<FastifyInstance> {
    const backend = t.backend;
    const app =
      backend.name === 'pglite+memory'
        ? await buildApp({ config: testConfig(env), database: backend.database, state: backend.state, logger: pino({ level: 'silent' }), logRequests: false })
        : await buildApp({ config: testConfig({ DATABASE_URL: backend.databaseUrl ?? '', REDIS_URL: backend.redisUrl ?? '', REDIS_KEY_PREFIX: backend.redisPrefix ?? '', ...env }), logger: pino({ level: 'silent' }), logRequests: false });
    others.push(app);
    return app;
  }

  async function validates(app: FastifyInstance, agentId: string, expectedKey: string): Promise<void> {
    const from = upstream.seen.length;
    const res = await app.inject({ method: 'POST', url: `/api/agents/${agentId}/validate`, headers: bearer(await login(app)) });
    expect(res.statusCode, res.body).toBe(200);
    expect(res.json<{ data: { ok: boolean } }>().data.ok, res.body).toBe(true);
    expect(upstream.seen.slice(from)).toContain(`Bearer ${expectedKey}`);
  }

  async function storedValues(): Promise<string[]> {
    const rows = await t.backend.database.db.selectFrom('agent_endpoints').select('api_key_encrypted').where('api_key_encrypted', 'is not', null).orderBy('agent_id').execute();
    return rows.map((r) => r.api_key_encrypted ?? '');
  }

  beforeAll(async () => {
    mock = await createMockUpstream({ port: 0, host: '127.0.0.1', defaultChunks: 2, defaultIntervalMs: 0 });
    upstream = await capturingUpstream(mock.url);
    t = await buildTestApp(backendName);
    adminToken = await login(t.app);
    for (const [id, apiKey] of [['rotating', UPSTREAM_KEY], ['legacy', LEGACY_KEY]] as const) {
      const res = await t.app.inject({
        method: 'POST',
        url: '/api/agents',
        headers: bearer(adminToken),
        payload: { id, name: id, provider: 'openai', endpoint: `${upstream.url}/v1/chat/completions`, apiKey, model: 'mock-model' },
      });
      expect(res.statusCode, res.body).toBe(201);
    }
    // One value as the release before key ids sealed it.
    await t.backend.database.db.updateTable('agent_endpoints').set({ api_key_encrypted: sealV1(OLD_KEY, LEGACY_KEY) }).where('agent_id', '=', 'legacy').execute();
  });
  afterAll(async () => {
    for (const app of others.splice(0)) await app.close();
    await t.close();
    await upstream.close();
    await mock.close();
  });

  it('keeps calling upstream through the rotation, re-encrypts every stored key once, then works with the new key alone', async () => {
    // 1. Every instance restarts with the new key and the old one as previous: nothing breaks.
    const during = await instance({ SECRETS_KEY: NEW_KEY, SECRETS_KEY_PREVIOUS: OLD_KEY });
    await validates(during, 'rotating', UPSTREAM_KEY);
    await validates(during, 'legacy', LEGACY_KEY);

    // 2. The rotation re-encrypts both values with the new key (the real command on PostgreSQL).
    if (t.backend.name === 'postgres+redis') {
      const env = { DATABASE_URL: t.backend.databaseUrl ?? '', SECRETS_KEY: NEW_KEY, SECRETS_KEY_PREVIOUS: OLD_KEY, JWT_SECRET: testConfig().jwtSecret ?? '' };
      const first = await runCli(env);
      expect(first.code, first.output).toBe(0);
      expect(first.output).toContain('re-encrypted 2, already current 0, unreadable 0');
      expect(first.output).not.toContain(OLD_KEY);
      expect(first.output).not.toContain(NEW_KEY);
      const again = await runCli(env);
      expect(again.output).toContain('re-encrypted 0, already current 2, unreadable 0');
      // Without the previous key a value it cannot open is reported, not destroyed, and the exit code says so.
      const stray = sealV1('some-lost-secrets-key-that-is-long-enough-0000', 'sk-lost');
      await t.backend.database.db.updateTable('agent_endpoints').set({ api_key_encrypted: stray }).where('agent_id', '=', 'legacy').execute();
      const lost = await runCli({ ...env, SECRETS_KEY_PREVIOUS: '' });
      expect(lost.code).toBe(2);
      expect(lost.output).toContain('unreadable 1');
      expect((await storedValues()).includes(stray)).toBe(true);
      await t.backend.database.db.updateTable('agent_endpoints').set({ api_key_encrypted: createSecretBox(NEW_KEY).encrypt(LEGACY_KEY) }).where('agent_id', '=', 'legacy').execute();
    } else {
      expect(await rotateStoredSecrets(t.backend.database.db, createSecretBox(NEW_KEY, OLD_KEY))).toEqual({ resealed: 2, current: 0, unreadable: [] });
      expect(await rotateStoredSecrets(t.backend.database.db, createSecretBox(NEW_KEY, OLD_KEY))).toEqual({ resealed: 0, current: 2, unreadable: [] });
    }
    const values = await storedValues();
    expect(values).toHaveLength(2);
    for (const value of values) {
      expect(value.split(':').slice(0, 2)).toEqual(['v2', secretsKeyId(NEW_KEY)]);
      expect(value).not.toContain(UPSTREAM_KEY);
    }

    // 3. The previous key is retired: an instance with only the new key still sends each agent's own key.
    const after = await instance({ SECRETS_KEY: NEW_KEY });
    await validates(after, 'rotating', UPSTREAM_KEY);
    await validates(after, 'legacy', LEGACY_KEY);
    // A user's chat turn too.
    const from = upstream.seen.length;
    const turn = await after.inject({ method: 'POST', url: '/api/chat/completions', headers: bearer(await login(after)), payload: { agentId: 'rotating', stream: false, messages: [{ role: 'user', content: 'after the rotation' }] } });
    expect(turn.statusCode, turn.body).toBe(200);
    expect(upstream.seen.slice(from)).toEqual([`Bearer ${UPSTREAM_KEY}`]);
    // And an instance left on the old key alone can no longer read them: the old key is really out of use.
    const stale = await instance({ SECRETS_KEY: OLD_KEY });
    const res = await stale.inject({ method: 'POST', url: '/api/agents/rotating/validate', headers: bearer(await login(stale)) });
    expect(res.json<{ data: { ok: boolean } }>().data.ok).toBe(false);
  });
});
