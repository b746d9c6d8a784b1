import type { FastifyInstance } from 'fastify';
import pino from 'pino';
import { buildApp, type BuildOptions } from '../app.js';
import { loadConfig, type Config } from '../config.js';
import { createBackend, type Backend } from './backends.js';

export const ADMIN_USERNAME = 'admin';
export const ADMIN_PASSWORD = 'admin-password-for-tests';

export interface TestApp {
  app: FastifyInstance;
  backend: Backend;
  config: Config;
  close(): Promise<void>;
}

/** The configuration every app-level test starts from, with `env` on top. */
export function testConfig(env: Record<string, string | undefined> = {}): Config {
  return loadConfig({
    NODE_ENV: 'test',
    LOG_LEVEL: 'silent',
    DATA_DIR: `/tmp/llmchat-test-${process.pid}`,
    JWT_SECRET: 'test-jwt-secret-that-is-long-enough-0123456789',
    SECRETS_KEY: 'test-secrets-key-that-is-long-enough-0123456789',
    ADMIN_USERNAME,
    ADMIN_PASSWORD,
    MOCK_UPSTREAM: 'false',
    CHAT_RATE_LIMIT_PER_MINUTE: '0',
    LOGIN_RATE_LIMIT_PER_MINUTE: '0',
    // Load shedding has its own tests with a fake pressure source; a slow CI machine must not shed the others.
    SHED_EVENT_LOOP_DELAY_MS: '0',
    SHED_HEAP_USED_PERCENT: '0',
    // Tests of the web app's serving name their own build; the rest answer API routes only.
    WEB_DIST_DIR: 'off',
    // The mock upstreams of app tests listen on loopback, which the outbound policy refuses by default.
    UPSTREAM_ALLOWED_CIDRS: '127.0.0.0/8,::1/128',
    ...env,
  });
}

/** Builds the whole app on a fresh backend, with a known first admin. */
export async function buildTestApp(backendName: Backend['name'], env: Record<string, string> = {}, options: Pick<BuildOptions, 'pressureSource' | 'logger' | 'logRequests'> = {}): Promise<TestApp> {
  const backend = await createBackend(backendName);
  const config = testConfig(env);
  const app = await buildApp({
    config,
    database: backend.database,
    state: backend.state,
    logger: pino({ level: 'silent' }),
    logRequests: false,
    ...options,
  });
  return {
    app,
    backend,
    config,
    async close() {
      await app.close();
      await backend.dispose();
    },
  };
}

/** Logs in through the API and returns the access token. */
export async function login(app: FastifyInstance, username = ADMIN_USERNAME, password = ADMIN_PASSWORD): Promise<string> {
  const res = await app.inject({ method: 'POST', url: '/api/auth/login', payload: { username, password } });
  if (res.statusCode !== 200) throw new Error(`login failed: ${res.statusCode} ${res.body}`);
  const body = res.json<{ token: string }>();
  return body.token;
}

/** Creates a user through the admin API and returns their access token. */
export async function createUserAndLogin(app: FastifyInstance, adminToken: string, username: string, password = 'user-password-123', role: 'user' | 'admin' = 'user'): Promise<{ token: string; userId: string }> {
  const res = await app.inject({
    method: 'POST',
    url: '/api/admin/users',
    headers: { authorization: `Bearer ${adminToken}` },
    payload: { username, password, role },
  });
  if (res.statusCode !== 201) throw new Error(`create user failed: ${res.statusCode} ${res.body}`);
  const userId = res.json<{ data: { id: string } }>().data.id;
  return { token: await login(app, username, password), userId };
}

export function bearer(token: string): { authorization: string } {
  return { authorization: `Bearer ${token}` };
}
