import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import type { RouteOptions } from '../../app.js';
import { Envelope, ErrorResponse, ok } from '../../http/response.js';
import { resolveRange } from './analytics-service.js';
import { UsageQuerySchema, UsageReportSchema } from './schema.js';

const Errors = { '4xx': ErrorResponse, '5xx': ErrorResponse };

/** /api/admin/analytics: usage over time, per agent and per provider; admins only. */
export const analyticsRoutes: FastifyPluginAsyncTypebox<RouteOptions> = (app, { deps, guards }) => {
  app.addHook('onRequest', guards.requireAdmin);
  app.addHook('onSend', async (_request, reply) => {
    void reply.header('cache-control', 'no-store');
  });

  app.get('/usage', { schema: { querystring: UsageQuerySchema, response: { 200: Envelope(UsageReportSchema), ...Errors } } }, async (request) => {
    return ok(await deps.analytics.usage(resolveRange(request.query)));
  });
  return Promise.resolve();
};
