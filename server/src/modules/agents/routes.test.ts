import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import type { FastifyInstance, InjectOptions, LightMyRequestResponse } from 'fastify';
import pino from 'pino';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { createMockUpstream, type MockUpstream } from '../../../../tools/src/mock-upstream/index.js';
import { buildApp } from '../../app.js';
import { createDatabase, type DatabaseHandle } from '../../db/database.js';
import { RedisState } from '../../shared-state/redis-state.js';
import type { SharedState } from '../../shared-state/shared-state.js';
import { bearer, buildTestApp, createUserAndLogin, login, type TestApp } from '../../test/app.js';
import { backendNames } from '../../test/backends.js';
import { countAgents } from './repository.js';

const SECRET = 'sk-route-test-secret-9d2e7a41';
const FALLBACK_SECRET = 'sk-route-fallback-secret-51ab';
const NEW_SECRET = 'sk-route-rotated-secret-77c0';
/** A sealed key (`v1:iv:tag:data`) must never appear in a response either. */
const CIPHERTEXT = /v1:[A-Za-z0-9_-]{16}:[A-Za-z0-9_-]{22}:/;

interface ErrorJson {
  error: { code: string; message: string; requestId: string; details?: { path: string; message: string }[] };
}
interface AgentJson {
  id: string;
  name: string;
  status: string;
  simulated: boolean;
  hasApiKey?: boolean;
  endpoint?: string;
  isActive?: boolean;
  temperature?: number;
  systemPrompt?: string;
  fallbacks?: { endpoint: string; hasApiKey: boolean }[];
  [key: string]: unknown;
}

function agentBody(id: string, extra: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    id,
    name: `Agent ${id}`,
    description: 'Route test agent',
    provider: 'openai',
    endpoint: 'https://llm.example.com/v1/chat/completions',
    apiKey: SECRET,
    model: 'gpt-test',
    temperature: 0.3,
    systemPrompt: 'Be brief.',
    capabilities: ['chat'],
    features: { supportsStream: true, supportsChatId: false, supportsDetail: false, supportsFiles: false, supportsImages: false },
    ...extra,
  };
}

/** Polls until `check` stops throwing; fails with its last error after `ms`. No timing is asserted. */
async function eventually(check: () => void | Promise<void>, ms = 10_000): Promise<void> {
  const deadline = Date.now() + ms;
  for (;;) {
    try {
      await check();
      return;
    } catch (err) {
      if (Date.now() > deadline) throw err;
      await new Promise((r) => setTimeout(r, 25));
    }
  }
}

function errorOf(res: LightMyRequestResponse): ErrorJson['error'] {
  return res.json<ErrorJson>().error;
}

const backends = await backendNames();

