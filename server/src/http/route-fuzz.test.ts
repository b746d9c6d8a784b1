import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createMockUpstream } from '../../../tools/src/mock-upstream/index.js';
import { ErrorCodes } from '../errors.js';
import { OPENAI_ERROR_CODES } from '../modules/chat/openai-errors.js';
import { backendNames } from '../test/backends.js';
import { bearer, buildTestApp, login, type TestApp } from '../test/app.js';
import { routesOf, type Route } from '../test/route-table.js';

/**
 * Bad input on every route: generated path parameters, query strings and
 * bodies (any JSON, strings with NUL, lone UTF-16 surrogates and other
 * control characters, deep nesting, huge numbers) sent by an admin, who may
 * call every route. No answer may be a 5xx, and every refusal carries a code
 * from errors.ts. Random bodies rarely get past a schema, so valid requests
 * (a seed corpus) are also sent with one value replaced: that is how a lone
 * surrogate reaches the database inside a valid agent, and a 64-bit
 * number reaches a cursor or an event id. Requests that never reach
 * Fastify (bytes over 0x7f in the request line, oversized bodies) are
 * fuzzed over raw sockets in client-errors.test.ts.
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
/** Query values that convert to numbers past every range: 64-bit and larger integers, exponents, rounding edges. */
const numericText = fc.oneof(
  fc.constantFrom('100000000000000000000000', '9223372036854775808', '-9223372036854775809', '18446744073709551616', '9007199254740993', '2147483648', '1e400', '1e23', '-1', '0', '1.5', 'NaN', 'Infinity', '0x10'),
  fc.bigInt({ min: -(2n ** 80n), max: 2n ** 80n }).map(String),
);
const query = fc.dictionary(
  fc.oneof(fc.constantFrom(...FIELDS, 'appId', 'from', 'to', 'bucket', 'includeInactive', 'archived', 'lastEventId', 'before', 'page', 'pageSize'), fc.string({ maxLength: 8 })),
  fc.oneof(text, numericText),
  { maxKeys: 4 },
);
/** What replaces one value of a valid request. */
const replacement: fc.Arbitrary<unknown> = fc.oneof(
  weird,
  numericText,
  fc.constantFrom('\ud83d', 'a\ud83db', '\ude00', { '\ud83d': 1 }, ['\ud800'], 2 ** 64, -(2 ** 63), 1e23),
);

