import fs from 'node:fs';
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import type { RouteOptions } from '../../app.js';
import { Envelope, ErrorResponse, ok } from '../../http/response.js';
import { SystemStatus, UsageQuery, UsageReport } from './schema.js';
import { usageRange, usageReport } from './usage-report.js';

const Errors = { '4xx': ErrorResponse, '5xx': ErrorResponse };
const CHECK_TIMEOUT_MS = 2_000;
const startedAt = new Date(Date.now() - process.uptime() * 1000);

function readVersion(): string {
  try {
    const pkg = JSON.parse(fs.readFileSync(new URL('../../../package.json', import.meta.url), 'utf8')) as { version?: unknown };
    return typeof pkg.version === 'string' ? pkg.version : 'unknown';
  } catch {
    return 'unknown';
  }
}
const VERSION = readVersion();

async function probe(kind: string, ping: () => Promise<number>): Promise<{ ok: boolean; kind: string; latencyMs?: number; error?: string }> {
  let timer: NodeJS.Timeout | undefined;
  try {
    const latencyMs = await Promise.race([
      ping(),
      new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new Error('timed out')), CHECK_TIMEOUT_MS);
      }),
    ]);
    return { ok: true, kind, latencyMs: Math.round(latencyMs * 100) / 100 };
  } catch (err) {
    // The reason is for the admin; it never carries a connection string.
    return { ok: false, kind, error: (err as Error).message.replace(/\w+:\/\/\S+/g, '<url>').slice(0, 200) };
  } finally {
    clearTimeout(timer);
  }
}

/** /api/admin/usage and /api/admin/system: figures for the admin console, admins only. */
export const analyticsRoutes: FastifyPluginAsyncTypebox<RouteOptions> = (app, { deps, guards }) => {
  app.addHook('onRequest', guards.requireAdmin);

  app.get('/usage', { schema: { querystring: UsageQuery, response: { 200: Envelope(UsageReport), ...Errors } } }, async (request) => {
    const bucket = request.query.bucket ?? 'day';
    const range = usageRange(request.query.from, request.query.to, bucket);
    return ok(await usageReport(deps.database.reader, range, bucket));
  });

  app.get('/system', { schema: { response: { 200: Envelope(SystemStatus), ...Errors } } }, async () => {
    const [database, sharedState] = await Promise.all([probe(deps.database.kind, () => deps.database.ping()), probe(deps.state.kind, () => deps.state.ping())]);
    const agents = deps.agents.counts();
    return ok({
      version: VERSION,
      node: process.version,
      uptimeSeconds: Math.round(process.uptime()),
      startedAt: startedAt.toISOString(),
      dependencies: { database, sharedState },
      agents: { total: agents.totalAgents, active: agents.activeAgents },
      generations: { running: deps.chat.runningCount },
    });
  });
  return Promise.resolve();
};
