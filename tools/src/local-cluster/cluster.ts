/**
 * A whole LLMChat deployment on one machine, made of real processes on
 * loopback ports: a PostgreSQL and a Redis of its own, two mock upstreams
 * (an agent's primary endpoint and its fallback), several server instances
 * and the shipped nginx config in front. The drill and the rolling-restart
 * test break its pieces; it can put each one back.
 */

import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { freePort } from '../bench/processes.js';
import { llmchatInstance, type LlmchatInstance } from './instance.js';
import { startNginx, type NginxProxy } from './nginx.js';
import { startMockUpstreamProcess, startPostgres, startRedis, type DisposableService } from './services.js';

export interface ClusterOptions {
  instances: number;
  /** The mock's answer: chunk count and spacing. */
  chunks: number;
  intervalMs: number;
  /** Extra server environment (defaults are production's, but for rate limits and log level). */
  env?: Record<string, string>;
}

/** Agents the cluster creates: each has the clean fallback mock behind a primary that behaves as named. */
export const DRILL_AGENTS = {
  /** Primary answers well. */
  steady: '',
  /** Primary cuts the stream after 5 chunks. */
  cut: 'cutAfter=5',
  /** Primary stalls after 5 chunks (the agent's idle deadline is 1 s). */
  stall: 'stallAfter=5',
  /** Primary sends a chunk that is not JSON after 5 chunks. */
  malformed: 'malformedAfter=5',
  /** Primary refuses with 503 and Retry-After: 1. */
  refuse: 'status=503,retryAfter=1',
} as const;
export type DrillAgent = keyof typeof DRILL_AGENTS;

export interface LocalCluster {
  readonly postgres: DisposableService;
  readonly redis: DisposableService;
  readonly primary: DisposableService;
  readonly fallback: DisposableService;
  readonly instances: readonly LlmchatInstance[];
  readonly nginx: NginxProxy;
  /** A plain user's access token (valid for a day). */
  readonly token: string;
  /** Every instance answers /health/ready with every dependency up. */
  whole(): Promise<boolean>;
  dispose(): Promise<void>;
}

async function call(url: string, init: { method: string; token?: string; body?: unknown }): Promise<{ status: number; body: unknown }> {
  const response = await fetch(url, {
    method: init.method,
    headers: { ...(init.token ? { authorization: `Bearer ${init.token}` } : {}), ...(init.body === undefined ? {} : { 'content-type': 'application/json' }) },
    body: init.body === undefined ? undefined : JSON.stringify(init.body),
  });
  const text = await response.text();
  let body: unknown = text;
  try {
    body = JSON.parse(text);
  } catch {
    // Not JSON: kept as text for the error message.
  }
  return { status: response.status, body };
}

async function expectStatus(what: string, result: Promise<{ status: number; body: unknown }>, status: number): Promise<unknown> {
  const { status: got, body } = await result;
  if (got !== status) throw new Error(`${what}: HTTP ${got} ${JSON.stringify(body).slice(0, 300)}`);
  return body;
}

