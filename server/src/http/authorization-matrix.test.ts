import type { InjectOptions, LightMyRequestResponse } from 'fastify';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createMockUpstream } from '../../../tools/src/mock-upstream/index.js';
import { bearer, buildTestApp, createUserAndLogin, login, type TestApp } from '../test/app.js';
import { backendNames } from '../test/backends.js';
import { routesOf, type Route } from '../test/route-table.js';
import { ONE_PIXEL_PNG } from '../modules/attachments/test-files.js';

/**
 * Finding 10 of issue 14: who may call what, cell by cell. Every route the
 * app registered is tried by every kind of caller; each cell has its expected
 * answer. A route missing from ACCESS fails the test, so a new route cannot
 * ship without saying who may call it.
 *
 * Callers: nobody, the owner of the resources (a user), another user, an
 * admin, and personal API keys of each scope (the owner's `chat` and
 * `chat keys` keys, the admin's `chat` and `chat admin` keys).
 */

type Caller = 'anonymous' | 'owner' | 'other' | 'admin' | 'ownerChatKey' | 'ownerKeysKey' | 'adminChatKey' | 'adminAdminKey';
const CALLERS: Caller[] = ['anonymous', 'owner', 'other', 'admin', 'ownerChatKey', 'ownerKeysKey', 'adminChatKey', 'adminAdminKey'];

/**
 * Who may call a route:
 * - public: anyone, signed in or not;
 * - user: any signed-in caller, any credential;
 * - owner: a signed-in caller, on resources of their own only (others get 404, never 403, so ids cannot be probed);
 * - keys: a signed-in caller whose credential holds the `keys` scope;
 * - owned-key: `keys`, on one's own keys only;
 * - admin: the admin role, and the `admin` scope for a key;
 * - internal-or-admin: an internal address, else as admin but 403 for nobody (here the caller is external).
 */
type Access = 'public' | 'user' | 'owner' | 'keys' | 'owned-key' | 'admin' | 'internal-or-admin';

