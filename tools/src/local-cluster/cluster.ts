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
import { llmchatInstance, serverEnvironment, type LlmchatInstance } from './instance.js';
import { startNginx, type NginxProxy } from './nginx.js';
import { allReady, createDrillAgents, createDrillUser, login } from './provision.js';
import { startMockUpstreamProcess, startPostgres, startRedis, type DisposableService } from './services.js';

export { DRILL_AGENTS, type DrillAgent } from './provision.js';

export interface ClusterOptions {
  instances: number;
  /** The mock's answer: chunk count and spacing. */
  chunks: number;
  intervalMs: number;
  /** Extra server environment (defaults are production's, but for rate limits and log level). */
  env?: Record<string, string>;
}

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
    const env = serverEnvironment({ dataDir, databaseUrl: postgres.url, redisUrl: redis.url, adminPassword, extra: options.env });
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

    const adminToken = await login(nginx.url, 'admin', adminPassword);
    const user = await createDrillUser(nginx.url, adminToken);
    await createDrillAgents(nginx.url, adminToken, { primary: primary.url, fallback: fallback.url });

    return {
      postgres,
      redis,
      primary,
      fallback,
      instances,
      nginx,
      token: user.token,
      whole: () => allReady(instances.map((instance) => instance.url)),
      dispose,
    };
  } catch (err) {
    await dispose();
    throw err;
  }
}
