import fs from 'node:fs';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import type { RouteOptions } from '../../app.js';
import { migrationsDone } from '../../db/migrate.js';
import { AppError } from '../../errors.js';
import { addressMatcher } from '../../http/cidr.js';
import { hostOf } from '../agents/agent-views.js';
import { endpointHealth } from '../resilience/endpoint-health.js';
import { readDescriptors } from './descriptors.js';
import { readiness } from './readiness.js';

const CHECK_TIMEOUT_MS = 2_000;

function packageVersion(): string {
  try {
    const pkg = JSON.parse(fs.readFileSync(new URL('../../../package.json', import.meta.url), 'utf8')) as { version?: unknown };
    return typeof pkg.version === 'string' ? pkg.version : 'unknown';
  } catch {
    return 'unknown';
  }
}

async function check(probe: () => Promise<number>): Promise<{ ok: boolean; latencyMs?: number; error?: string }> {
  let timer: NodeJS.Timeout | undefined;
  try {
    const latencyMs = await Promise.race([
      probe(),
      new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new Error('timed out')), CHECK_TIMEOUT_MS);
      }),
    ]);
    return { ok: true, latencyMs: Math.round(latencyMs * 100) / 100 };
  } catch (err) {
    return { ok: false, error: (err as Error).message.slice(0, 200) };
  } finally {
    clearTimeout(timer);
  }
}

/**
 * /health/live: the process answers (no dependency). /health/ready: the
 * database and migrations answer and the instance is not draining; shared
 * state down is reported as `degraded` but stays 200 (see readiness.ts).
 * /health/startup: migrations are done. /health/detailed: every
 * dependency's latency, the breakers, version and uptime — for admins
 * (bearer token) or addresses in HEALTH_DETAILED_ALLOW only.
 */
export async function healthRoutes(app: FastifyInstance, { deps, guards }: RouteOptions): Promise<void> {
  const { lifecycle } = deps;
  const version = packageVersion();
  const internal = addressMatcher(deps.config.healthDetailedAllow);

  async function migrated(): Promise<boolean> {
    if (!lifecycle.migrated) lifecycle.migrated = await migrationsDone(deps.database.db).catch(() => false);
    return lifecycle.migrated;
  }

  async function dependencies() {
    const [database, sharedState] = await Promise.all([check(() => deps.database.ping()), check(() => deps.state.ping())]);
    return { database: { ...database, kind: deps.database.kind }, sharedState: { ...sharedState, kind: deps.state.kind } };
  }

  /**
   * Internal addresses pass; anyone else needs an admin token. A request a
   * proxy forwarded (X-Forwarded-For) while TRUST_PROXY is off shows the
   * proxy's address, not the client's: it never counts as internal.
   */
  async function requireInternalOrAdmin(request: FastifyRequest, reply: FastifyReply): Promise<void> {
    const forwardedUntrusted = deps.config.trustProxy === false && request.headers['x-forwarded-for'] !== undefined;
    if (internal(request.ip) && !forwardedUntrusted) return;
    if (!request.headers.authorization) throw new AppError('FORBIDDEN', 'Detailed health is for admins (send a bearer token) or the internal network');
    await guards.requireAdmin(request, reply);
  }

  app.get('/health/live', async () => ({ status: 'ok', uptimeSeconds: Math.round(process.uptime()) }));

  app.get('/health/startup', async (_request, reply) => {
    const done = await migrated();
    return reply.status(done ? 200 : 503).send({ status: done ? 'ok' : 'starting', checks: { migrations: { ok: done } } });
  });

  app.get('/health/ready', async (_request, reply) => {
    const checks = await dependencies();
    const done = checks.database.ok ? await migrated() : lifecycle.migrated;
    const draining = lifecycle.draining || deps.chat.draining;
    const { ready, status, degraded } = readiness({ ...checks, migrated: done, draining });
    return reply.status(ready ? 200 : 503).send({
      status,
      degraded,
      checks: { ...checks, migrations: { ok: done }, draining: { ok: !draining } },
    });
  });

  app.get('/health/detailed', { onRequest: requireInternalOrAdmin }, async (_request, reply) => {
    const checks = await dependencies();
    const done = checks.database.ok ? await migrated() : lifecycle.migrated;
    const agents = deps.agents.list({ includeInactive: true }).flatMap((a) => {
      const resolved = deps.agents.find(a.id);
      return resolved ? [resolved] : [];
    });
    const endpoints = agents.flatMap((r) => r.endpoints.map((e) => ({ agentId: r.agent.id, active: r.agent.isActive, endpoint: e })));
    const health = await endpointHealth(deps, endpoints.map((e) => e.endpoint));
    const draining = lifecycle.draining || deps.chat.draining;
    const { status, degraded } = readiness({ ...checks, migrated: done, draining });
    const memory = process.memoryUsage();
    return reply.header('cache-control', 'no-store').send({
      status,
      degraded,
      version,
      node: process.version,
      pid: process.pid,
      startedAt: lifecycle.startedAt.toISOString(),
      uptimeSeconds: Math.round(process.uptime()),
      draining,
      dependencies: { ...checks, readReplica: deps.database.readRoute() ?? null, migrations: { ok: done } },
      load: {
        runningGenerations: deps.chat.runningCount,
        eventLoopDelayMs: deps.pressure.last.eventLoopDelayMs,
        heapUsedPercent: deps.pressure.last.heapUsedPercent,
        shedding: deps.pressure.overloadedBecause ?? null,
        rssBytes: memory.rss,
        heapUsedBytes: memory.heapUsed,
        // V8's whole heap (used plus what it keeps for garbage and the young generation) and memory outside it
        // (buffers, ArrayBuffers): with rssBytes, where an instance's memory goes.
        heapTotalBytes: memory.heapTotal,
        externalBytes: memory.external,
        fileDescriptors: readDescriptors() ?? null,
        upstreamSlots: deps.providers.load(),
      },
      breakers: endpoints.map((e, i) => ({
        agentId: e.agentId,
        agentActive: e.active,
        position: e.endpoint.position,
        provider: e.endpoint.provider,
        host: hostOf(e.endpoint.url),
        ...health[i],
      })),
    });
  });
}