const ACCESS: Record<string, Access> = {
  'GET /health/live': 'public',
  'GET /health/startup': 'public',
  'GET /health/ready': 'public',
  'GET /health/detailed': 'internal-or-admin',
  'GET /metrics': 'internal-or-admin',
  // The API reference (plugins/openapi.ts): public, like the routes it describes are listed in the README.
  'GET /openapi.json': 'public',
  'GET /docs': 'public',
  'GET /docs/': 'public',
  'GET /docs/json': 'public',
  'GET /docs/yaml': 'public',
  'GET /docs/static/index.html': 'public',
  'GET /docs/static/swagger-initializer.js': 'public',
  'GET /docs/*': 'public',
  'POST /api/auth/login': 'public',
  'POST /api/auth/logout': 'public',
  'POST /api/auth/refresh': 'public',
  'POST /api/auth/register': 'public',
  'GET /api/auth/options': 'public',
  'GET /api/auth/profile': 'user',
  'POST /api/auth/change-password': 'user',
  'GET /api/auth/api-keys': 'user',
  'POST /api/auth/api-keys': 'keys',
  'DELETE /api/auth/api-keys/:id': 'owned-key',
  'GET /api/admin/users': 'admin',
  'POST /api/admin/users': 'admin',
  'GET /api/admin/users/': 'admin',
  'POST /api/admin/users/': 'admin',
  'GET /api/admin/users/:id': 'admin',
  'PATCH /api/admin/users/:id': 'admin',
  'POST /api/admin/users/:id/disable': 'admin',
  'POST /api/admin/users/:id/enable': 'admin',
  'POST /api/admin/users/:id/reset-password': 'admin',
  'GET /api/admin/users/:id/sign-in-delay': 'admin',
  'DELETE /api/admin/users/:id/sign-in-delay': 'admin',
  'PATCH /api/admin/users/:id/role': 'admin',
  'POST /api/admin/users/:id/role': 'admin',
  'GET /api/admin/usage': 'admin',
  'GET /api/admin/audit': 'admin',
  'GET /api/admin/audit/': 'admin',
  'GET /api/admin/audit/export.csv': 'admin',
  'GET /api/admin/system': 'admin',
  'GET /api/agents': 'user',
  'GET /api/agents/': 'user',
  'POST /api/agents': 'admin',
  'POST /api/agents/': 'admin',
  'POST /api/agents/reload': 'admin',
  'POST /api/agents/import': 'admin',
  'GET /api/agents/:id': 'user',
  'PUT /api/agents/:id': 'admin',
  'PATCH /api/agents/:id': 'admin',
  'DELETE /api/agents/:id': 'admin',
  'GET /api/agents/:id/status': 'user',
  'POST /api/agents/:id/enable': 'admin',
  'POST /api/agents/:id/disable': 'admin',
  'POST /api/agents/:id/validate': 'admin',
  'GET /api/agents/:id/validate': 'admin',
  'POST /api/chat/completions': 'user',
  'GET /api/chat/stream': 'owner',
  'POST /api/chat/stop': 'owner',
  'GET /api/chat/init': 'user',
  'GET /api/chat/history': 'user',
  'DELETE /api/chat/history': 'user',
  'GET /api/chat/history/:chatId': 'owner',
  'DELETE /api/chat/history/:chatId': 'owner',
  'POST /api/chat/history/:chatId/retry': 'owner',
  'POST /api/chat/history/:chatId/continue': 'owner',
  'POST /api/chat-sessions/:id/versions': 'owner',
  'POST /api/chat/feedback': 'owner',
  'GET /api/chat-sessions': 'user',
  'POST /api/chat-sessions': 'user',
  'GET /api/chat-sessions/': 'user',
  'POST /api/chat-sessions/': 'user',
  'GET /api/chat-sessions/search': 'user',
  'GET /api/chat-sessions/:id': 'owner',
  'DELETE /api/chat-sessions/:id': 'owner',
  'PATCH /api/chat-sessions/:id/title': 'owner',
  'POST /api/chat-sessions/:id/archive': 'owner',
  'POST /api/chat-sessions/:id/unarchive': 'owner',
  'PATCH /api/chat-sessions/:id/agent': 'owner',
  'GET /api/chat-sessions/:id/export': 'owner',
  'GET /api/chat-sessions/:id/shares': 'owner',
  'POST /api/chat-sessions/:id/shares': 'owner',
  'DELETE /api/chat-sessions/:id/shares/:shareId': 'owner',
  // Signed in with any account, unless SHARE_LINKS_PUBLIC (off here) opens links to everyone.
  'GET /api/shared/:token': 'user',
  'GET /v1/models': 'user',
  'GET /v1/models/:id': 'user',
  'POST /v1/chat/completions': 'user',
  'POST /v1/messages': 'user',
  'POST /api/attachments': 'user',
  'POST /api/attachments/': 'user',
  'GET /api/attachments': 'user',
  'GET /api/attachments/': 'user',
  'GET /api/attachments/:id': 'owner',
  'GET /api/attachments/:id/thumbnail': 'owner',
  'PUT /api/attachments/:id/thumbnail': 'owner',
  'DELETE /api/attachments/:id': 'owner',
  // A signed, expiring link for model providers (FastGPT): the signature is the grant, no sign-in.
  'GET /api/attachment-links/:id': 'public',
};

/** What a cell expects: through the guards (any answer but a refusal of the caller), or a refusal with its status and code. */
type Expected = { through: true } | { status: number; code: string | RegExp };

const THROUGH: Expected = { through: true };
const NOBODY: Expected = { status: 401, code: 'UNAUTHENTICATED' };
const NOT_ADMIN: Expected = { status: 403, code: 'FORBIDDEN' };
const NO_SCOPE: Expected = { status: 403, code: 'INSUFFICIENT_SCOPE' };
const NOT_YOURS: Expected = { status: 404, code: /_NOT_FOUND$/ };

