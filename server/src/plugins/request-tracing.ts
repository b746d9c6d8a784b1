import { SpanKind, SpanStatusCode, type Context, type Span } from '@opentelemetry/api';
import type { FastifyInstance, FastifyRequest } from 'fastify';
import type { Logger } from 'pino';
import { bindIds } from '../logger.js';
import type { TurnCaller } from '../modules/chat/chat-service.js';
import { contextWith, remoteContext, type Tracing } from '../tracing/tracing.js';

declare module 'fastify' {
  interface FastifyRequest {
    /** The context of this request's server span; undefined when tracing is off. */
    traceContext: Context | undefined;
  }
}

const requestSpans = new WeakMap<FastifyRequest, Span>();

/**
 * With tracing on, each request gets a server span, a child of the caller's
 * W3C `traceparent` when it sent one, and its log lines the trace id. With
 * tracing off no hook is added: the request path runs nothing of this.
 */
export function registerRequestTracing(app: FastifyInstance, tracing: Tracing | undefined): void {
  app.decorateRequest('traceContext', undefined);
  if (!tracing) return;
  const { tracer } = tracing;

  app.addHook('onRequest', async (request) => {
    const route = request.routeOptions.url;
    const span = tracer.startSpan(
      route === undefined ? request.method : `${request.method} ${route}`,
      {
        kind: SpanKind.SERVER,
        attributes: { 'http.request.method': request.method, 'http.route': route, 'url.path': request.url.split('?', 1)[0], 'llmchat.request.id': String(request.id) },
      },
      remoteContext(request.headers.traceparent),
    );
    requestSpans.set(request, span);
    request.traceContext = contextWith(span);
    bindToRequestLog(request, { traceId: span.spanContext().traceId });
  });

  app.addHook('onResponse', async (request, reply) => {
    const span = requestSpans.get(request);
    if (!span) return;
    requestSpans.delete(request);
    span.setAttribute('http.response.status_code', reply.statusCode);
    if (reply.statusCode >= 500) span.setStatus({ code: SpanStatusCode.ERROR });
    span.end();
  });
}

/** The request's own logger: a pino child (the app's `loggerInstance` is pino), typed by Fastify as its base logger. */
function requestLogger(request: FastifyRequest): Logger {
  return request.log as unknown as Logger;
}

/**
 * Adds id fields to every later line of this request's logger, in place: no
 * second child logger per request (issue 21). Bind each field once.
 */
export function bindToRequestLog(request: FastifyRequest, ids: Record<string, string>): void {
  bindIds(requestLogger(request), ids);
}

/** The turn's caller as chat-service takes it: the request's logger and span. */
export function callerOf(request: FastifyRequest): TurnCaller {
  return { log: requestLogger(request), trace: request.traceContext };
}
