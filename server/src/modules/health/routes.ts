import fs from 'node:fs';
import { Type } from '@sinclair/typebox';
import type { FastifyInstance } from 'fastify';
import type { RouteOptions } from '../../app.js';
import { migrationsDone } from '../../db/migrate.js';
import { internalOrAdmin } from '../../http/internal-or-admin.js';
import { ErrorResponses, OpenObject } from '../../http/response.js';
import { hostOf } from '../agents/agent-views.js';
import { endpointHealth } from '../resilience/endpoint-health.js';
import { readDescriptors } from './descriptors.js';
import { readiness } from './readiness.js';

const CHECK_TIMEOUT_MS = 2_000;

// What the health routes answer (OpenAPI and the serializer); open objects, so a check added later is not dropped.
const Check = OpenObject({ ok: Type.Boolean() });
const Live = Type.Object({ status: Type.Literal('ok'), uptimeSeconds: Type.Integer() });
const Startup = OpenObject({ status: Type.String({ description: 'ok, or starting (503) until migrations are done' }), checks: OpenObject({ migrations: Check }) });
const Ready = OpenObject({
  status: Type.String({ description: 'ok, degraded (200: chat works, a dependency such as shared state is down) or unavailable (503)' }),
  degraded: Type.Array(Type.String()),
  checks: OpenObject({ database: Check, sharedState: Check, migrations: Check, draining: Check }),
});
const Detailed = OpenObject({ status: Type.String(), degraded: Type.Array(Type.String()), version: Type.String(), draining: Type.Boolean(), dependencies: Type.Unknown(), load: Type.Unknown(), breakers: Type.Array(Type.Unknown()) });

export function packageVersion(): string {
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
  const requireInternalOrAdmin = internalOrAdmin(deps.config, guards, 'Detailed health');

  async function migrated(): Promise<boolean> {
    if (!lifecycle.migrated) lifecycle.migrated = await migrationsDone(deps.database.db).catch(() => false);
    return lifecycle.migrated;
  }

  async function dependencies() {
    const [database, sharedState] = await Promise.all([check(() => deps.database.ping()), check(() => deps.state.ping())]);
    return { database: { ...database, kind: deps.database.kind }, sharedState: { ...sharedState, kind: deps.state.kind } };
  }

  app.get('/health/live', { schema: { response: { 200: Live, ...ErrorResponses } } }, async () => ({ status: 'ok', uptimeSeconds: Math.round(process.uptime()) }));

  app.get('/health/startup', { schema: { response: { 200: Startup, 503: Startup, ...ErrorResponses } } }, async (_request, reply) => {
    const done = await migrated();
    return reply.status(done ? 200 : 503).send({ status: done ? 'ok' : 'starting', checks: { migrations: { ok: done } } });
  });

  app.get('/health/ready', { schema: { response: { 200: Ready, 503: Ready, ...ErrorResponses } } }, async (_request, reply) => {
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

  app.get('/health/detailed', { onRequest: requireInternalOrAdmin, schema: { response: { 200: Detailed, ...ErrorResponses } } }, async (_request, reply) => {
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
      dependencies: { ...checks, readReplica: deps.database.readRoute() ?? null, databasePools: deps.database.pools(), migrations: { ok: done } },
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
