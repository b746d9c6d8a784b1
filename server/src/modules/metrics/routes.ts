import http from 'node:http';
import { Type } from '@sinclair/typebox';
import type { FastifyInstance } from 'fastify';
import type { RouteOptions } from '../../app.js';
import { internalOrAdmin } from '../../http/internal-or-admin.js';
import { ErrorResponses } from '../../http/response.js';
import type { Metrics } from './metrics.js';

/** `GET /metrics`: the Prometheus text format, for the internal network (HEALTH_DETAILED_ALLOW) or admins, like /health/detailed. */
export async function metricsRoutes(app: FastifyInstance, { deps, guards }: RouteOptions): Promise<void> {
  const requireInternalOrAdmin = internalOrAdmin(deps.config, guards, 'Metrics');
  // Documented for the OpenAPI reference; the text is sent as it is (no serializer runs on a text/plain string).
  const schema = { response: { 200: { description: 'The Prometheus text exposition format', content: { 'text/plain': { schema: Type.String() } } }, ...ErrorResponses } };
  app.get('/metrics', { onRequest: requireInternalOrAdmin, schema }, async (_request, reply) => {
    const text = await deps.metrics.text();
    return reply.header('content-type', deps.metrics.contentType).header('cache-control', 'no-store').send(text);
  });
}

/**
 * METRICS_PORT: `/metrics` alone on a port of its own, without sign-in
 * (keep the port on the internal network), so Prometheus needs no token and
 * a scrape never queues behind chat traffic's connections.
 */
export async function listenForMetrics(metrics: Metrics, host: string, port: number): Promise<http.Server> {
  const server = http.createServer((request, response) => {
    if (request.method !== 'GET' || (request.url ?? '').split('?')[0] !== '/metrics') {
      response.writeHead(404, { 'content-type': 'text/plain; charset=utf-8' }).end('Only GET /metrics is served on this port\n');
      return;
    }
    metrics.text().then(
      (text) => response.writeHead(200, { 'content-type': metrics.contentType, 'cache-control': 'no-store' }).end(text),
      () => response.writeHead(500, { 'content-type': 'text/plain; charset=utf-8' }).end('Collecting the metrics failed\n'),
    );
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen({ host, port }, () => {
      server.off('error', reject);
      resolve();
    });
  });
  return server;
}