function expected(access: Access, caller: Caller): Expected {
  switch (access) {
    case 'public':
      return THROUGH;
    case 'user':
      return caller === 'anonymous' ? NOBODY : THROUGH;
    case 'owner':
      if (caller === 'anonymous') return NOBODY;
      return caller === 'owner' || caller === 'ownerChatKey' || caller === 'ownerKeysKey' ? THROUGH : NOT_YOURS;
    case 'keys':
      if (caller === 'anonymous') return NOBODY;
      return caller === 'ownerChatKey' || caller === 'adminChatKey' || caller === 'adminAdminKey' ? NO_SCOPE : THROUGH;
    case 'owned-key':
      if (caller === 'anonymous') return NOBODY;
      if (caller === 'ownerChatKey' || caller === 'adminChatKey' || caller === 'adminAdminKey') return NO_SCOPE;
      return caller === 'owner' || caller === 'ownerKeysKey' ? THROUGH : NOT_YOURS;
    case 'admin':
      if (caller === 'anonymous') return NOBODY;
      if (caller === 'admin' || caller === 'adminAdminKey') return THROUGH;
      return caller === 'adminChatKey' ? NO_SCOPE : NOT_ADMIN;
    case 'internal-or-admin':
      if (caller === 'admin' || caller === 'adminAdminKey') return THROUGH;
      return caller === 'adminChatKey' ? NO_SCOPE : NOT_ADMIN;
  }
}

/** Codes that mean the caller was refused, not the request: a THROUGH cell must get none of them. */
const REFUSALS = new Set(['UNAUTHENTICATED', 'TOKEN_INVALID', 'TOKEN_EXPIRED', 'TOKEN_REVOKED', 'API_KEY_INVALID', 'FORBIDDEN', 'INSUFFICIENT_SCOPE']);

/** The error code of a response in our envelope or in OpenAI's (where the code may be absent). */
function codeOf(res: LightMyRequestResponse): string | undefined {
  try {
    const body = res.json<{ error?: { code?: unknown } }>();
    return typeof body.error?.code === 'string' ? body.error.code : undefined;
  } catch {
    return undefined;
  }
}

/** A route that deletes or replaces the owner's resource needs a fresh one for each cell that may get through. */
const DESTRUCTIVE = new Set(['DELETE /api/attachments/:id', 'DELETE /api/chat-sessions/:id', 'DELETE /api/chat/history/:chatId', 'POST /api/chat/history/:chatId/retry', 'DELETE /api/auth/api-keys/:id']);
/** Routes that act on all of the caller's own data: run last, so they cannot take the owner's fixtures away from other cells. */
const LAST = new Set(['DELETE /api/chat/history']);
const NIL_UUID = '00000000-0000-4000-8000-000000000000';

