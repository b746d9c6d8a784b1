import SwaggerParser from '@apidevtools/swagger-parser';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildTestApp, type TestApp } from '../test/app.js';
import { routesOf, type Route } from '../test/route-table.js';
import { DOCS_CSP } from './openapi.js';

interface Schema {
  type?: string | string[];
  properties?: Record<string, Schema>;
  required?: string[];
}
interface Operation {
  parameters?: { in: string; name: string; schema?: Schema }[];
  requestBody?: { content?: Record<string, { schema?: Schema }> };
  responses?: Record<string, { content?: Record<string, { schema?: Schema }> }>;
}
interface Document {
  openapi: string;
  paths: Record<string, Record<string, Operation>>;
}

/** The reference's own routes: Swagger UI and the document itself. */
const isReference = (route: Route) => route.path === '/openapi.json' || route.path === '/docs' || route.path.startsWith('/docs/');

/** Actions whose request is the path alone (a body is refused or ignored); every other POST, PUT and PATCH documents its body. */
const BODILESS = new Set([
  'POST /api/auth/logout',
  'POST /api/auth/refresh',
  'POST /api/admin/users/:id/disable',
  'POST /api/admin/users/:id/enable',
  'POST /api/chat-sessions/:id/archive',
  'POST /api/chat-sessions/:id/unarchive',
  'POST /api/chat-sessions/:id/shares',
]);

const openapiPath = (path: string) => path.replace(/:(\w+)/g, '{$1}');

/** The error envelope: `{ error: { code, message, requestId } }`. */
function isErrorEnvelope(schema: Schema | undefined): boolean {
  const error = schema?.properties?.error;
  return ['code', 'message', 'requestId'].every((field) => error?.properties?.[field]?.type === 'string' && error.required?.includes(field) === true);
}

/** `/v1` errors have OpenAI's shape (openai-errors.ts): a message, and the type, param and code OpenAI's SDKs read. */
function isOpenAIError(schema: Schema | undefined): boolean {
  const error = schema?.properties?.error;
  return error?.properties?.message?.type === 'string' && error.required?.includes('message') === true && ['type', 'param', 'code'].every((field) => error.properties?.[field] !== undefined);
}

/** `/v1/messages` errors have Anthropic's shape (anthropic-errors.ts): `type: 'error'` and an error with the type and message Anthropic's SDKs read. */
function isAnthropicError(schema: Schema | undefined): boolean {
  const error = schema?.properties?.error;
  return schema?.properties?.type !== undefined && error?.properties?.message?.type === 'string' && error.required?.includes('message') === true && error.properties?.type !== undefined;
}