export async function startLocalCluster(options: ClusterOptions): Promise<LocalCluster> {
  const cleanup: (() => Promise<unknown>)[] = [];
  const dispose = async () => {
    for (const step of cleanup.reverse()) await step().catch(() => undefined);
  };
  try {
    const postgres = await startPostgres();
    cleanup.push(() => postgres.dispose());
    const redis = await startRedis();
    cleanup.push(() => redis.dispose());
    const primary = await startMockUpstreamProcess({ chunks: options.chunks, intervalMs: options.intervalMs });
    cleanup.push(() => primary.dispose());
    const fallback = await startMockUpstreamProcess({ chunks: options.chunks, intervalMs: options.intervalMs });
    cleanup.push(() => fallback.dispose());

    const dataDir = mkdtempSync(path.join(tmpdir(), 'llmchat-cluster-'));
    cleanup.push(async () => rmSync(dataDir, { recursive: true, force: true }));
    const adminPassword = randomBytes(18).toString('base64url');
    const env: NodeJS.ProcessEnv = {
      PATH: process.env.PATH,
      NODE_ENV: 'production',
      DATA_DIR: dataDir,
      DATABASE_URL: postgres.url,
      REDIS_URL: redis.url,
      JWT_SECRET: randomBytes(32).toString('base64url'),
      SECRETS_KEY: randomBytes(32).toString('base64url'),
      ADMIN_USERNAME: 'admin',
      ADMIN_PASSWORD: adminPassword,
      MOCK_UPSTREAM: 'false',
      LOG_LEVEL: 'warn',
      ACCESS_TOKEN_TTL: '86400',
      // The drill's load comes from one address and one user: limits would measure themselves.
      CHAT_RATE_LIMIT_PER_MINUTE: '0',
      LOGIN_RATE_LIMIT_PER_MINUTE: '0',
      // Behind nginx on the same host.
      TRUST_PROXY: '1',
      ...options.env,
    };
    // freePort() frees the port it finds, so another process (or another call) may take it before an
    // instance listens there: an instance that finds its port taken is started again on another one.
    // Once nginx knows the ports they stay fixed (restarts reuse them).
    const taken = new Set([primary.port, fallback.port, postgres.port, redis.port]);
    const instances: LlmchatInstance[] = [];
    cleanup.push(async () => Promise.all(instances.map((instance) => instance.crash())));
    const startInstance = async (i: number): Promise<LlmchatInstance> => {
      for (let attempt = 1; ; attempt++) {
        let port = await freePort();
        while (taken.has(port)) port = await freePort();
        taken.add(port);
        const instance = llmchatInstance({ name: `instance-${String.fromCharCode(65 + i)}`, port, env });
        try {
          await instance.start();
          return instance;
        } catch (err) {
          await instance.crash();
          if (attempt >= 3 || !/EADDRINUSE|answered by another process/.test(String(err))) throw err;
        }
      }
    };
    // The first one runs the migrations and creates the admin; the others then start together.
    instances.push(await startInstance(0));
    instances.push(...(await Promise.all(Array.from({ length: options.instances - 1 }, (_, i) => startInstance(i + 1)))));
    const ports = instances.map((instance) => instance.port);
    const nginx = await startNginx({ instancePorts: ports });
    cleanup.push(() => nginx.dispose());

    const api = nginx.url;
    const adminLogin = (await expectStatus('admin login', call(`${api}/api/auth/login`, { method: 'POST', body: { username: 'admin', password: adminPassword } }), 200)) as { token: string };
    const adminToken = adminLogin.token;
    const userPassword = randomBytes(18).toString('base64url');
    await expectStatus('create the drill user', call(`${api}/api/admin/users`, { method: 'POST', token: adminToken, body: { username: 'drill-user', password: userPassword } }), 201);
    const userLogin = (await expectStatus('user login', call(`${api}/api/auth/login`, { method: 'POST', body: { username: 'drill-user', password: userPassword } }), 200)) as { token: string };
    for (const [id, fault] of Object.entries(DRILL_AGENTS)) {
      const endpoint = `${primary.url}${fault ? `/fault/${fault}` : ''}/v1/chat/completions`;
      await expectStatus(
        `create agent ${id}`,
        call(`${api}/api/agents`, {
          method: 'POST',
          token: adminToken,
          body: {
            id,
            name: `Drill: ${id}`,
            provider: 'openai',
            endpoint,
            apiKey: 'drill-key',
            model: 'mock-model',
            timeouts: { idleMs: 1000 },
            fallbacks: [{ provider: 'openai', endpoint: `${fallback.url}/v1/chat/completions`, apiKey: 'drill-key', model: 'mock-model' }],
          },
        }),
        201,
      );
    }

    return {
      postgres,
      redis,
      primary,
      fallback,
      instances,
      nginx,
      token: userLogin.token,
      async whole() {
        const answers = await Promise.all(instances.map((instance) => call(`${instance.url}/health/ready`, { method: 'GET' }).catch(() => ({ status: 0, body: undefined }))));
        return answers.every((a) => a.status === 200 && (a.body as { status?: unknown } | undefined)?.status === 'ok');
      },
      dispose,
    };
  } catch (err) {
    await dispose();
    throw err;
  }
}