describe.each(await backendNames())('authorization matrix on %s', (backendName) => {
  let t: TestApp;
  let mock: Awaited<ReturnType<typeof createMockUpstream>>;
  let routes: Route[];
  const credential = {} as Record<Exclude<Caller, 'anonymous'>, string>;

  /** One finished turn of the owner: its session (chat) id and answer id. */
  async function ownerTurn(): Promise<{ chatId: string; messageId: string }> {
    const res = await t.app.inject({ method: 'POST', url: '/api/chat/completions', headers: bearer(credential.owner), payload: { agentId: 'gpt', stream: false, messages: [{ role: 'user', content: 'matrix' }] } });
    expect(res.statusCode, res.body).toBe(200);
    const { chatId, messageId } = res.json<{ data: { chatId: string; messageId: string } }>().data;
    return { chatId, messageId };
  }

  async function ownerKeyId(): Promise<string> {
    const res = await t.app.inject({ method: 'POST', url: '/api/auth/api-keys', headers: bearer(credential.owner), payload: { name: 'matrix target' } });
    expect(res.statusCode, res.body).toBe(201);
    return res.json<{ data: { apiKey: { id: string } } }>().data.apiKey.id;
  }

  /** One attachment of the owner's. */
  async function ownerAttachmentId(): Promise<string> {
    const res = await t.app.inject({ method: 'POST', url: '/api/attachments?name=dot.png', headers: { ...bearer(credential.owner), 'content-type': 'image/png' }, payload: ONE_PIXEL_PNG });
    expect(res.statusCode, res.body).toBe(201);
    return res.json<{ data: { id: string } }>().data.id;
  }

  /** The request a cell sends: the owner's resources for owner routes, harmless values elsewhere. */
  async function requestFor(route: Route, access: Access, fresh: boolean, shared: { chatId: string; messageId: string; keyId: string; attachmentId: string }): Promise<InjectOptions> {
    const turn = fresh && (access === 'owner' || access === 'owned-key') ? await ownerTurn() : shared;
    const attachmentId = fresh && route.path.startsWith('/api/attachments/') ? await ownerAttachmentId() : shared.attachmentId;
    const keyId = fresh && access === 'owned-key' ? await ownerKeyId() : shared.keyId;
    const key = `${route.method} ${route.path}`;
    let url = route.path.replace(/:(\w+)/g, (_m, name: string) => {
      if (access === 'owner') return route.path.startsWith('/api/attachments/') ? attachmentId : turn.chatId;
      if (access === 'owned-key') return keyId;
      // Nothing that exists: a cell that gets through an admin route must change nothing the other cells rely on.
      return name === 'id' && route.path.startsWith('/api/agents') ? 'no-such-agent' : NIL_UUID;
    });
    let payload: Record<string, unknown> | undefined = ['POST', 'PUT', 'PATCH'].includes(route.method) ? {} : undefined;
    if (key === 'GET /api/chat/stream') url += `?messageId=${turn.messageId}`;
    if (key === 'POST /api/chat/stop') payload = { messageId: turn.messageId };
    if (key === 'POST /api/chat/feedback') payload = { messageId: turn.messageId, rating: 'up' };
    if (key === 'POST /api/chat/history/:chatId/retry' || key === 'POST /api/chat/history/:chatId/continue') payload = { stream: false };
    if (key === 'PATCH /api/chat-sessions/:id/title') payload = { title: 'renamed by the matrix' };
    if (key === 'PATCH /api/chat-sessions/:id/agent') payload = { agentId: 'gpt' };
    if (key === 'POST /api/chat-sessions/:id/versions') payload = { messageId: turn.messageId };
    if (key === 'GET /api/chat-sessions/:id/export') url += '?format=json';
    if (key === 'DELETE /api/chat-sessions/:id/shares/:shareId' && access === 'owner') {
      // The owner's own link on the owner's session (each cell revokes one).
      const res = await t.app.inject({ method: 'POST', url: `/api/chat-sessions/${turn.chatId}/shares`, headers: bearer(credential.owner) });
      url = `/api/chat-sessions/${turn.chatId}/shares/${res.json<{ data: { id: string } }>().data.id}`;
    }
    if (key === 'DELETE /api/chat/history') url += '?agentId=gpt';
    // Uploads and thumbnails are raw bytes: a one-pixel PNG (a thumbnail of itself).
    if (key === 'POST /api/attachments' || key === 'POST /api/attachments/' || key === 'PUT /api/attachments/:id/thumbnail') {
      return { method: route.method as InjectOptions['method'], url, payload: ONE_PIXEL_PNG, headers: { 'content-type': 'image/png' }, remoteAddress: '203.0.113.7' };
    }
    // Never a valid password: a cell that got through must not change anyone's credentials.
    if (key === 'POST /api/auth/change-password') payload = { currentPassword: 'not-the-password', newPassword: 'whatever-password-1' };
    return { method: route.method as InjectOptions['method'], url, ...(payload ? { payload } : {}), remoteAddress: '203.0.113.7' };
  }

  beforeAll(async () => {
    mock = await createMockUpstream({ port: 0, host: '127.0.0.1', defaultChunks: 2, defaultIntervalMs: 0 });
    t = await buildTestApp(backendName);
    credential.admin = await login(t.app);
    const agent = await t.app.inject({
      method: 'POST',
      url: '/api/agents',
      headers: bearer(credential.admin),
      payload: { id: 'gpt', name: 'GPT', provider: 'openai', endpoint: `${mock.url}/v1/chat/completions`, apiKey: 'k', model: 'm' },
    });
    expect(agent.statusCode, agent.body).toBe(201);
    credential.owner = (await createUserAndLogin(t.app, credential.admin, 'matrix-owner')).token;
    credential.other = (await createUserAndLogin(t.app, credential.admin, 'matrix-other')).token;
    const key = async (token: string, scopes: string[]) => {
      const res = await t.app.inject({ method: 'POST', url: '/api/auth/api-keys', headers: bearer(token), payload: { name: `matrix ${scopes.join(' ')}`, scopes } });
      expect(res.statusCode, res.body).toBe(201);
      return res.json<{ data: { key: string } }>().data.key;
    };
    credential.ownerChatKey = await key(credential.owner, ['chat']);
    credential.ownerKeysKey = await key(credential.owner, ['chat', 'keys']);
    credential.adminChatKey = await key(credential.admin, ['chat']);
    credential.adminAdminKey = await key(credential.admin, ['chat', 'admin']);
    routes = routesOf(t.app.printRoutes({ commonPrefix: false }));
  });
  afterAll(async () => {
    await t.close();
    await mock.close();
  });

  it('knows who may call every route the app registered', () => {
    expect(routes.length).toBeGreaterThan(50);
    const unclassified = routes.map((r) => `${r.method} ${r.path}`).filter((k) => !(k in ACCESS));
    expect(unclassified, 'routes without an entry in ACCESS').toEqual([]);
    const gone = Object.keys(ACCESS).filter((k) => !routes.some((r) => `${r.method} ${r.path}` === k));
    expect(gone, 'ACCESS entries for routes that no longer exist').toEqual([]);
  });

  it('answers each caller on each route as the matrix says', async () => {
    const shared = { ...(await ownerTurn()), keyId: await ownerKeyId(), attachmentId: await ownerAttachmentId() };
    const ordered = [...routes.filter((r) => !LAST.has(`${r.method} ${r.path}`)), ...routes.filter((r) => LAST.has(`${r.method} ${r.path}`))];
    const wrong: string[] = [];
    let cells = 0;
    for (const route of ordered) {
      const key = `${route.method} ${route.path}`;
      const access = ACCESS[key];
      if (!access) continue;
      for (const caller of CALLERS) {
        const want = expected(access, caller);
        const request = await requestFor(route, access, DESTRUCTIVE.has(key) && 'through' in want, shared);
        const res = await t.app.inject({ ...request, headers: { ...(request.headers as Record<string, string> | undefined), ...(caller === 'anonymous' ? {} : bearer(credential[caller])) } });
        cells++;
        const code = codeOf(res);
        const cell = `${key} as ${caller}: got ${res.statusCode} ${code ?? res.body.slice(0, 120)}`;
        if ('through' in want) {
          // A 401 about something else than the bearer (no refresh cookie on /refresh) is the route's own answer.
          const refused = (res.statusCode === 401 || res.statusCode === 403) && (code === undefined ? res.statusCode === 401 : REFUSALS.has(code));
          if (refused || res.statusCode >= 500) wrong.push(`${cell}, expected to get through`);
          if ((access === 'owner' || access === 'owned-key') && res.statusCode === 404) wrong.push(`${cell}, expected the owner to find it`);
        } else if (res.statusCode !== want.status || !(typeof want.code === 'string' ? code === want.code : want.code.test(code ?? ''))) {
          wrong.push(`${cell}, expected ${want.status} ${String(want.code)}`);
        }
      }
    }
    expect(cells).toBe(routes.length * CALLERS.length);
    expect(wrong).toEqual([]);
  });
});
