import type { FastifyInstance } from 'fastify';
import type { RouteOptions } from '../../app.js';
import { migrationsDone } from '../../db/migrate.js';

const CHECK_TIMEOUT_MS = 2_000;

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

/** Liveness answers without touching any dependency; readiness checks PostgreSQL, shared state and migrations. */
export async function healthRoutes(app: FastifyInstance, { deps }: RouteOptions): Promise<void> {
  let migrated = false;

  app.get('/health/live', async () => ({ status: 'ok', uptimeSeconds: Math.round(process.uptime()) }));

  app.get('/health/ready', async (_request, reply) => {
    const [database, sharedState] = await Promise.all([check(() => deps.database.ping()), check(() => deps.state.ping())]);
    if (!migrated && database.ok) migrated = await migrationsDone(deps.database.db).catch(() => false);
    const ready = database.ok && sharedState.ok && migrated;
    return reply.status(ready ? 200 : 503).send({
      status: ready ? 'ok' : 'unavailable',
      checks: {
        database: { ...database, kind: deps.database.kind },
        sharedState: { ...sharedState, kind: deps.state.kind },
        migrations: { ok: migrated },
      },
    });
  });
}
