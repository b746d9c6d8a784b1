import swagger from '@fastify/swagger';
import swaggerUi from '@fastify/swagger-ui';
import type { FastifyInstance } from 'fastify';

/**
 * The API reference: an OpenAPI 3.1 document generated from the routes'
 * TypeBox schemas (@fastify/swagger), at GET /openapi.json, and Swagger UI
 * at /docs. Register before the routes: the document is collected as they
 * are added.
 *
 * /docs runs under its own strict CSP: scripts and styles from this origin
 * only (and one style element by hash), no inline script (@fastify/swagger-ui serves its initializer as a
 * file), fetches to this origin only (the document, "Try it out").
 */
export const DOCS_CSP = [
  "default-src 'none'",
  "script-src 'self'",
  // Swagger UI's bundle injects one <style> element of its own at start: that content alone is allowed, by its
  // hash (web/e2e/api-docs.test.ts fails on any violation, so an upgrade that changes it shows).
  "style-src 'self' 'sha256-RL3ie0nH+Lzz2YNqQN83mnU0J1ot4QL7b99vMdIX99w='",
  "img-src 'self' data:",
  "font-src 'self' data:",
  "connect-src 'self'",
  "base-uri 'none'",
  "form-action 'none'",
  "frame-ancestors 'none'",
].join('; ');

export async function registerOpenApi(app: FastifyInstance, { version }: { version: string }): Promise<void> {
  await app.register(swagger, {
    openapi: {
      openapi: '3.1.0',
      info: {
        title: 'LLMChat API',
        version,
        description:
          'Successful /api answers are `{ success: true, data, timestamp }`; every error is `{ error: { code, message, requestId, details? } }` with a stable code (README "Errors"). /v1 follows the OpenAI chat completions API. Streaming answers are Server-Sent Events.',
      },
      components: {
        securitySchemes: {
          bearer: { type: 'http', scheme: 'bearer', description: 'An access token from POST /api/auth/login, or a personal API key (llmc_…).' },
        },
      },
      security: [{ bearer: [] }],
    },
  });
  await app.register(swaggerUi, {
    routePrefix: '/docs',
    staticCSP: DOCS_CSP,
    uiConfig: { deepLinking: true },
  });
  app.get('/openapi.json', { schema: { hide: true } }, (_request, reply) => reply.header('cache-control', 'no-cache').send(app.swagger()));
}