describe('the OpenAPI reference', () => {
  let t: TestApp;
  let doc: Document;
  let routes: Route[];
  beforeAll(async () => {
    t = await buildTestApp('pglite+memory');
    const res = await t.app.inject({ method: 'GET', url: '/openapi.json' });
    expect(res.statusCode).toBe(200);
    doc = res.json<Document>();
    routes = routesOf(t.app.printRoutes({ commonPrefix: false })).filter((r) => !isReference(r));
  });
  afterAll(async () => {
    await t.close();
  });

  it('is an OpenAPI 3.1 document a standard validator accepts', async () => {
    expect(doc.openapi).toBe('3.1.0');
    await expect(SwaggerParser.validate(structuredClone(doc) as never)).resolves.toBeDefined();
  });

  it('is refused by the validator when it is wrong (the check can fail)', async () => {
    const broken = structuredClone(doc);
    const live = broken.paths['/health/live']?.get;
    if (!live) throw new Error('no GET /health/live');
    live.responses = { 200: { content: { 'application/json': { schema: { type: 'nonsense' } } } } };
    await expect(SwaggerParser.validate(broken as never)).rejects.toThrow();
  });

  it('lists every route with its path parameters, its request body and its answers, errors in the envelope', () => {
    expect(routes.length).toBeGreaterThan(50);
    const problems: string[] = [];
    for (const route of routes) {
      const key = `${route.method} ${route.path}`;
      // A prefix's root is registered with and without the trailing slash; the document holds one of them.
      const operation = (doc.paths[openapiPath(route.path)] ?? doc.paths[openapiPath(route.path.replace(/\/$/, ''))] ?? doc.paths[`${openapiPath(route.path)}/`])?.[route.method.toLowerCase()];
      if (!operation) {
        problems.push(`${key}: missing`);
        continue;
      }
      for (const name of [...route.path.matchAll(/:(\w+)/g)].map((m) => m[1])) {
        if (!operation.parameters?.some((p) => p.in === 'path' && p.name === name && p.schema !== undefined)) problems.push(`${key}: path parameter ${name} undocumented`);
      }
      if (['POST', 'PUT', 'PATCH'].includes(route.method) && !BODILESS.has(key)) {
        if (Object.values(operation.requestBody?.content ?? {}).every((c) => c.schema === undefined)) problems.push(`${key}: no request body schema`);
      }
      const responses = operation.responses ?? {};
      const success = Object.entries(responses).filter(([status]) => status.startsWith('2'));
      if (success.length === 0 || success.some(([, r]) => Object.values(r.content ?? {}).every((c) => c.schema === undefined))) problems.push(`${key}: no success schema`);
      const isError = route.path === '/v1/messages' ? isAnthropicError : route.path.startsWith('/v1/') ? isOpenAIError : isErrorEnvelope;
      if (!isError(responses['4XX']?.content?.['application/json']?.schema)) problems.push(`${key}: 4XX is not the error envelope`);
      if (!isError(responses['5XX']?.content?.['application/json']?.schema) && !isError(responses['503']?.content?.['application/json']?.schema)) {
        if (!['/health/startup', '/health/ready'].includes(route.path)) problems.push(`${key}: 5XX is not the error envelope`);
      }
    }
    expect(problems).toEqual([]);
  });

  it('documents query parameters with their schemas', () => {
    const query = (doc.paths['/api/chat/history']?.get?.parameters ?? []).filter((p) => p.in === 'query');
    expect(query.map((p) => p.name).sort()).toEqual(['agentId', 'page', 'pageSize']);
    expect(query.find((p) => p.name === 'pageSize')?.schema).toMatchObject({ type: 'integer', minimum: 1, maximum: 200 });
  });

  it('documents the streaming routes as text/event-stream', () => {
    const content = (path: string, method: string) => Object.keys(doc.paths[path]?.[method]?.responses?.['200']?.content ?? {}).sort();
    expect(content('/api/chat/completions', 'post')).toEqual(['application/json', 'text/event-stream']);
    expect(content('/api/chat/history/{chatId}/retry', 'post')).toEqual(['application/json', 'text/event-stream']);
    expect(content('/api/chat/history/{chatId}/continue', 'post')).toEqual(['application/json', 'text/event-stream']);
    expect(content('/api/chat/stream', 'get')).toEqual(['text/event-stream']);
    expect(content('/v1/chat/completions', 'post')).toEqual(['application/json', 'text/event-stream']);
  });

  it('serves Swagger UI at /docs under a strict CSP, with no inline script', async () => {
    const page = await t.app.inject({ method: 'GET', url: '/docs/' });
    expect(page.statusCode).toBe(200);
    expect(page.headers['content-security-policy']).toBe(DOCS_CSP);
    expect(DOCS_CSP).toMatch(/script-src 'self'(;|$)/);
    expect(DOCS_CSP).not.toMatch(/unsafe-inline|unsafe-eval/);
    const scripts = [...page.body.matchAll(/<script\b([^>]*)>([\s\S]*?)<\/script>/g)];
    expect(scripts.length).toBeGreaterThan(0);
    for (const [, attributes, body] of scripts) {
      expect(attributes).toMatch(/\bsrc="/);
      expect(body?.trim()).toBe('');
    }
    expect(page.body).not.toMatch(/\son[a-z]+=/i);
    const initializer = await t.app.inject({ method: 'GET', url: '/docs/static/swagger-initializer.js' });
    expect(initializer.statusCode).toBe(200);
    expect(initializer.headers['content-type']).toMatch(/javascript/);
    const bundle = await t.app.inject({ method: 'GET', url: '/docs/static/swagger-ui-bundle.js' });
    expect(bundle.statusCode).toBe(200);
  });
});