// `/v1` answers in OpenAI's error shape, with OpenAI's code where one exists (openai-errors.ts).
const knownCodes = new Set([...Object.keys(ErrorCodes), ...OPENAI_ERROR_CODES]);

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
      // A lone UTF-16 surrogate inside JSON the database stores: PostgreSQL refused it (500).
      ['POST', '/api/chat/completions', '{"agentId":"gpt","stream":false,"messages":[{"role":"user","content":"hi"}],"variables":{"name":"\\ud83d"}}', 400, 'VALIDATION_FAILED'],
      ['POST', '/api/agents', `{"id":"surrogate","name":"S","provider":"openai","endpoint":"${'http://127.0.0.1:9/v1'}","apiKey":"k","model":"m","capabilities":["\\ud83d"]}`, 400, 'VALIDATION_FAILED'],
      ['PATCH', '/api/agents/gpt', '{"capabilities":["ok","\\ude00"]}', 400, 'VALIDATION_FAILED'],
      // Integers past 64 bits reached the database as 1e+23 or out of range (500).
      ['GET', '/api/admin/audit?before=100000000000000000000000', undefined, 400, 'VALIDATION_FAILED'],
      ['GET', '/api/admin/audit?before=9223372036854775808', undefined, 400, 'VALIDATION_FAILED'],
      ['GET', '/api/chat-sessions/00000000-0000-4000-8000-000000000000?before=9223372036854775808', undefined, 400, 'VALIDATION_FAILED'],
      ['GET', '/api/chat/stream?messageId=00000000-0000-4000-8000-000000000000&lastEventId=9223372036854775808', undefined, 400, 'VALIDATION_FAILED'],
    ];
    for (const [method, url, payload, status, code] of cases) {
      const res = await t.app.inject({ method: method as 'GET', url, headers: { ...bearer(admin), ...(payload === undefined ? {} : { 'content-type': 'application/json' }) }, ...(payload === undefined ? {} : { payload }) });
      expect(res.statusCode, `${method} ${url}`).toBe(status);
      expect(res.json<{ error: { code: string; requestId: string } }>().error, `${method} ${url}`).toMatchObject({ code, requestId: expect.stringMatching(/\S/) as unknown });
    }
  });

  it('refuses a lone surrogate in any stored JSON with its pointer, and stores nothing', async () => {
    const agents = async () => (await t.app.inject({ method: 'GET', url: '/api/agents', headers: bearer(admin) })).json<{ data: unknown }>().data;
    const agentsBefore = await agents();
    const cases: [string, string, string, string][] = [
      ['POST', '/api/chat/completions', '{"agentId":"gpt","stream":false,"messages":[{"role":"user","content":"hi"}],"variables":{"name":"\\ud83d"}}', '/variables/name'],
      ['POST', '/api/agents', '{"id":"lone","name":"L","provider":"openai","endpoint":"http://127.0.0.1:9/v1","apiKey":"k","model":"m","capabilities":["\\ud83d"]}', '/capabilities/0'],
      ['PUT', '/api/agents/gpt', '{"name":"G","provider":"openai","endpoint":"http://127.0.0.1:9/v1","model":"m","capabilities":["a\\ud83db"]}', '/capabilities/0'],
      ['PATCH', '/api/agents/gpt', '{"welcomeText":"hi \\udc00"}', '/welcomeText'],
      ['PATCH', '/api/chat-sessions/00000000-0000-4000-8000-000000000000/title', '{"title":"\\ud83d"}', '/title'],
    ];
    for (const [method, url, payload, pointer] of cases) {
      const res = await t.app.inject({ method: method as 'POST', url, headers: { ...bearer(admin), 'content-type': 'application/json' }, payload });
      expect(res.statusCode, `${method} ${url} ${res.body}`).toBe(400);
      const error = res.json<{ error: { code: string; details: { path: string }[] } }>().error;
      expect(error.code).toBe('VALIDATION_FAILED');
      expect(error.details.map((d) => d.path), `${method} ${url}`).toContain(pointer);
    }
    expect(await agents()).toEqual(agentsBefore);
  });

  it('replays a finished answer from any event id in range to its end, and refuses ids out of range, in the query or in Last-Event-ID', async () => {
    const turn = await t.app.inject({ method: 'POST', url: '/api/chat/completions', headers: bearer(admin), payload: { agentId: 'gpt', stream: false, messages: [{ role: 'user', content: 'finish me' }] } });
    expect(turn.statusCode, turn.body).toBe(200);
    const { messageId } = turn.json<{ data: { messageId: string } }>().data;
    const stream = (query: string, header?: string) =>
      t.app.inject({ method: 'GET', url: `/api/chat/stream?messageId=${messageId}${query}`, headers: { ...bearer(admin), ...(header === undefined ? {} : { 'last-event-id': header }) } });
    for (const id of ['9223372036854775808', '9007199254740993', '2147483648', '-1', '1e3']) {
      if (id !== '1e3') {
        // In a query string 1e3 is the number 1000, as for every numeric parameter.
        const res = await stream(`&lastEventId=${id}`);
        expect(res.statusCode, `lastEventId=${id}`).toBe(400);
        expect(res.json<{ error: { code: string } }>().error.code).toBe('VALIDATION_FAILED');
      }
      const byHeader = await stream('', `${messageId}:${id}`);
      expect(byHeader.statusCode, `Last-Event-ID ${id}`).toBe(400);
      expect(byHeader.json<{ error: { code: string } }>().error.code).toBe('VALIDATION_FAILED');
    }
    expect((await stream('', 'not-an-event-id')).statusCode).toBe(400);
    // The largest id in range still ends: the replay counts past it exactly.
    for (const res of [await stream('&lastEventId=2147483647'), await stream('', `${messageId}:2147483647`)]) {
      expect(res.statusCode).toBe(200);
      expect(res.body).toContain('event: end');
      expect(res.body).toContain(`id: ${messageId}:2147483648`);
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

  it('answers valid requests with one value replaced by a 4xx or a 2xx, never a 5xx or a stream without its end', async () => {
    const seeds = await seedCorpus(t, admin, mock.url);
    const statuses = new Map<number, number>();
    await fc.assert(
      fc.asyncProperty(fc.nat(), fc.nat(), replacement, fc.boolean(), async (pick, at, value, inQuery) => {
        const seed = seeds[pick % seeds.length] as Seed;
        const request = mutate(seed, at, value, inQuery);
        const res = await t.app.inject({
          method: request.method as 'GET',
          url: request.url,
          headers: { ...bearer(admin), ...request.headers, ...(request.body === undefined ? {} : { 'content-type': 'application/json' }) },
          ...(request.body === undefined ? {} : { payload: JSON.stringify(request.body) }),
        });
        const where = `${request.method} ${request.url} ${JSON.stringify(request.headers)} ${JSON.stringify(request.body)?.slice(0, 300)} → ${res.statusCode} ${res.body.slice(0, 300)}`;
        statuses.set(res.statusCode, (statuses.get(res.statusCode) ?? 0) + 1);
        expect(res.statusCode, where).toBeLessThan(500);
        // A replay positioned past what it can count (an id that rounds) never sends `end`, and the client waits for ever.
        if (res.headers['content-type']?.toString().startsWith('text/event-stream')) expect(res.body, where).toContain('event: end');
        if (res.statusCode >= 400) expect(knownCodes.has(res.json<{ error: { code: string } }>().error.code), where).toBe(true);
      }),
      { numRuns: 400 },
    );
    // Not vacuous: the seeds are valid (some mutations keep them so) and most mutations were refused.
    expect(statuses.get(200) ?? 0).toBeGreaterThan(0);
    expect(statuses.get(400) ?? 0).toBeGreaterThan(100);
  });
});

interface Seed {
  method: string;
  path: string;
  query: Record<string, string>;
  headers: Record<string, string>;
  body?: unknown;
}

/**
 * Valid requests an admin may send, each of which succeeds as it stands
 * (checked here). They chat with an agent of their own: the generated input
 * before them may have disabled or changed `gpt` (its id is one of the
 * strings it tries).
 */
async function seedCorpus(t: TestApp, admin: string, mockUrl: string): Promise<Seed[]> {
  const chatAgent = await t.app.inject({ method: 'POST', url: '/api/agents', headers: bearer(admin), payload: { ...AGENT, id: 'fuzz-chat', endpoint: `${mockUrl}/v1/chat/completions` } });
  expect(chatAgent.statusCode, chatAgent.body).toBe(201);
  const turn = await t.app.inject({ method: 'POST', url: '/api/chat/completions', headers: bearer(admin), payload: { agentId: 'fuzz-chat', stream: false, messages: [{ role: 'user', content: 'seed' }], variables: { name: 'x' } } });
  expect(turn.statusCode, turn.body).toBe(200);
  const { messageId, sessionId } = turn.json<{ data: { messageId: string; sessionId: string } }>().data;
  const patchTarget = await t.app.inject({ method: 'POST', url: '/api/agents', headers: bearer(admin), payload: { ...AGENT, id: 'fuzz-patch' } });
  expect(patchTarget.statusCode, patchTarget.body).toBe(201);
  const seeds: Seed[] = [
    { method: 'POST', path: '/api/chat/completions', query: {}, headers: {}, body: { agentId: 'fuzz-chat', stream: false, chatId: sessionId, messages: [{ role: 'user', content: 'hi' }], variables: { name: 'x', n: 1 } } },
    { method: 'POST', path: '/api/agents', query: {}, headers: {}, body: { ...AGENT, id: 'fuzz-new', capabilities: ['search', 'code'] } },
    { method: 'PATCH', path: '/api/agents/fuzz-patch', query: {}, headers: {}, body: { name: 'Patched', capabilities: ['search'], welcomeText: 'hello' } },
    { method: 'GET', path: '/api/admin/audit', query: { limit: '5', before: '1000' }, headers: {} },
    { method: 'GET', path: `/api/chat-sessions/${sessionId}`, query: { limit: '5', before: '100' }, headers: {} },
    { method: 'GET', path: '/api/chat/stream', query: { messageId, lastEventId: '1' }, headers: {} },
    { method: 'GET', path: '/api/chat/stream', query: { messageId }, headers: { 'last-event-id': `${messageId}:1` } },
    { method: 'GET', path: '/api/chat-sessions/search', query: { q: 'seed', limit: '5' }, headers: {} },
    { method: 'GET', path: '/api/chat-sessions', query: { page: '1', pageSize: '5' }, headers: {} },
    { method: 'POST', path: '/api/chat-sessions', query: {}, headers: {}, body: { agentId: 'fuzz-chat', title: 'seeded' } },
  ];
  for (const seed of seeds.filter((s) => s.method === 'GET')) {
    const res = await t.app.inject({ method: 'GET', url: urlOf(seed.path, seed.query), headers: { ...bearer(admin), ...seed.headers } });
    expect(res.statusCode, `${seed.path} ${res.body.slice(0, 200)}`).toBe(200);
  }
  return seeds;
}

const AGENT = { name: 'Fuzz', description: 'fuzz target', capabilities: [], isActive: true, apiKey: 'k', provider: 'openai', endpoint: 'http://127.0.0.1:9/v1/chat/completions', model: 'm' };

function urlOf(path: string, query: Record<string, string>): string {
  const search = Object.entries(query).map(([k, v]) => `${segment(k)}=${segment(v)}`).join('&');
  return search ? `${path}?${search}` : path;
}

/** Where a value sits in a JSON body: the keys and indexes down to it. */
function leaves(value: unknown, at: (string | number)[] = []): (string | number)[][] {
  if (Array.isArray(value)) return [at, ...value.flatMap((v, i) => leaves(v, [...at, i]))];
  if (typeof value === 'object' && value !== null) return [at, ...Object.entries(value).flatMap(([k, v]) => leaves(v, [...at, k]))];
  return [at];
}

function replaceAt(root: unknown, path: (string | number)[], value: unknown): unknown {
  if (path.length === 0) return value;
  const copy = (Array.isArray(root) ? [...(root as unknown[])] : { ...(root as Record<string, unknown>) }) as Record<string | number, unknown>;
  const [head, ...rest] = path as [string | number, ...(string | number)[]];
  copy[head] = replaceAt(copy[head], rest, value);
  return copy;
}

/** The seed with one value replaced: a query parameter or header (as text), or any value of the body. */
function mutate(seed: Seed, at: number, value: unknown, inQuery: boolean): { method: string; url: string; headers: Record<string, string>; body?: unknown } {
  const asText = typeof value === 'string' ? value : JSON.stringify(value) ?? 'null';
  if (inQuery || seed.body === undefined) {
    const names = [...Object.keys(seed.query), ...Object.keys(seed.headers)];
    const name = names[at % names.length] ?? 'q';
    if (name in seed.headers) {
      // A header value is text on one line; Last-Event-ID keeps its form with the number replaced.
      const header = name === 'last-event-id' ? `${(seed.headers[name] ?? '').split(':')[0] ?? ''}:${asText}` : asText;
      return { method: seed.method, url: urlOf(seed.path, seed.query), headers: { ...seed.headers, [name]: header.replace(/[^\x20-\x7e]/g, '?') }, body: seed.body };
    }
    return { method: seed.method, url: urlOf(seed.path, { ...seed.query, [name]: asText }), headers: seed.headers, body: seed.body };
  }
  const paths = leaves(seed.body);
  return { method: seed.method, url: urlOf(seed.path, seed.query), headers: seed.headers, body: replaceAt(seed.body, paths[at % paths.length] ?? [], value) };
}
