import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createMockUpstream } from '../../../tools/src/mock-upstream/index.js';
import { ErrorCodes } from '../errors.js';
import { backendNames } from '../test/backends.js';
import { bearer, buildTestApp, login, type TestApp } from '../test/app.js';
import { routesOf, type Route } from '../test/route-table.js';

/**
 * Bad input on every route: generated path parameters, query strings and
 * bodies (any JSON, strings with NUL and other control characters, deep
 * nesting, huge numbers) sent by an admin, who may call every route. No
 * answer may be a 5xx, and every refusal carries a code from errors.ts.
 */

/** Actions that would end the admin's own session mid-run; their bad-input cases are covered by their modules' tests. */
const SKIPPED = new Set(['POST /api/auth/logout']);

const text = fc.oneof(
  fc.string({ maxLength: 40 }),
  fc.string({ unit: 'binary', maxLength: 20 }),
  fc.constantFrom('', '\u0000', 'a\u0000b', '\ud800', '../../etc/passwd', '%00', '00000000-0000-4000-8000-000000000000', 'gpt', ' ', 'x'.repeat(5_000)),
);
/** JSON text nested `depth` levels deep (as text: a value that deep would overflow JSON.stringify here). */
const deepText = fc.tuple(fc.integer({ min: 60, max: 20_000 }), fc.boolean()).map(([depth, arrays]) =>
  arrays ? `${'['.repeat(depth)}1${']'.repeat(depth)}` : `${'{"k":'.repeat(depth)}1${'}'.repeat(depth)}`,
);
const weird: fc.Arbitrary<unknown> = fc.oneof(
  fc.jsonValue({ maxDepth: 4 }),
  text,
  fc.constantFrom(1e308, -1e308, Number.MAX_SAFE_INTEGER + 2, -0, 0.1, true, null, [], {}),
);
/** Objects shaped like the API's bodies (known field names), with wrong or odd values. */
const FIELDS = ['agentId', 'messages', 'stream', 'chatId', 'content', 'role', 'title', 'username', 'password', 'name', 'id', 'provider', 'endpoint', 'apiKey', 'model', 'variables', 'options', 'messageId', 'rating', 'comment', 'q', 'limit', 'offset', 'currentPassword', 'newPassword', 'agents', 'fallbacks', 'features', 'isActive'];
const shaped = fc.dictionary(fc.constantFrom(...FIELDS), weird, { maxKeys: 6 });
/** A request body as JSON text. */
const body: fc.Arbitrary<string> = fc.oneof(
  shaped.map((v) => JSON.stringify(v)),
  weird.map((v) => JSON.stringify(v) ?? 'null'),
  deepText,
  fc.tuple(fc.constantFrom(...FIELDS), deepText).map(([field, nested]) => `{"${field}":${nested}}`),
);
const query = fc.dictionary(fc.oneof(fc.constantFrom(...FIELDS, 'appId', 'from', 'to', 'bucket', 'includeInactive', 'archived', 'lastEventId', 'page', 'pageSize'), fc.string({ maxLength: 8 })), text, { maxKeys: 4 });

const knownCodes = new Set(Object.keys(ErrorCodes));

/** A path segment; a lone surrogate (which encodeURIComponent refuses) goes as the bytes of one, which no UTF-8 decoder accepts. */
function segment(value: string): string {
  try {
    return encodeURIComponent(value);
  } catch {
    return '%ED%A0%80';
  }
}

