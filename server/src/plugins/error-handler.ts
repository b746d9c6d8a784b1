import type { FastifyError, FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { isDatabaseUnavailable } from '../db/unavailable.js';
import { AppError, type ErrorBody, type ErrorCode } from '../errors.js';
import { lingerOnClose } from '../http/client-errors.js';

/** Maps Fastify's own error codes to ours. */
const FASTIFY_CODES: Record<string, ErrorCode> = {
  FST_ERR_CTP_INVALID_JSON_BODY: 'INVALID_JSON',
  FST_ERR_CTP_EMPTY_JSON_BODY: 'INVALID_JSON',
  FST_ERR_CTP_BODY_TOO_LARGE: 'PAYLOAD_TOO_LARGE',
  FST_ERR_CTP_INVALID_MEDIA_TYPE: 'UNSUPPORTED_MEDIA_TYPE',
  FST_ERR_CTP_INVALID_CONTENT_LENGTH: 'VALIDATION_FAILED',
};

/**
 * The one error handler: every error leaves as
 * `{ error: { code, message, requestId } }`. 4xx messages say what to fix;
 * 5xx never carry internals and are logged at error level (503s, refusals
 * to retry, at warn level without a stack).
 */
/** Answers an unknown route with a page instead of a 404 (the web app's client routes); undefined when it does not. */
export type PageFallback = (request: FastifyRequest, reply: FastifyReply) => FastifyReply | undefined;

export function registerErrorHandler(app: FastifyInstance, options: { pageFallback?: PageFallback | undefined } = {}): void {
  app.setErrorHandler((err: FastifyError | AppError | Error, request, reply) => {
    const requestId = String(request.id);
    if (err instanceof AppError) {
      // 503s are refusals the caller may retry (busy, draining, a dependency away): expected under load, so no stack.
      if (err.statusCode === 503) request.log.warn({ code: err.code }, err.message);
      else if (err.statusCode >= 500) request.log.error({ err }, err.message);
      if (err.headers) void reply.headers(err.headers);
      const body: ErrorBody = { error: { code: err.code, message: err.message, requestId } };
      if (err.details !== undefined) body.error.details = err.details;
      return reply.status(err.statusCode).send(body);
    }
    const fastifyErr = err as FastifyError;
    if (fastifyErr.validation) {
      const details = fastifyErr.validation.map((v) => ({
        path: v.instancePath || (typeof v.params?.missingProperty === 'string' ? `/${v.params.missingProperty}` : ''),
        message: v.message,
      }));
      return reply.status(400).send({
        error: { code: 'VALIDATION_FAILED', message: `Invalid request: ${fastifyErr.validationContext ?? 'body'} ${fastifyErr.validation[0]?.instancePath ?? ''} ${fastifyErr.validation[0]?.message ?? ''}`.replace(/\s+/g, ' ').trim(), requestId, details },
      } satisfies ErrorBody);
    }
    const mapped = fastifyErr.code ? FASTIFY_CODES[fastifyErr.code] : undefined;
    if (mapped) {
      const status = fastifyErr.statusCode ?? 400;
      if (mapped === 'PAYLOAD_TOO_LARGE') {
        // The client may still be sending the body: close without a reset that could destroy this answer unread.
        void reply.header('connection', 'close');
        lingerOnClose(request.raw.socket);
      }
      return reply.status(status).send({ error: { code: mapped, message: fastifyErr.message, requestId } } satisfies ErrorBody);
    }
    if (fastifyErr.statusCode && fastifyErr.statusCode >= 400 && fastifyErr.statusCode < 500) {
      return reply.status(fastifyErr.statusCode).send({ error: { code: 'VALIDATION_FAILED', message: fastifyErr.message, requestId } } satisfies ErrorBody);
    }
    if (isDatabaseUnavailable(err)) {
      // Expected while PostgreSQL restarts or fails over: a warning, and a status that says "try again shortly".
      request.log.warn({ err: err.message }, 'database unavailable');
      return reply
        .status(503)
        .header('retry-after', '2')
        .send({ error: { code: 'DATABASE_UNAVAILABLE', message: 'The database is unavailable; try again in a few seconds', requestId } } satisfies ErrorBody);
    }
    request.log.error({ err }, 'unhandled error');
    return reply.status(500).send({ error: { code: 'INTERNAL', message: 'Internal server error', requestId } } satisfies ErrorBody);
  });

  app.setNotFoundHandler((request, reply) => {
    const page = options.pageFallback?.(request, reply);
    if (page) return page;
    return reply.status(404).send({
      error: { code: 'NOT_FOUND', message: `Route ${request.method} ${request.url.split('?')[0] ?? ''} does not exist`, requestId: String(request.id) },
    } satisfies ErrorBody);
  });
}