describe.each(backends)('agents API on %s', (backendName) => {
  let t: TestApp;
  let adminToken: string;
  let userToken: string;
  let mock: MockUpstream;
  const bodies: string[] = [];

  async function call(method: InjectOptions['method'], url: string, options: { token?: string; payload?: InjectOptions['payload']; headers?: Record<string, string> } = {}): Promise<LightMyRequestResponse> {
    const res = await t.app.inject({
      method,
      url,
      headers: { ...(options.token ? bearer(options.token) : {}), ...options.headers },
      ...(options.payload !== undefined ? { payload: options.payload } : {}),
    });
    bodies.push(res.body);
    return res;
  }
  const asAdmin = (method: InjectOptions['method'], url: string, payload?: InjectOptions['payload'], headers?: Record<string, string>) => call(method, url, { token: adminToken, payload, headers });
  const asUser = (method: InjectOptions['method'], url: string, payload?: InjectOptions['payload']) => call(method, url, { token: userToken, payload });
  const agentCount = () => countAgents(t.backend.database.db);

  async function createAgent(id: string, extra: Record<string, unknown> = {}): Promise<AgentJson> {
    const res = await asAdmin('POST', '/api/agents', agentBody(id, extra));
    expect(res.statusCode, res.body).toBe(201);
    return res.json<{ data: AgentJson }>().data;
  }

  beforeAll(async () => {
    t = await buildTestApp(backendName);
    adminToken = await login(t.app);
    userToken = (await createUserAndLogin(t.app, adminToken, 'agents-route-user')).token;
    mock = await createMockUpstream({ port: 0, defaultChunks: 2, defaultIntervalMs: 0 });
  });

  afterAll(async () => {
    // Whatever happened above, no response ever carried a key or its ciphertext.
    for (const body of bodies) {
      expect(body).not.toContain(SECRET);
      expect(body).not.toContain(FALLBACK_SECRET);
      expect(body).not.toContain(NEW_SECRET);
      expect(body).not.toMatch(CIPHERTEXT);
    }
    await mock.close();
    await t.close();
  });

  describe('access', () => {
    const adminRoutes: [InjectOptions['method'], string, unknown][] = [
      ['POST', '/api/agents', agentBody('nope')],
      ['PUT', '/api/agents/guarded', { name: 'x' }],
      ['PATCH', '/api/agents/guarded', { name: 'x' }],
      ['DELETE', '/api/agents/guarded', undefined],
      ['POST', '/api/agents/guarded/enable', undefined],
      ['POST', '/api/agents/guarded/disable', undefined],
      ['POST', '/api/agents/reload', undefined],
      ['POST', '/api/agents/import', { agents: [agentBody('nope')] }],
      ['POST', '/api/agents/guarded/validate', undefined],
      ['GET', '/api/agents/guarded/validate', undefined],
    ];
    const userRoutes: [InjectOptions['method'], string][] = [
      ['GET', '/api/agents'],
      ['GET', '/api/agents/guarded'],
      ['GET', '/api/agents/guarded/status'],
    ];

    beforeAll(async () => {
      await createAgent('guarded');
    });

    it.each([...adminRoutes.map(([m, u]) => [m, u] as const), ...userRoutes])('%s %s needs a signed-in caller (401)', async (method, url) => {
      const res = await call(method, url, { payload: method === 'GET' ? undefined : {} });
      expect(res.statusCode).toBe(401);
      expect(errorOf(res).code).toBe('UNAUTHENTICATED');
    });

    it('rejects a made-up token (401)', async () => {
      const res = await call('GET', '/api/agents', { token: 'not-a-real-token' });
      expect(res.statusCode).toBe(401);
    });

    it.each(adminRoutes)('%s %s is for admins only (403) and changes nothing', async (method, url, payload) => {
      const before = await agentCount();
      const res = await asUser(method, url, payload as InjectOptions['payload']);
      expect(res.statusCode).toBe(403);
      expect(errorOf(res).code).toBe('FORBIDDEN');
      expect(await agentCount()).toBe(before);
      expect(t.app.deps.agents.getActive('guarded').agent.name).toBe('Agent guarded');
    });
  });

  describe('create and read', () => {
    it('creates an agent (201) and answers with hasApiKey, never the key', async () => {
      const agent = await createAgent('created', { fallbacks: [{ provider: 'openai', endpoint: 'https://backup.example.com/v1', apiKey: FALLBACK_SECRET }] });
      expect(agent).toMatchObject({ id: 'created', status: 'active', simulated: false, hasApiKey: true, endpoint: 'https://llm.example.com/v1/chat/completions', fallbacks: [{ endpoint: 'https://backup.example.com/v1', hasApiKey: true }] });
      expect(agent).not.toHaveProperty('apiKey');
      expect(t.app.deps.agents.getActive('created').endpoints.map((e) => e.apiKey)).toEqual([SECRET, FALLBACK_SECRET]);
      const rows = await t.backend.database.db.selectFrom('agent_endpoints').select('api_key_encrypted').where('agent_id', '=', 'created').execute();
      expect(rows.every((r) => r.api_key_encrypted?.startsWith('v2:'))).toBe(true);
    });

    it('audits the change with the admin as actor', async () => {
      await createAgent('audit-me');
      const entries = await t.backend.database.db.selectFrom('audit_log').selectAll().where('action', '=', 'agent.create').where('target_id', '=', 'audit-me').execute();
      expect(entries).toHaveLength(1);
      expect(entries[0]?.actor_username).toBe('admin');
      expect(JSON.stringify(entries)).not.toContain(SECRET);
    });

    it('lists active agents for users in the safe shape', async () => {
      await createAgent('listed');
      const res = await asUser('GET', '/api/agents');
      expect(res.statusCode).toBe(200);
      const list = res.json<{ success: boolean; data: AgentJson[] }>();
      expect(list.success).toBe(true);
      const listed = list.data.find((a) => a.id === 'listed');
      expect(Object.keys(listed ?? {}).sort()).toEqual(['canContinue', 'capabilities', 'description', 'features', 'id', 'model', 'name', 'provider', 'simulated', 'status']);
      expect(listed).toMatchObject({ name: 'Agent listed', provider: 'openai', model: 'gpt-test', status: 'active', capabilities: ['chat'], simulated: false, canContinue: true });
    });

    it('shows a user the safe agent and an admin its configuration', async () => {
      await createAgent('detail', { welcomeText: 'Hi there' });
      const asUserView = (await asUser('GET', '/api/agents/detail')).json<{ data: AgentJson }>().data;
      expect(asUserView).toMatchObject({ id: 'detail', welcomeText: 'Hi there' });
      for (const hidden of ['endpoint', 'systemPrompt', 'hasApiKey', 'temperature', 'fallbacks']) expect(asUserView).not.toHaveProperty(hidden);
      const adminView = (await asAdmin('GET', '/api/agents/detail')).json<{ data: AgentJson }>().data;
      expect(adminView).toMatchObject({ id: 'detail', endpoint: 'https://llm.example.com/v1/chat/completions', systemPrompt: 'Be brief.', temperature: 0.3, hasApiKey: true, isActive: true });
    });

    it('has no way to ask for secrets', async () => {
      await createAgent('no-secrets');
      const res = await asAdmin('GET', '/api/agents/no-secrets?includeSecrets=true');
      expect(res.statusCode).toBe(400);
    });

    it('answers 404 for an unknown agent and 400 for a malformed id', async () => {
      expect(errorOf(await asUser('GET', '/api/agents/ghost')).code).toBe('AGENT_NOT_FOUND');
      expect((await asUser('GET', '/api/agents/ghost/status')).statusCode).toBe(404);
      const bad = await asUser('GET', `/api/agents/${'x'.repeat(65)}`);
      expect(bad.statusCode).toBe(400);
      expect(errorOf(bad).code).toBe('VALIDATION_FAILED');
    });

    it('refuses a duplicate id (409)', async () => {
      await createAgent('twice');
      const before = await agentCount();
      const res = await asAdmin('POST', '/api/agents', agentBody('twice', { name: 'Second' }));
      expect(res.statusCode).toBe(409);
      expect(errorOf(res).code).toBe('AGENT_EXISTS');
      expect(await agentCount()).toBe(before);
      expect(t.app.deps.agents.getActive('twice').agent.name).toBe('Agent twice');
    });

    const badBodies: [string, unknown, string][] = [
      ['a missing name', { ...agentBody('bad'), name: undefined }, '/name'],
      ['a missing endpoint', { ...agentBody('bad'), endpoint: undefined }, '/endpoint'],
      ['a name that is an object', agentBody('bad', { name: { first: 'x' } }), '/name'],
      ['a name that is a number', agentBody('bad', { name: 42 }), '/name'],
      ['a temperature that is text', agentBody('bad', { temperature: 'hot' }), '/temperature'],
      ['a temperature out of range', agentBody('bad', { temperature: 2.5 }), '/temperature'],
      ['maxTokens out of range', agentBody('bad', { maxTokens: 200_001 }), '/maxTokens'],
      ['capabilities as a string', agentBody('bad', { capabilities: 'chat' }), '/capabilities'],
      ['isActive as text', agentBody('bad', { isActive: 'yes' }), '/isActive'],
      ['an unknown field', agentBody('bad', { owner: 'me' }), '/owner'],
      ['the read-only simulated flag', agentBody('bad', { simulated: true }), '/simulated'],
      ['an unknown provider', agentBody('bad', { provider: 'custom' }), '/provider'],
      ['an id with spaces', agentBody('bad agent'), '/id'],
      ['an oversized name', agentBody('bad', { name: 'n'.repeat(201) }), '/name'],
      ['an oversized system prompt', agentBody('bad', { systemPrompt: 's'.repeat(50_001) }), '/systemPrompt'],
      ['an oversized api key', agentBody('bad', { apiKey: 'k'.repeat(4097) }), '/apiKey'],
      ['an ftp endpoint', agentBody('bad', { endpoint: 'ftp://llm.example.com' }), '/endpoint'],
      ['a fallback with an unknown field', agentBody('bad', { fallbacks: [{ provider: 'openai', endpoint: 'https://b.example.com', weight: 1 }] }), '/fallbacks/0/weight'],
      ['an endpoint that does not parse', agentBody('bad', { endpoint: 'http://llm.example.com:99999/v1' }), 'endpoint'],
      ['an openai agent without a model', { ...agentBody('bad'), model: undefined }, 'model'],
    ];

    it.each(badBodies)('rejects %s with 400 naming the field, writing nothing', async (_name, body, pathName) => {
      const before = await agentCount();
      const res = await asAdmin('POST', '/api/agents', body as InjectOptions['payload']);
      expect(res.statusCode, res.body).toBe(400);
      const error = errorOf(res);
      expect(error.code).toBe('VALIDATION_FAILED');
      expect(error.details?.map((d) => d.path)).toContain(pathName);
      expect(await agentCount()).toBe(before);
      expect(t.app.deps.agents.find('bad')).toBeUndefined();
    });

    it('rejects malformed JSON, an empty body, a wrong content type and an oversized body, writing nothing', async () => {
      const before = await agentCount();
      const json = { 'content-type': 'application/json' };
      const malformed = await asAdmin('POST', '/api/agents', '{"id": "x", "name": ', json);
      expect([malformed.statusCode, errorOf(malformed).code]).toEqual([400, 'INVALID_JSON']);
      const empty = await asAdmin('POST', '/api/agents');
      expect(empty.statusCode).toBe(400);
      const text = await asAdmin('POST', '/api/agents', 'id=x', { 'content-type': 'text/plain' });
      expect([text.statusCode, errorOf(text).code]).toEqual([400, 'VALIDATION_FAILED']);
      const form = await asAdmin('POST', '/api/agents', 'id=x', { 'content-type': 'application/x-www-form-urlencoded' });
      expect([form.statusCode, errorOf(form).code]).toEqual([415, 'UNSUPPORTED_MEDIA_TYPE']);
      const huge = await asAdmin('POST', '/api/agents', JSON.stringify(agentBody('huge', { systemPrompt: 'x'.repeat(1_100_000) })), json);
      expect([huge.statusCode, errorOf(huge).code]).toEqual([413, 'PAYLOAD_TOO_LARGE']);
      expect(await agentCount()).toBe(before);
    });
  });

  describe('update', () => {
    it.each(['PATCH', 'PUT'] as const)('%s changes only the fields sent and keeps the stored key', async (method) => {
      const id = `upd-${method.toLowerCase()}`;
      await createAgent(id);
      const res = await asAdmin(method, `/api/agents/${id}`, { name: 'Renamed', temperature: null });
      expect(res.statusCode, res.body).toBe(200);
      const agent = res.json<{ data: AgentJson }>().data;
      expect(agent).toMatchObject({ name: 'Renamed', systemPrompt: 'Be brief.', hasApiKey: true });
      expect(agent).not.toHaveProperty('temperature');
      expect(t.app.deps.agents.getActive(id).endpoints[0]?.apiKey).toBe(SECRET);
    });

    it('replaces the key when one is sent and clears it with null', async () => {
      await createAgent('rekey');
      await asAdmin('PATCH', '/api/agents/rekey', { apiKey: NEW_SECRET });
      expect(t.app.deps.agents.getActive('rekey').endpoints[0]?.apiKey).toBe(NEW_SECRET);
      const cleared = await asAdmin('PATCH', '/api/agents/rekey', { apiKey: null });
      expect(cleared.json<{ data: AgentJson }>().data.hasApiKey).toBe(false);
    });

    it('accepts the whole agent sent back, as the original client does', async () => {
      await createAgent('roundtrip');
      const current = (await asAdmin('GET', '/api/agents/roundtrip')).json<{ data: AgentJson }>().data;
      const res = await asAdmin('PUT', '/api/agents/roundtrip', { ...agentBody('roundtrip', { name: 'Round trip' }), apiKey: undefined, createdAt: current.createdAt, updatedAt: current.updatedAt });
      expect(res.statusCode, res.body).toBe(200);
      expect(t.app.deps.agents.getActive('roundtrip').endpoints[0]?.apiKey).toBe(SECRET);
    });

    const badPatches: [string, unknown, number, string][] = [
      ['an empty body', {}, 400, 'VALIDATION_FAILED'],
      ['an unknown field', { colour: 'red' }, 400, 'VALIDATION_FAILED'],
      ['a name that is an object', { name: {} }, 400, 'VALIDATION_FAILED'],
      ['a temperature out of range', { temperature: 3 }, 400, 'VALIDATION_FAILED'],
      ['an oversized description', { description: 'd'.repeat(2001) }, 400, 'VALIDATION_FAILED'],
      ['an empty api key', { apiKey: '' }, 400, 'VALIDATION_FAILED'],
      ['a different id', { id: 'renamed-id' }, 400, 'VALIDATION_FAILED'],
      ['clearing the model an openai agent needs', { model: null }, 400, 'VALIDATION_FAILED'],
      ['a null name', { name: null }, 400, 'VALIDATION_FAILED'],
    ];

    describe('bad input', () => {
      beforeAll(async () => {
        await createAgent('stays');
      });

      it.each(badPatches)('rejects %s and leaves the agent as it was', async (_name, body, status, code) => {
      const res = await asAdmin('PATCH', '/api/agents/stays', body as InjectOptions['payload']);
      expect(res.statusCode, res.body).toBe(status);
      expect(errorOf(res).code).toBe(code);
      const agent = t.app.deps.agents.getActive('stays').agent;
      expect(agent).toMatchObject({ name: 'Agent stays', temperature: 0.3, model: 'gpt-test', description: 'Route test agent' });
      expect(t.app.deps.agents.find('renamed-id')).toBeUndefined();
      });
    });

    it('rejects malformed JSON on update', async () => {
      await createAgent('json-stays');
      const res = await asAdmin('PATCH', '/api/agents/json-stays', '{"name": "x"', { 'content-type': 'application/json' });
      expect([res.statusCode, errorOf(res).code]).toEqual([400, 'INVALID_JSON']);
      expect(t.app.deps.agents.getActive('json-stays').agent.name).toBe('Agent json-stays');
    });

    it('answers 404 for an unknown agent', async () => {
      const res = await asAdmin('PATCH', '/api/agents/ghost', { name: 'x' });
      expect([res.statusCode, errorOf(res).code]).toEqual([404, 'AGENT_NOT_FOUND']);
      expect(t.app.deps.agents.find('ghost')).toBeUndefined();
    });
  });

  describe('enable, disable, delete', () => {
    it('disables an agent: hidden from users, still visible to admins who ask, refused on the chat path', async () => {
      await createAgent('toggle');
      const off = await asAdmin('POST', '/api/agents/toggle/disable');
      expect(off.statusCode).toBe(200);
      expect(off.json<{ data: AgentJson }>().data).toMatchObject({ status: 'inactive', isActive: false });
      expect(() => t.app.deps.agents.getActive('toggle')).toThrow(expect.objectContaining({ code: 'AGENT_INACTIVE', statusCode: 409 }) as Error);

      const userList = (await asUser('GET', '/api/agents?includeInactive=true')).json<{ data: AgentJson[] }>().data;
      expect(userList.map((a) => a.id)).not.toContain('toggle');
      const adminDefault = (await asAdmin('GET', '/api/agents')).json<{ data: AgentJson[] }>().data;
      expect(adminDefault.map((a) => a.id)).not.toContain('toggle');
      const adminAll = (await asAdmin('GET', '/api/agents?includeInactive=true')).json<{ data: AgentJson[] }>().data;
      expect(adminAll.find((a) => a.id === 'toggle')?.status).toBe('inactive');

      const on = await asAdmin('POST', '/api/agents/toggle/enable');
      expect(on.json<{ data: AgentJson }>().data.status).toBe('active');
      expect(t.app.deps.agents.getActive('toggle').agent.isActive).toBe(true);
    });

    it('rejects a bad includeInactive value and a body on a bodiless action', async () => {
      expect((await asAdmin('GET', '/api/agents?includeInactive=perhaps')).statusCode).toBe(400);
      expect((await asAdmin('GET', '/api/agents?other=1')).statusCode).toBe(400);
      await createAgent('bodiless');
      const res = await asAdmin('POST', '/api/agents/bodiless/disable', { reason: 'x' });
      expect(res.statusCode).toBe(400);
      expect(t.app.deps.agents.getActive('bodiless').agent.isActive).toBe(true);
    });

    it('deletes an agent, after which it is gone everywhere', async () => {
      await createAgent('doomed');
      const before = await agentCount();
      const res = await asAdmin('DELETE', '/api/agents/doomed');
      expect(res.statusCode).toBe(200);
      expect(res.json<{ data: unknown }>().data).toEqual({ id: 'doomed', deleted: true });
      expect(await agentCount()).toBe(before - 1);
      expect((await asUser('GET', '/api/agents/doomed')).statusCode).toBe(404);
      expect(() => t.app.deps.agents.getActive('doomed')).toThrow(expect.objectContaining({ code: 'AGENT_NOT_FOUND' }) as Error);
      expect((await asAdmin('DELETE', '/api/agents/doomed')).statusCode).toBe(404);
    });

    it.each([
      ['POST', '/api/agents/ghost/enable'],
      ['POST', '/api/agents/ghost/disable'],
      ['DELETE', '/api/agents/ghost'],
      ['POST', '/api/agents/ghost/validate'],
    ] as const)('%s %s answers 404 for an unknown agent', async (method, url) => {
      const res = await asAdmin(method, url);
      expect([res.statusCode, errorOf(res).code]).toEqual([404, 'AGENT_NOT_FOUND']);
    });
  });

  describe('status and config check', () => {
    it('shows users the endpoint order and admins the hosts too', async () => {
      await createAgent('stat', { fallbacks: [{ provider: 'anthropic', endpoint: 'https://api.anthropic.com/v1/messages?token=abc', model: 'claude' }] });
      const forUser = (await asUser('GET', '/api/agents/stat/status')).json<{ data: unknown }>().data;
      expect(forUser).toEqual({ agentId: 'stat', status: 'active', isActive: true, endpoints: [{ position: 0, provider: 'openai' }, { position: 1, provider: 'anthropic' }] });
      const forAdmin = (await asAdmin('GET', '/api/agents/stat/status')).json<{ data: unknown }>().data;
      expect(forAdmin).toEqual({
        agentId: 'stat',
        status: 'active',
        isActive: true,
        endpoints: [
          { position: 0, provider: 'openai', host: 'llm.example.com', breaker: { state: 'closed', opens: 0 }, failures: { lastHour: 0 } },
          { position: 1, provider: 'anthropic', host: 'api.anthropic.com', breaker: { state: 'closed', opens: 0 }, failures: { lastHour: 0 } },
        ],
      });
    });

    it('checks the configuration without calling the upstream (original shape)', async () => {
      await createAgent('cfg');
      mock.clearRequests();
      expect((await asAdmin('GET', '/api/agents/cfg/validate')).json<{ data: unknown }>().data).toEqual({ agentId: 'cfg', isValid: true, exists: true, isActive: true });
      expect((await asAdmin('GET', '/api/agents/ghost/validate')).json<{ data: unknown }>().data).toEqual({ agentId: 'ghost', isValid: false, exists: false, isActive: false });
      await asAdmin('POST', '/api/agents/cfg/disable');
      expect((await asAdmin('GET', '/api/agents/cfg/validate')).json<{ data: unknown }>().data).toEqual({ agentId: 'cfg', isValid: false, exists: true, isActive: false });
      expect(mock.requests).toHaveLength(0);
    });
  });

  describe('validate against the mock upstream', () => {
    it('reports a good key as ok and bad-key as a 401, per endpoint, without the key', async () => {
      await createAgent('live', {
        endpoint: `${mock.url}/v1/chat/completions`,
        model: 'mock-model',
        fallbacks: [{ provider: 'openai', endpoint: `${mock.url}/v1`, apiKey: 'bad-key' }],
      });
      const res = await asAdmin('POST', '/api/agents/live/validate');
      expect(res.statusCode, res.body).toBe(200);
      const data = res.json<{ data: { agentId: string; ok: boolean; endpoints: { position: number; ok: boolean; latencyMs: number; error?: { status?: number } }[] } }>().data;
      expect(data.agentId).toBe('live');
      expect(data.ok).toBe(false);
      expect(data.endpoints.map((e) => [e.position, e.ok])).toEqual([
        [0, true],
        [1, false],
      ]);
      expect(data.endpoints[0]?.latencyMs).toBeGreaterThanOrEqual(0);
      expect(data.endpoints[1]?.error?.status).toBe(401);
      expect(res.body).not.toContain('bad-key');
      expect(mock.requests.length).toBeGreaterThanOrEqual(2);
    });

    it('validates the anthropic wire protocol too', async () => {
      await createAgent('live-anthropic', { provider: 'anthropic', endpoint: `${mock.url}/v1/messages`, model: 'mock-model' });
      const data = (await asAdmin('POST', '/api/agents/live-anthropic/validate')).json<{ data: { ok: boolean } }>().data;
      expect(data.ok).toBe(true);
    });

    it('reports an unreachable upstream as a failed check, not an error', async () => {
      await createAgent('unreachable', { endpoint: 'http://127.0.0.1:1/v1/chat/completions' });
      const res = await asAdmin('POST', '/api/agents/unreachable/validate');
      expect(res.statusCode).toBe(200);
      expect(res.json<{ data: { ok: boolean; endpoints: { ok: boolean; error?: { code: string } }[] } }>().data.endpoints[0]?.ok).toBe(false);
    });
  });

  describe('import and reload', () => {
    it('imports agents in one go and answers with safe agents', async () => {
      await createAgent('imp-existing', { name: 'Before' });
      const res = await asAdmin('POST', '/api/agents/import', { agents: [agentBody('imp-existing', { name: 'After', apiKey: undefined }), agentBody('imp-new', { apiKey: NEW_SECRET })] });
      expect(res.statusCode, res.body).toBe(200);
      const data = res.json<{ data: { imported: number; created: number; updated: number; agents: AgentJson[] } }>().data;
      expect(data).toMatchObject({ imported: 2, created: 1, updated: 1 });
      expect(data.agents.map((a) => [a.id, a.name, a.hasApiKey])).toEqual([
        ['imp-existing', 'After', true],
        ['imp-new', 'Agent imp-new', true],
      ]);
      expect(t.app.deps.agents.getActive('imp-existing').endpoints[0]?.apiKey).toBe(SECRET);
      expect(t.app.deps.agents.getActive('imp-new').endpoints[0]?.apiKey).toBe(NEW_SECRET);
    });

    it('rejects a document with problems as 422 listing each one, importing none of it', async () => {
      await createAgent('imp-keep', { name: 'Untouched' });
      const before = await agentCount();
      const res = await asAdmin('POST', '/api/agents/import', {
        agents: [agentBody('imp-keep', { name: 'Overwritten' }), agentBody('imp-a'), agentBody('imp-b', { endpoint: 'not-a-url', temperature: 9 }), { id: 'imp-c', name: { x: 1 } }, agentBody('imp-a')],
      });
      expect(res.statusCode, res.body).toBe(422);
      const error = errorOf(res);
      expect(error.code).toBe('AGENTS_CONFIG_INVALID');
      expect(error.details).toEqual(
        expect.arrayContaining([
          { path: 'agents[2].endpoint', message: 'must be an http:// or https:// URL' },
          { path: 'agents[2].temperature', message: 'must be between 0 and 2' },
          { path: 'agents[3].name', message: 'must be a string' },
          { path: 'agents[3].provider', message: 'is required' },
          { path: 'agents[4].id', message: 'duplicates the id "imp-a" of agents[1]' },
        ]),
      );
      expect(await agentCount()).toBe(before);
      expect(t.app.deps.agents.find('imp-a')).toBeUndefined();
      expect(t.app.deps.agents.getActive('imp-keep').agent.name).toBe('Untouched');
    });

    it('rejects a document with unknown top-level fields, without agents, or as malformed JSON', async () => {
      const before = await agentCount();
      expect((await asAdmin('POST', '/api/agents/import', { agents: [], version: 2 })).statusCode).toBe(422);
      expect((await asAdmin('POST', '/api/agents/import', { list: [] })).statusCode).toBe(422);
      const malformed = await asAdmin('POST', '/api/agents/import', '{"agents": [', { 'content-type': 'application/json' });
      expect([malformed.statusCode, errorOf(malformed).code]).toEqual([400, 'INVALID_JSON']);
      expect(await agentCount()).toBe(before);
    });

    it('reloads the caches without a configured file', async () => {
      const res = await asAdmin('POST', '/api/agents/reload');
      expect(res.statusCode).toBe(200);
      const data = res.json<{ data: { totalAgents: number; activeAgents: number } }>().data;
      expect(data.totalAgents).toBe(await agentCount());
      expect(data.activeAgents).toBeLessThanOrEqual(data.totalAgents);
    });
  });

  describe('demo agent', () => {
    it('is listed as simulated and answers through the mock', async () => {
      expect(await t.app.deps.agents.seedDemoAgent(mock.url)).toBe('created');
      const demo = (await asUser('GET', '/api/agents/demo')).json<{ data: AgentJson }>().data;
      expect(demo).toMatchObject({ id: 'demo', name: 'Demo assistant (simulated)', simulated: true, status: 'active' });
      const check = (await asAdmin('POST', '/api/agents/demo/validate')).json<{ data: { ok: boolean } }>().data;
      expect(check.ok).toBe(true);
      expect(await t.app.deps.agents.seedDemoAgent(mock.url)).toBe('unchanged');
    });
  });

  describe('two instances on one backend', () => {
    let other: FastifyInstance;
    let otherDatabase: DatabaseHandle | undefined;
    let otherState: SharedState | undefined;

    beforeAll(async () => {
      let database = t.backend.database;
      let state = t.backend.state;
      if (t.backend.name === 'postgres+redis') {
        otherDatabase = await createDatabase({ url: t.backend.databaseUrl, poolMax: 5 });
        otherState = new RedisState(t.backend.redisUrl ?? '', t.backend.redisPrefix ?? '');
        database = otherDatabase;
        state = otherState;
      }
      other = await buildApp({ config: t.config, database, state, logger: pino({ level: 'silent' }), logRequests: false });
    });

    afterAll(async () => {
      await other.close();
      await otherState?.close();
      await otherDatabase?.close();
    });

    it('sees every change made through the first instance without a restart', async () => {
      const seen = () => other.deps.agents;
      await createAgent('shared');
      await eventually(() => expect(seen().getActive('shared').endpoints[0]?.apiKey).toBe(SECRET));

      await asAdmin('PATCH', '/api/agents/shared', { name: 'Shared renamed', apiKey: NEW_SECRET });
      await eventually(() => {
        const resolved = seen().getActive('shared');
        expect(resolved.agent.name).toBe('Shared renamed');
        expect(resolved.endpoints[0]?.apiKey).toBe(NEW_SECRET);
      });

      await asAdmin('POST', '/api/agents/shared/disable');
      await eventually(() => expect(() => seen().getActive('shared')).toThrow(expect.objectContaining({ code: 'AGENT_INACTIVE' }) as Error));

      await asAdmin('POST', '/api/agents/shared/enable');
      await eventually(() => expect(seen().getActive('shared').agent.isActive).toBe(true));

      await asAdmin('POST', '/api/agents/import', { agents: [agentBody('shared-imported')] });
      await eventually(() => expect(seen().getActive('shared-imported').agent.name).toBe('Agent shared-imported'));

      await asAdmin('DELETE', '/api/agents/shared');
      await eventually(() => expect(() => seen().getActive('shared')).toThrow(expect.objectContaining({ code: 'AGENT_NOT_FOUND' }) as Error));
    });

    it('serves the change over its own API too', async () => {
      await createAgent('shared-api', { name: 'Seen over HTTP' });
      await eventually(async () => {
        const res = await other.inject({ method: 'GET', url: '/api/agents/shared-api', headers: bearer(userToken) });
        bodies.push(res.body);
        expect(res.json<{ data: AgentJson }>().data.name).toBe('Seen over HTTP');
      });
    });

    it('applies changes made on the second instance to the first', async () => {
      const res = await other.inject({ method: 'POST', url: '/api/agents', headers: bearer(adminToken), payload: agentBody('from-other') });
      bodies.push(res.body);
      expect(res.statusCode).toBe(201);
      await eventually(() => expect(t.app.deps.agents.getActive('from-other').agent.id).toBe('from-other'));
    });
  });
});