describe.each(await backendNames())('every route on %s', (backendName) => {
  let t: TestApp;
  let admin: string;
  let mock: Awaited<ReturnType<typeof createMockUpstream>>;
  let routes: Route[];

  beforeAll(async () => {
    mock = await createMockUpstream({ port: 0, host: '127.0.0.1', defaultChunks: 2, defaultIntervalMs: 1 });
    t = await buildTestApp(backendName);
    admin = await login(t.app);
    const created = await t.app.inject({
      method: 'POST',
      url: '/api/agents',
      headers: bearer(admin),
      payload: { id: 'gpt', name: 'GPT', description: 'fuzz target', capabilities: [], isActive: true, apiKey: 'k', provider: 'openai', endpoint: `${mock.url}/v1/chat/completions`, model: 'm' },
    });
    expect(created.statusCode).toBe(201);
    routes = routesOf(t.app.printRoutes({ commonPrefix: false })).filter((r) => !SKIPPED.has(`${r.method} ${r.path}`));
  });
  afterAll(async () => {
    await t.close();
    await mock.close();
  });

  it('reads the route table', () => {
    // A parser that found nothing would make the property below vacuous.
    expect(routes.length).toBeGreaterThan(50);
    expect(routes).toContainEqual({ method: 'POST', path: '/api/chat/completions' });
    expect(routes).toContainEqual({ method: 'PATCH', path: '/api/chat-sessions/:id/title' });
  });

  it('answers what the generated inputs first found with a 4xx in the usual envelope', async () => {
    const cases: [string, string, string | undefined, number, string][] = [
      // The import route checks its document itself; an absent one used to throw (500).
      ['POST', '/api/agents/import', undefined, 422, 'AGENTS_CONFIG_INVALID'],
      ['POST', '/api/agents/import', '{"agents":[{"id":"a\\u0000","name":"x"}]}', 422, 'AGENTS_CONFIG_INVALID'],
      // Refused by the router before any route: Fastify's own body and 414 before.
      ['GET', `/api/admin/users/${'x'.repeat(101)}`, undefined, 400, 'VALIDATION_FAILED'],
      ['GET', '/api/chat-sessions/%ED%A0%80', undefined, 400, 'VALIDATION_FAILED'],
    ];
    for (const [method, url, payload, status, code] of cases) {
      const res = await t.app.inject({ method: method as 'GET', url, headers: { ...bearer(admin), ...(payload === undefined ? {} : { 'content-type': 'application/json' }) }, ...(payload === undefined ? {} : { payload }) });
      expect(res.statusCode, `${method} ${url}`).toBe(status);
      expect(res.json<{ error: { code: string; requestId: string } }>().error, `${method} ${url}`).toMatchObject({ code, requestId: expect.stringMatching(/\S/) as unknown });
    }
  });

  it('answers generated bad input on every route with a 4xx and a stable code, never a 5xx', async () => {
    const statuses = new Map<number, number>();
    const codes = new Map<string, number>();
    await fc.assert(
      fc.asyncProperty(fc.nat(), fc.array(text, { minLength: 2, maxLength: 2 }), query, fc.option(body, { nil: undefined }), async (pick, params, q, payload) => {
        const route = routes[pick % routes.length] as Route;
        let n = 0;
        const path = route.path.replace(/:\w+/g, () => segment(params[n++ % params.length] ?? ''));
        const search = Object.entries(q).map(([k, v]) => `${segment(k)}=${segment(v)}`).join('&');
        const res = await t.app.inject({
          method: route.method as 'GET',
          url: search ? `${path}?${search}` : path,
          headers: { ...bearer(admin), ...(payload === undefined ? {} : { 'content-type': 'application/json' }) },
          ...(payload === undefined ? {} : { payload }),
        });
        const where = `${route.method} ${route.path} → ${res.statusCode} ${res.body.slice(0, 300)}`;
        statuses.set(res.statusCode, (statuses.get(res.statusCode) ?? 0) + 1);
        expect(res.statusCode, where).toBeLessThan(500);
        if (res.statusCode >= 400 && res.headers['content-type']?.toString().includes('json')) {
          const code = res.json<{ error: { code: string } }>().error.code;
          codes.set(code, (codes.get(code) ?? 0) + 1);
          expect(knownCodes.has(code), where).toBe(true);
        }
      }),
      { numRuns: 800 },
    );
    // Not vacuous: the inputs reached the routes (the admin's token held) and most were refused as invalid.
    for (const code of ['UNAUTHENTICATED', 'TOKEN_INVALID', 'TOKEN_EXPIRED', 'FORBIDDEN']) expect(codes.get(code) ?? 0, code).toBe(0);
    expect(codes.get('VALIDATION_FAILED') ?? 0).toBeGreaterThan(200);
    expect(statuses.get(200) ?? 0).toBeGreaterThan(0);
  });
});
