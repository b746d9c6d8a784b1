import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { Type } from '@sinclair/typebox';
import type { RouteOptions } from '../../app.js';
import { Envelope, ErrorResponse, ok } from '../../http/response.js';
import type { AuditFilter } from './audit-log.js';
import { csvRow } from './csv.js';
import { AuditExportQuery, AuditListQuery, AuditPageSchema } from './schema.js';

const Errors = { '4xx': ErrorResponse, '5xx': ErrorResponse };
const EXPORT_BATCH = 1_000;
const CSV_COLUMNS = ['id', 'at', 'actor_id', 'actor_username', 'action', 'target_type', 'target_id', 'success', 'ip', 'detail'];

function filterOf(query: { action?: string | undefined; actor?: string | undefined; from?: string | undefined; to?: string | undefined }): Omit<AuditFilter, 'limit'> {
  return {
    action: query.action,
    actor: query.actor,
    from: query.from === undefined ? undefined : new Date(query.from),
    to: query.to === undefined ? undefined : new Date(query.to),
  };
}

/** /api/admin/audit: who did what, admins only. */
export const auditRoutes: FastifyPluginAsyncTypebox<RouteOptions> = (app, { deps, guards }) => {
  const { audit } = deps;
  app.addHook('onRequest', guards.requireAdmin);

  app.get('/', { schema: { querystring: AuditListQuery, response: { 200: Envelope(AuditPageSchema), ...Errors } } }, async (request) => {
    const { limit, before } = request.query;
    return ok(await audit.list({ ...filterOf(request.query), limit, before }));
  });

  app.get('/export.csv', { schema: { querystring: AuditExportQuery, response: { 200: Type.String(), ...Errors } } }, async (request, reply) => {
    const filter = filterOf(request.query);
    const chunks = [csvRow(CSV_COLUMNS)];
    let remaining = request.query.limit;
    let before: number | undefined;
    while (remaining > 0) {
      const page = await audit.list({ ...filter, limit: Math.min(EXPORT_BATCH, remaining), before });
      for (const e of page.entries) {
        chunks.push(csvRow([e.id, e.at, e.actorId, e.actorUsername, e.action, e.targetType, e.targetId, e.success, e.ip, e.detail]));
      }
      remaining -= page.entries.length;
      if (page.nextCursor === null) break;
      before = page.nextCursor;
    }
    const stamp = new Date().toISOString().slice(0, 19).replace(/[:T]/g, '-');
    return reply
      .header('content-type', 'text/csv; charset=utf-8')
      .header('content-disposition', `attachment; filename="audit-log-${stamp}.csv"`)
      .send(chunks.join(''));
  });
  return Promise.resolve();
};