describe.each(backends)('agents.json through the API on %s', (backendName) => {
  let t: TestApp;
  let adminToken: string;
  let dir: string;
  let file: string;

  beforeAll(async () => {
    dir = await fs.mkdtemp(path.join(os.tmpdir(), 'agents-routes-'));
    file = path.join(dir, 'agents.json');
    vi.stubEnv('AGENTS_ROUTE_TEST_KEY', SECRET);
    await fs.writeFile(file, JSON.stringify({ agents: [agentBody('file-one', { apiKey: '${AGENTS_ROUTE_TEST_KEY}' })] }));
    t = await buildTestApp(backendName, { AGENTS_CONFIG_PATH: file });
    adminToken = await login(t.app);
  });

  afterAll(async () => {
    vi.unstubAllEnvs();
    await t.close();
    await fs.rm(dir, { recursive: true, force: true });
  });

  it('imported the file at start, with the key from the environment', () => {
    expect(t.app.deps.agents.getActive('file-one').endpoints[0]?.apiKey).toBe(SECRET);
  });

  it('re-imports the edited file on reload', async () => {
    await fs.writeFile(file, JSON.stringify([agentBody('file-one', { name: 'Edited', apiKey: '${AGENTS_ROUTE_TEST_KEY}' }), agentBody('file-two', { apiKey: '${AGENTS_ROUTE_TEST_KEY}' })]));
    const res = await t.app.inject({ method: 'POST', url: '/api/agents/reload', headers: bearer(adminToken) });
    expect(res.statusCode, res.body).toBe(200);
    expect(res.json<{ data: unknown }>().data).toEqual({ totalAgents: 2, activeAgents: 2 });
    expect(t.app.deps.agents.getActive('file-one').agent.name).toBe('Edited');
    expect(res.body).not.toContain(SECRET);
  });

  it('answers 422 naming an unset variable and changes nothing', async () => {
    await fs.writeFile(file, JSON.stringify({ agents: [agentBody('file-one', { name: 'Broken', apiKey: '${AGENTS_ROUTE_TEST_UNSET}' }), agentBody('file-three')] }));
    const res = await t.app.inject({ method: 'POST', url: '/api/agents/reload', headers: bearer(adminToken) });
    expect(res.statusCode).toBe(422);
    expect(errorOf(res)).toMatchObject({ code: 'AGENTS_CONFIG_INVALID', details: [{ path: 'agents[0].apiKey', message: 'environment variable AGENTS_ROUTE_TEST_UNSET is not set' }] });
    expect(await countAgents(t.backend.database.db)).toBe(2);
    expect(t.app.deps.agents.getActive('file-one').agent.name).toBe('Edited');
  });
});
