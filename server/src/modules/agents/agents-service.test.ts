import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import pino from 'pino';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { migrateToLatest } from '../../db/migrate.js';
import { AppError } from '../../errors.js';
import type { SharedState } from '../../shared-state/shared-state.js';
import { backendNames, createBackend, type Backend } from '../../test/backends.js';
import type { AuditEntryInput } from '../audit/audit-log.js';
import type { ResolvedEndpoint, ValidationResult } from '../providers/types.js';
import { createAgentsService, type AgentsService, type AgentsServiceDeps } from './agents-service.js';
import * as repo from './repository.js';
import type { AgentInput } from './schema.js';
import type { Actor } from './types.js';
import { loopbackAllowed } from '../../test/providers.js';

const SECRETS_KEY = 'service-test-secrets-key-that-is-long-enough-0123';
const ADMIN: Actor = { userId: '00000000-0000-4000-8000-000000000001', username: 'root', role: 'admin', via: 'token', scopes: ['chat', 'admin', 'keys'], ip: '10.0.0.1' };
const KEY = 'sk-service-test-primary-key-4f1c';

function agentInput(id: string, extra: Partial<AgentInput> = {}): AgentInput {
  return { id, name: `Agent ${id}`, provider: 'openai', endpoint: 'https://primary.example.com/v1/chat/completions', apiKey: KEY, model: 'gpt-test', ...extra };
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

function codeOf(run: () => unknown): string | undefined {
  try {
    run();
  } catch (err) {
    return err instanceof AppError ? err.code : 'not an AppError';
  }
  return undefined;
}

async function rejectionOf(promise: Promise<unknown>): Promise<AppError> {
  const err = await promise.then(
    () => undefined,
    (e: unknown) => e,
  );
  if (!(err instanceof AppError)) throw new Error(`expected an AppError, got ${String(err)}`);
  return err;
}

const backends = await backendNames();

describe.each(backends)('agents service on %s', (backendName) => {
  let backend: Backend;
  let audits: AuditEntryInput[];
  let validated: ResolvedEndpoint[];
  let validateResult: (e: ResolvedEndpoint) => Promise<ValidationResult>;
  const started: AgentsService[] = [];
  let tmpDir: string;

  function service(overrides: Partial<AgentsServiceDeps> = {}): AgentsService {
    const s = createAgentsService({
      database: backend.database,
      state: backend.state,
      providers: {
        validate: (e) => {
          validated.push(e);
          return validateResult(e);
        },
      },
      audit: {
        record: (entry) => {
          audits.push(entry);
          return Promise.resolve();
        },
      },
      outbound: loopbackAllowed(),
      config: { agentsConfigPath: undefined },
      secrets: { secretsKey: SECRETS_KEY },
      logger: pino({ level: 'silent' }),
      reloadIntervalMs: 0,
      ...overrides,
    });
    started.push(s);
    return s;
  }

  async function startedService(overrides: Partial<AgentsServiceDeps> = {}): Promise<AgentsService> {
    const s = service(overrides);
    await s.start();
    return s;
  }

  beforeAll(async () => {
    backend = await createBackend(backendName);
    await migrateToLatest(backend.database.db);
    tmpDir = await fs.mkdtemp(path.join(os.tmpdir(), 'agents-service-'));
  });

  afterAll(async () => {
    await backend.dispose();
    await fs.rm(tmpDir, { recursive: true, force: true });
  });

  beforeEach(async () => {
    audits = [];
    validated = [];
    validateResult = () => Promise.resolve({ ok: true, latencyMs: 3, model: 'gpt-test' });
    await backend.database.db.deleteFrom('agents').execute();
  });

  afterEach(async () => {
    for (const s of started.splice(0)) await s.stop();
  });

  describe('cache and getActive', () => {
    it('returns the agent with its endpoints, keys decrypted, as one frozen object', async () => {
      const agents = await startedService();
      await agents.create(agentInput('alpha', { fallbacks: [{ provider: 'anthropic', endpoint: 'https://api.anthropic.com/v1/messages', apiKey: 'ak-fallback', model: 'claude-x' }] }), ADMIN);
      const resolved = agents.getActive('alpha');
      expect(resolved.agent).toMatchObject({ id: 'alpha', provider: 'openai', model: 'gpt-test', isActive: true, hasApiKey: true, simulated: false });
      expect(resolved.endpoints.map((e) => [e.position, e.provider, e.apiKey, e.model])).toEqual([
        [0, 'openai', KEY, 'gpt-test'],
        [1, 'anthropic', 'ak-fallback', 'claude-x'],
      ]);
      expect(agents.getActive('alpha')).toBe(resolved);
      expect(Object.isFrozen(resolved.agent)).toBe(true);
      expect(Object.isFrozen(resolved.endpoints[0])).toBe(true);
      expect(JSON.stringify(resolved.agent)).not.toContain(KEY);
    });

    it('throws AGENT_NOT_FOUND for an unknown id and AGENT_INACTIVE for a disabled agent', async () => {
      const agents = await startedService();
      await agents.create(agentInput('beta'), ADMIN);
      expect(codeOf(() => agents.getActive('nope'))).toBe('AGENT_NOT_FOUND');
      await agents.setActive('beta', false, ADMIN);
      expect(codeOf(() => agents.getActive('beta'))).toBe('AGENT_INACTIVE');
      expect(agents.find('beta')?.agent.isActive).toBe(false);
      await agents.setActive('beta', true, ADMIN);
      expect(agents.getActive('beta').agent.isActive).toBe(true);
    });

    it('lets fallbacks inherit the agent model and timeouts they do not set', async () => {
      const agents = await startedService();
      await agents.create(
        agentInput('inherit', {
          timeouts: { connectMs: 1000, totalMs: 60_000 },
          fallbacks: [{ provider: 'openai', endpoint: 'https://b.example.com/v1', timeouts: { totalMs: 30_000 } }],
        }),
        ADMIN,
      );
      const [primary, fallback] = agents.getActive('inherit').endpoints;
      expect(primary?.timeouts).toEqual({ connectMs: 1000, totalMs: 60_000 });
      expect(fallback?.model).toBe('gpt-test');
      expect(fallback?.timeouts).toEqual({ connectMs: 1000, totalMs: 30_000 });
      expect(agents.find('inherit')?.agent.fallbacks[0]?.model).toBeUndefined();
    });

    it('lists agents by name, active only unless asked, with counts', async () => {
      const agents = await startedService();
      await agents.create(agentInput('z1', { name: 'Zulu' }), ADMIN);
      await agents.create(agentInput('a1', { name: 'Alpha' }), ADMIN);
      await agents.create(agentInput('m1', { name: 'Mike', isActive: false }), ADMIN);
      expect(agents.list().map((a) => a.id)).toEqual(['a1', 'z1']);
      expect(agents.listActive().map((a) => a.id)).toEqual(['a1', 'z1']);
      expect(agents.list({ includeInactive: true }).map((a) => a.id)).toEqual(['a1', 'm1', 'z1']);
      expect(agents.counts()).toEqual({ totalAgents: 3, activeAgents: 2 });
    });

    it('re-reads the database periodically, catching a change nobody announced', async () => {
      const agents = await startedService({ reloadIntervalMs: 50 });
      await agents.create(agentInput('quiet'), ADMIN);
      await backend.database.db.updateTable('agents').set({ name: 'Changed behind its back' }).where('id', '=', 'quiet').execute();
      await eventually(() => expect(agents.find('quiet')?.agent.name).toBe('Changed behind its back'));
    });

    it('applies a change announced by another instance and ignores notices after stop()', async () => {
      const writer = await startedService();
      const reader = await startedService();
      await writer.create(agentInput('shared'), ADMIN);
      await eventually(() => expect(reader.find('shared')?.agent.name).toBe('Agent shared'));
      await writer.update('shared', { name: 'Renamed' }, ADMIN);
      await eventually(() => expect(reader.getActive('shared').agent.name).toBe('Renamed'));
      await reader.stop();
      await writer.remove('shared', ADMIN);
      expect(writer.find('shared')).toBeUndefined();
      // The stopped reader keeps its last view; give a would-be notice time to arrive first.
      await new Promise((r) => setTimeout(r, 200));
      expect(reader.find('shared')?.agent.name).toBe('Renamed');
    });

    it('notices a subscription that vanished without an error, subscribes again and catches up', async () => {
      let dropped = false;
      const leaky: SharedState = Object.create(backend.state) as SharedState;
      // The first subscription is silently dropped right after it is confirmed, as a recycled Redis connection would.
      leaky.subscribe = async (channel, onMessage) => {
        const unsubscribe = await backend.state.subscribe(channel, onMessage);
        if (dropped) return unsubscribe;
        dropped = true;
        await unsubscribe();
        return () => Promise.resolve();
      };
      const reader = await startedService({ state: leaky });
      const writer = await startedService();
      await writer.create(agentInput('healed'), ADMIN);
      await eventually(() => expect(reader.getActive('healed').agent.name).toBe('Agent healed'));
      await writer.update('healed', { name: 'Healed and renamed' }, ADMIN);
      await eventually(() => expect(reader.getActive('healed').agent.name).toBe('Healed and renamed'));
    });
  });

  describe('keys at rest', () => {
    it('stores only v2 ciphertext (with its key id), never the key', async () => {
      const agents = await startedService();
      await agents.create(agentInput('sealed'), ADMIN);
      const rows = await backend.database.db.selectFrom('agent_endpoints').select('api_key_encrypted').where('agent_id', '=', 'sealed').execute();
      expect(rows[0]?.api_key_encrypted).toMatch(/^v2:[\w-]+:[\w-]+:[\w-]+:[\w-]+$/);
      expect(JSON.stringify(rows)).not.toContain(KEY);
    });

    it('keeps the stored key when an update omits apiKey on the same origin, replaces it when given, and clears it with null', async () => {
      const agents = await startedService();
      await agents.create(agentInput('keys'), ADMIN);
      await agents.update('keys', { name: 'No key change', endpoint: 'https://primary.example.com/v1' }, ADMIN);
      expect(agents.getActive('keys').endpoints[0]?.apiKey).toBe(KEY);
      await agents.update('keys', { apiKey: 'sk-new' }, ADMIN);
      expect(agents.getActive('keys').endpoints[0]?.apiKey).toBe('sk-new');
      const cleared = await agents.update('keys', { apiKey: null }, ADMIN);
      expect(cleared.hasApiKey).toBe(false);
      expect(agents.getActive('keys').endpoints[0]?.apiKey).toBeUndefined();
    });

    it('drops the stored key when an update moves the primary to another origin without a key, so it is never sent there', async () => {
      const agents = await startedService();
      await agents.create(agentInput('moved'), ADMIN);
      for (const endpoint of ['https://primary.example.com:8443/v1', 'http://primary.example.com/v1', 'https://attacker.example.com/v1']) {
        await agents.update('moved', { apiKey: KEY }, ADMIN);
        const moved = await agents.update('moved', { endpoint }, ADMIN);
        expect(moved.hasApiKey, endpoint).toBe(false);
        expect(agents.getActive('moved').endpoints[0]?.apiKey, endpoint).toBeUndefined();
      }
      // The audit trail says why the key is gone.
      expect(audits.filter((e) => e.action === 'agent.update' && (e.detail as { apiKeysDropped?: number[] } | undefined)?.apiKeysDropped?.[0] === 0)).toHaveLength(3);
      await agents.update('moved', { endpoint: 'https://elsewhere.example.com/v1', apiKey: 'sk-for-elsewhere' }, ADMIN);
      expect(agents.getActive('moved').endpoints[0]?.apiKey).toBe('sk-for-elsewhere');
    });

    it('lets a fallback key follow its URL when fallbacks are reordered, and never to a new URL', async () => {
      const agents = await startedService();
      const b = { provider: 'openai' as const, endpoint: 'https://b.example.com/v1' };
      const c = { provider: 'openai' as const, endpoint: 'https://c.example.com/v1' };
      await agents.create(agentInput('fb', { fallbacks: [{ ...b, apiKey: 'key-b' }, { ...c, apiKey: 'key-c' }] }), ADMIN);
      await agents.update('fb', { fallbacks: [c, b, { provider: 'openai', endpoint: 'https://d.example.com/v1' }] }, ADMIN);
      const endpoints = agents.getActive('fb').endpoints;
      expect(endpoints.map((e) => [e.url, e.apiKey])).toEqual([
        ['https://primary.example.com/v1/chat/completions', KEY],
        ['https://c.example.com/v1', 'key-c'],
        ['https://b.example.com/v1', 'key-b'],
        ['https://d.example.com/v1', undefined],
      ]);
      expect(agents.find('fb')?.agent.fallbacks.map((f) => f.hasApiKey)).toEqual([true, true, false]);
    });

    it('keeps the primary endpoint row (its id) across updates', async () => {
      const agents = await startedService();
      await agents.create(agentInput('stable', { fallbacks: [{ provider: 'openai', endpoint: 'https://b.example.com/v1' }] }), ADMIN);
      const before = agents.getActive('stable').endpoints[0]?.id;
      await agents.update('stable', { model: 'gpt-next', fallbacks: [] }, ADMIN);
      const after = agents.getActive('stable');
      expect(after.endpoints.map((e) => e.id)).toEqual([before]);
      expect(after.agent.model).toBe('gpt-next');
    });

    it('marks keys sealed under another SECRETS_KEY as unreadable instead of failing', async () => {
      const writer = await startedService();
      await writer.create(agentInput('rotated'), ADMIN);
      const other = await startedService({ secrets: { secretsKey: `${SECRETS_KEY}-rotated` } });
      const resolved = other.find('rotated');
      expect(resolved?.agent.unreadableKeys).toEqual([0]);
      expect(resolved?.endpoints[0]?.apiKey).toBeUndefined();
      expect(other.checkConfig('rotated')).toEqual({ agentId: 'rotated', isValid: false, exists: true, isActive: true });
      const validation = await other.validateEndpoints('rotated', ADMIN);
      expect(validation.ok).toBe(false);
      expect(validation.endpoints[0]?.error?.code).toBe('api_key_unreadable');
      expect(validated).toHaveLength(0);
    });
  });

  describe('writes', () => {
    it('refuses a second agent with the same id', async () => {
      const agents = await startedService();
      await agents.create(agentInput('dup'), ADMIN);
      expect((await rejectionOf(agents.create(agentInput('dup'), ADMIN))).code).toBe('AGENT_EXISTS');
    });

    it('rejects an update that breaks a rule, changing nothing', async () => {
      const agents = await startedService();
      await agents.create(agentInput('strict'), ADMIN);
      const err = await rejectionOf(agents.update('strict', { model: null, name: 'Should not stick' }, ADMIN));
      expect(err.code).toBe('VALIDATION_FAILED');
      expect(err.details).toEqual([{ path: 'model', message: 'is required for provider openai' }]);
      expect(agents.getActive('strict').agent.name).toBe('Agent strict');
      const stored = await repo.findAgent(backend.database.db, 'strict');
      expect(stored?.row.name).toBe('Agent strict');
    });

    it('refuses to change the id and reports unknown agents', async () => {
      const agents = await startedService();
      await agents.create(agentInput('fixed'), ADMIN);
      expect((await rejectionOf(agents.update('fixed', { id: 'other' }, ADMIN))).code).toBe('VALIDATION_FAILED');
      expect((await rejectionOf(agents.update('ghost', { name: 'x' }, ADMIN))).code).toBe('AGENT_NOT_FOUND');
      expect((await rejectionOf(agents.remove('ghost', ADMIN))).code).toBe('AGENT_NOT_FOUND');
      expect((await rejectionOf(agents.setActive('ghost', true, ADMIN))).code).toBe('AGENT_NOT_FOUND');
    });

    it('records every change in the audit log with the actor, and never a key', async () => {
      const agents = await startedService();
      await agents.create(agentInput('audited'), ADMIN);
      await agents.update('audited', { apiKey: 'sk-rotated-secret' }, ADMIN);
      await agents.setActive('audited', false, ADMIN);
      await agents.setActive('audited', true, ADMIN);
      await agents.remove('audited', ADMIN);
      expect(audits.map((a) => [a.action, a.targetId, a.actorId, a.actorUsername, a.ip])).toEqual([
        ['agent.create', 'audited', ADMIN.userId, 'root', '10.0.0.1'],
        ['agent.update', 'audited', ADMIN.userId, 'root', '10.0.0.1'],
        ['agent.disable', 'audited', ADMIN.userId, 'root', '10.0.0.1'],
        ['agent.enable', 'audited', ADMIN.userId, 'root', '10.0.0.1'],
        ['agent.delete', 'audited', ADMIN.userId, 'root', '10.0.0.1'],
      ]);
      expect(audits[1]?.detail).toEqual({ fields: ['apiKey'], apiKeyChanged: true });
      expect(JSON.stringify(audits)).not.toContain('sk-rotated-secret');
      expect(JSON.stringify(audits)).not.toContain(KEY);
    });

    it('refuses a document with an endpoint on a refused IP address, importing none of it', async () => {
      const agents = await startedService();
      const err = await rejectionOf(agents.importDocument({ agents: [agentInput('fine'), agentInput('metadata', { fallbacks: [{ provider: 'openai', endpoint: 'http://[::ffff:169.254.169.254]/v1' }] })] }, ADMIN));
      expect(err.code).toBe('UPSTREAM_ADDRESS_FORBIDDEN');
      expect((err.details as { path: string }[]).map((p) => p.path)).toEqual(['agents[1].fallbacks[0].endpoint']);
      expect(await repo.countAgents(backend.database.db)).toBe(0);
    });

    it('imports a document all or nothing', async () => {
      const agents = await startedService();
      await agents.create(agentInput('existing', { name: 'Before import' }), ADMIN);
      const err = await rejectionOf(agents.importDocument({ agents: [agentInput('existing', { name: 'After import' }), agentInput('new-one'), agentInput('broken', { endpoint: 'nope' })] }, ADMIN));
      expect(err.code).toBe('AGENTS_CONFIG_INVALID');
      expect(err.details).toEqual([{ path: 'agents[2].endpoint', message: 'must be an http:// or https:// URL' }]);
      expect(await repo.countAgents(backend.database.db)).toBe(1);
      expect(agents.getActive('existing').agent.name).toBe('Before import');
      expect(audits.at(-1)).toMatchObject({ action: 'agent.import', success: false });

      const result = await agents.importDocument({ agents: [agentInput('existing', { name: 'After import', apiKey: undefined }), agentInput('new-one')] }, ADMIN);
      expect(result).toMatchObject({ imported: 2, created: 1, updated: 1 });
      expect(result.agents.map((a) => a.id)).toEqual(['existing', 'new-one']);
      // Import without apiKey keeps the stored key.
      expect(agents.getActive('existing').endpoints[0]?.apiKey).toBe(KEY);
      expect(agents.getActive('existing').agent.name).toBe('After import');
    });
  });

  describe('agents.json at start and reload', () => {
    it('imports AGENTS_CONFIG_PATH at start, filling ${ENV} placeholders', async () => {
      const file = path.join(tmpDir, 'start.json');
      await fs.writeFile(file, JSON.stringify({ agents: [{ ...agentInput('from-file'), apiKey: '${AGENTS_TEST_KEY}' }] }));
      const agents = await startedService({ config: { agentsConfigPath: file }, env: { AGENTS_TEST_KEY: 'sk-from-environment' } });
      expect(agents.getActive('from-file').endpoints[0]?.apiKey).toBe('sk-from-environment');
      expect(audits).toContainEqual(expect.objectContaining({ action: 'agent.import', actorUsername: 'system' }));
    });

    it('refuses to start on an invalid file, naming the problem, and writes nothing', async () => {
      const file = path.join(tmpDir, 'bad.json');
      await fs.writeFile(file, JSON.stringify({ agents: [{ ...agentInput('ok-agent') }, { ...agentInput('bad-agent'), apiKey: '${AGENTS_TEST_UNSET}' }] }));
      const err = await rejectionOf(service({ config: { agentsConfigPath: file }, env: {} }).start());
      expect(err.code).toBe('AGENTS_CONFIG_INVALID');
      expect(err.message).toContain('agents[1].apiKey: environment variable AGENTS_TEST_UNSET is not set');
      expect(await repo.countAgents(backend.database.db)).toBe(0);
    });

    it('refuses to start when the file cannot be read', async () => {
      const err = await rejectionOf(service({ config: { agentsConfigPath: path.join(tmpDir, 'missing.json') } }).start());
      expect(err.code).toBe('AGENTS_CONFIG_INVALID');
      expect(err.message).toMatch(/cannot read .*missing\.json \(ENOENT\)/);
    });

    it('re-imports the file on reload, keeping agents created through the API', async () => {
      const file = path.join(tmpDir, 'reload.json');
      await fs.writeFile(file, JSON.stringify({ agents: [agentInput('file-a')] }));
      const agents = await startedService({ config: { agentsConfigPath: file } });
      await agents.create(agentInput('api-made'), ADMIN);
      await fs.writeFile(file, JSON.stringify({ agents: [agentInput('file-a', { name: 'Edited in file' }), agentInput('file-b')] }));
      expect(await agents.reload(ADMIN)).toEqual({ totalAgents: 3, activeAgents: 3 });
      expect(agents.getActive('file-a').agent.name).toBe('Edited in file');
      await fs.writeFile(file, '{"agents": [');
      expect((await rejectionOf(agents.reload(ADMIN))).code).toBe('AGENTS_CONFIG_INVALID');
      expect(agents.counts().totalAgents).toBe(3);
    });
  });

  describe('validation through the provider registry', () => {
    it('calls validate for every endpoint with the decrypted key and scrubs the key from errors', async () => {
      const agents = await startedService();
      await agents.create(agentInput('check', { fallbacks: [{ provider: 'dify', endpoint: 'https://dify.example.com/v1', apiKey: 'app-dify-key' }] }), ADMIN);
      validateResult = (e) =>
        Promise.resolve(e.position === 0 ? { ok: true, latencyMs: 12, model: 'gpt-test' } : { ok: false, latencyMs: 7, error: { code: 'invalid_api_key', message: `Incorrect API key provided: ${e.apiKey ?? ''}`, status: 401 } });
      const result = await agents.validateEndpoints('check', ADMIN);
      expect(validated.map((e) => e.apiKey)).toEqual([KEY, 'app-dify-key']);
      expect(result).toEqual({
        agentId: 'check',
        ok: false,
        endpoints: [
          { position: 0, provider: 'openai', host: 'primary.example.com', ok: true, latencyMs: 12, model: 'gpt-test' },
          { position: 1, provider: 'dify', host: 'dify.example.com', ok: false, latencyMs: 7, error: { code: 'invalid_api_key', message: 'Incorrect API key provided: [redacted]', status: 401 } },
        ],
      });
      expect(audits.at(-1)).toMatchObject({ action: 'agent.validate', targetId: 'check' });
    });

    it('turns a throwing validator into a failed check', async () => {
      const agents = await startedService();
      await agents.create(agentInput('throws'), ADMIN);
      validateResult = () => Promise.reject(new Error(`boom ${KEY}`));
      const result = await agents.validateEndpoints('throws', ADMIN);
      expect(result.endpoints[0]).toMatchObject({ ok: false, error: { code: 'validation_failed', message: 'boom [redacted]' } });
    });

    it('reports an unknown agent', async () => {
      const agents = await startedService();
      expect((await rejectionOf(agents.validateEndpoints('ghost', ADMIN))).code).toBe('AGENT_NOT_FOUND');
      expect(agents.checkConfig('ghost')).toEqual({ agentId: 'ghost', isValid: false, exists: false, isActive: false });
    });
  });

  describe('demo agent', () => {
    it('is created once, follows the mock port while simulated, and is left alone once an admin repoints it', async () => {
      const agents = await startedService();
      expect(await agents.seedDemoAgent('http://127.0.0.1:4001/')).toBe('created');
      const demo = agents.getActive('demo');
      expect(demo.agent).toMatchObject({ name: 'Demo assistant (simulated)', simulated: true, provider: 'openai', model: 'mock-model' });
      expect(demo.agent.description).toMatch(/simulated by the built-in mock upstream/);
      expect(demo.endpoints[0]?.url).toBe('http://127.0.0.1:4001/v1/chat/completions');

      expect(await agents.seedDemoAgent('http://127.0.0.1:4001')).toBe('unchanged');
      expect(await agents.seedDemoAgent('http://127.0.0.1:4002')).toBe('moved');
      expect(agents.getActive('demo').endpoints[0]?.url).toBe('http://127.0.0.1:4002/v1/chat/completions');

      await agents.update('demo', { name: 'Renamed demo' }, ADMIN);
      expect(agents.getActive('demo').agent.simulated).toBe(true);
      await agents.update('demo', { endpoint: 'https://real.example.com/v1' }, ADMIN);
      expect(agents.getActive('demo').agent.simulated).toBe(false);
      expect(await agents.seedDemoAgent('http://127.0.0.1:4003')).toBe('not-simulated');
      expect(agents.getActive('demo').endpoints[0]?.url).toBe('https://real.example.com/v1');
      expect(await repo.countAgents(backend.database.db)).toBe(1);
    });

    it('does not replace an admin-made agent called demo', async () => {
      const agents = await startedService();
      await agents.create(agentInput('demo', { name: 'Our demo' }), ADMIN);
      expect(await agents.seedDemoAgent('http://127.0.0.1:4001')).toBe('not-simulated');
      expect(agents.getActive('demo').agent.name).toBe('Our demo');
    });
  });
});
