import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createMockUpstream } from '../../../../tools/src/mock-upstream/index.js';
import { backendNames } from '../../test/backends.js';
import { bearer, buildTestApp, createUserAndLogin, login, type TestApp } from '../../test/app.js';
import { createScriptedUpstream, type ScriptedUpstream } from '../../test/scripted-upstream.js';
import { parseSse, type ParsedEvent } from '../../test/sse.js';

/**
 * Every fault the mock upstream can inject (docs/mock-upstream.md), through
 * the chat API: what the client sees, what is stored, what is counted.
 * Each scenario has its own agent and model names, so breakers and request
 * counts do not mix.
 */

type Mock = Awaited<ReturnType<typeof createMockUpstream>>;

/** Deadlines no loaded test machine misses: for the endpoints a test does not mean to time out. */
const RELAXED = { connectMs: 30_000, firstTokenMs: 30_000, idleMs: 30_000 };

interface EndpointSpec {
  url: string;
  model: string;
  timeouts?: Record<string, number>;
}

function chunkText(events: ParsedEvent[]): string {
  return events
    .filter((e) => e.event === 'chunk')
    .map((e) => (e.json as { content: string }).content)
    .join('');
}

/** Text the client keeps: chunks after the last `reset`. */
function keptText(events: ParsedEvent[]): string {
  const lastReset = events.map((e) => e.event).lastIndexOf('reset');
  return chunkText(events.slice(lastReset + 1));
}

describe.each(await backendNames())('upstream faults through the chat API on %s', (backendName) => {
  let t: TestApp;
  let mock: Mock;
  let admin: string;
  let alice: string;
  const proxies: ScriptedUpstream[] = [];

  beforeAll(async () => {
    mock = await createMockUpstream({ port: 0, host: '127.0.0.1', defaultChunks: 6, defaultIntervalMs: 2 });
    t = await buildTestApp(backendName, {
      UPSTREAM_RETRY_BASE_MS: '0',
      UPSTREAM_MAX_ATTEMPTS: '2',
      BREAKER_FAILURE_THRESHOLD: '3',
      BREAKER_COOLDOWN_MS: '3600000',
    });
    admin = await login(t.app);
    alice = (await createUserAndLogin(t.app, admin, 'alice')).token;
  });

  afterAll(async () => {
    for (const p of proxies) await p.close();
    await t?.close();
    await mock?.close();
  });

  const openai = (fault = '') => `${mock.url}${fault ? `/fault/${fault}` : ''}/v1/chat/completions`;

  async function scripted(faults: string[]): Promise<string> {
    const proxy = await createScriptedUpstream(mock.url, faults);
    proxies.push(proxy);
    return `${proxy.url}/v1/chat/completions`;
  }

  async function agent(id: string, primary: EndpointSpec, fallbacks: EndpointSpec[] = [], extra: Record<string, unknown> = {}): Promise<void> {
    const res = await t.app.inject({
      method: 'POST',
      url: '/api/agents',
      headers: bearer(admin),
      payload: {
        id,
        name: id,
        provider: 'openai',
        endpoint: primary.url,
        model: primary.model,
        apiKey: 'k',
        ...(primary.timeouts ? { timeouts: primary.timeouts } : {}),
        fallbacks: fallbacks.map((f) => ({ provider: 'openai', endpoint: f.url, model: f.model, apiKey: 'k', ...(f.timeouts ? { timeouts: f.timeouts } : {}) })),
        ...extra,
      },
    });
    if (res.statusCode !== 201) throw new Error(`agent create failed: ${res.statusCode} ${res.body}`);
  }

  async function turn(agentId: string, text: string, stream = true) {
    const res = await t.app.inject({ method: 'POST', url: '/api/chat/completions', headers: bearer(alice), payload: { agentId, stream, messages: [{ role: 'user', content: text }] } });
    const events = stream ? parseSse(res.body) : [];
    const turnId = stream ? (events[0]?.json as { messageId: string } | undefined)?.messageId : res.json<{ data?: { messageId: string }; error?: { details: { messageId: string } } }>().data?.messageId;
    return { res, events, turnId };
  }

  const callsTo = (model: string) => mock.requests.filter((r) => (r.body as { model?: string } | undefined)?.model === model).length;

  async function stored(turnId: string | undefined) {
    if (!turnId) throw new Error('no turn id');
    return t.backend.database.db.selectFrom('messages').selectAll().where('id', '=', turnId).executeTakeFirstOrThrow();
  }

  async function failedAttempts(turnId: string | undefined) {
    await t.app.deps.failures.settled();
    if (!turnId) throw new Error('no turn id');
    return t.backend.database.db.selectFrom('upstream_failures').selectAll().where('message_id', '=', turnId).orderBy('id').execute();
  }

  const endOf = (events: ParsedEvent[]) => (events.at(-1)?.json as { status: string }).status;
  const errorOf = (events: ParsedEvent[]) => events.find((e) => e.event === 'error')?.json as { code: string; message: string } | undefined;

  describe('before the first token', () => {
    it('status 503 without Retry-After: the same endpoint is retried and answers; the failed call is counted apart', async () => {
      await agent('s503', { url: await scripted(['status=503']), model: 's503-m' });
      const { events, turnId } = await turn('s503', 'hello');
      expect(endOf(events)).toBe('complete');
      expect(events.map((e) => e.event)).not.toContain('reset');
      expect(events.map((e) => e.event)).not.toContain('error');
      expect(callsTo('s503-m')).toBe(2);
      const row = await stored(turnId);
      expect(row.status).toBe('complete');
      expect(row.content).toBe(chunkText(events));
      const failures = await failedAttempts(turnId);
      expect(failures).toHaveLength(1);
      expect(failures[0]).toMatchObject({ status: 503, error_code: 'UPSTREAM_ERROR', mid_answer: false, position: 0 });
    });

    it('status 429 with a short Retry-After: honoured, then the retry answers', async () => {
      await agent('s429', { url: await scripted(['status=429,retryAfter=1']), model: 's429-m' });
      const { events, turnId } = await turn('s429', 'hello');
      expect(endOf(events)).toBe('complete');
      expect((await failedAttempts(turnId)).map((f) => f.status)).toEqual([429]);
    });

    it('status 429 with a Retry-After above the cap: the endpoint is not retried, the fallback answers', async () => {
      await agent('s429long', { url: openai('status=429,retryAfter=120'), model: 's429long-p' }, [{ url: openai(), model: 's429long-f' }]);
      const { events, turnId } = await turn('s429long', 'hello');
      expect(endOf(events)).toBe('complete');
      expect(callsTo('s429long-p')).toBe(1);
      expect(callsTo('s429long-f')).toBe(1);
      expect((await stored(turnId)).model).toBe('s429long-f');
    });

    it('context length exceeded is not retried; the caller gets a clear error, the stored answer the provider reason', async () => {
      await agent('ctx', { url: openai('status=400,code=context_length_exceeded'), model: 'ctx-m' }, [{ url: openai(), model: 'ctx-m' }]);
      const { res, events, turnId } = await turn('ctx', 'a very long question');
      expect(res.statusCode).toBe(200);
      expect(errorOf(events)).toMatchObject({ code: 'UPSTREAM_CONTEXT_LENGTH_EXCEEDED' });
      expect(errorOf(events)?.message).toBe('The conversation is too long for the model; start a new chat or shorten the message');
      expect(endOf(events)).toBe('error');
      // Neither retried nor sent to the fallback that runs the same model.
      expect(callsTo('ctx-m')).toBe(1);
      expect((await stored(turnId)).error_code).toBe('UPSTREAM_CONTEXT_LENGTH_EXCEEDED');
      expect((await stored(turnId)).error_message).toContain('context_length_exceeded');
    });

    it('a non-streaming request gets the refusal as its HTTP error with a stable code', async () => {
      await agent('policy', { url: openai('status=400,code=content_policy_violation'), model: 'policy-m' });
      const { res } = await turn('policy', 'something', false);
      expect(res.statusCode).toBe(422);
      expect(res.json<{ error: { code: string; message: string } }>().error).toMatchObject({ code: 'UPSTREAM_CONTENT_POLICY' });
      expect(res.json<{ error: { message: string } }>().error.message).toBe('The model provider refused the content under its content policy');
      expect(callsTo('policy-m')).toBe(1);
    });

    it('a content-policy refusal reaches the caller even with another model to fall back on, and is recorded; an agent that opts in tries the other model', async () => {
      await agent('guarded', { url: openai('status=400,code=content_policy_violation'), model: 'guarded-m' }, [{ url: openai(), model: 'lenient-m' }]);
      const refused = await turn('guarded', 'something the provider refuses');
      expect(errorOf(refused.events)).toMatchObject({ code: 'UPSTREAM_CONTENT_POLICY' });
      expect(endOf(refused.events)).toBe('error');
      expect(callsTo('lenient-m')).toBe(0);
      expect((await stored(refused.turnId)).error_code).toBe('UPSTREAM_CONTENT_POLICY');
      expect(await t.app.inject({ method: 'GET', url: '/api/agents/guarded', headers: bearer(admin) }).then((r) => r.json<{ data: { contentPolicy: string } }>().data.contentPolicy)).toBe('pass-through');

      const patched = await t.app.inject({ method: 'PATCH', url: '/api/agents/guarded', headers: bearer(admin), payload: { contentPolicy: 'other-model' } });
      expect(patched.statusCode).toBe(200);
      const routed = await turn('guarded', 'something the provider refuses');
      expect(endOf(routed.events)).toBe('complete');
      expect(callsTo('lenient-m')).toBe(1);
      expect((await stored(routed.turnId)).model).toBe('lenient-m');

      const bad = await t.app.inject({ method: 'PATCH', url: '/api/agents/guarded', headers: bearer(admin), payload: { contentPolicy: 'anywhere' } });
      expect(bad.statusCode).toBe(400);
    });

    it('an authentication failure is not retried on its endpoint, and never leaks the key', async () => {
      await agent('auth', { url: openai('status=401'), model: 'auth-m' }, [], { apiKey: 'sk-auth-test-secret-0042' });
      const { events, turnId } = await turn('auth', 'hello');
      expect(errorOf(events)?.code).toBe('UPSTREAM_AUTH_FAILED');
      expect(JSON.stringify(events)).not.toContain('sk-auth-test-secret');
      expect((await stored(turnId)).error_message).toContain('status 401');
      expect(JSON.stringify(await stored(turnId))).not.toContain('sk-auth-test-secret');
      expect(callsTo('auth-m')).toBe(1);
    });

    it('a delay before the headers past the connect deadline: the fallback takes over unseen, without a second wait on the silent endpoint', async () => {
      await agent('hdr', { url: openai('headersDelay=5000'), model: 'hdr-p', timeouts: { connectMs: 200 } }, [{ url: openai(), model: 'hdr-f', timeouts: RELAXED }]);
      const { events, turnId } = await turn('hdr', 'hello');
      expect(endOf(events)).toBe('complete');
      expect(events.map((e) => e.event)).not.toContain('reset');
      const row = await stored(turnId);
      expect(row.model).toBe('hdr-f');
      const failures = await failedAttempts(turnId);
      expect(failures.map((f) => [f.kind, f.error_code])).toEqual([['timeout', 'UPSTREAM_TIMEOUT']]);
      expect(callsTo('hdr-p')).toBe(1);
    });

    it('a delay before the first token past its deadline: the fallback takes over unseen', async () => {
      await agent('ftok', { url: openai('firstTokenDelay=5000'), model: 'ftok-p', timeouts: { firstTokenMs: 200 } }, [{ url: openai(), model: 'ftok-f', timeouts: RELAXED }]);
      const { events, turnId } = await turn('ftok', 'hello');
      expect(endOf(events)).toBe('complete');
      expect(events.map((e) => e.event)).not.toContain('reset');
      expect((await stored(turnId)).model).toBe('ftok-f');
    });
  });

  describe('after the first token', () => {
    it.each([
      ['a cut stream', 'cutAfter=2', 'network'],
      ['a stall', 'stallAfter=2', 'timeout'],
      ['more unreadable chunks than UPSTREAM_MALFORMED_EVENTS_MAX (3)', 'malformedAfter=2,malformed=4', 'protocol'],
      ['an error inside the stream', 'errorAfter=2', 'http'],
    ])('%s is continued on the fallback: one seamless answer, no reset', async (_name, fault, kind) => {
      const id = `mid-${fault.replace(/[^a-z]/gi, '')}`;
      // Only the stall needs a short idle deadline; the fallback (which inherits the agent's deadlines) gets relaxed ones.
      await agent(id, { url: openai(fault), model: `${id}-p`, ...(kind === 'timeout' ? { timeouts: { idleMs: 300 } } : {}) }, [{ url: openai(), model: `${id}-f`, timeouts: RELAXED }]);
      const { events, turnId } = await turn(id, 'tell me');
      const names = events.map((e) => e.event);
      expect(names).not.toContain('reset');
      expect(endOf(events)).toBe('complete');
      expect(names).not.toContain('error');
      const row = await stored(turnId);
      expect(row.status).toBe('complete');
      // The broken attempt's two chunks and the fallback's continuation join into the whole answer, each word once.
      expect(chunkText(events)).toBe('Simulated answer to: tell me lorem ipsum dolor sit amet consectetur.');
      expect(row.content).toBe(chunkText(events));
      // The fallback was sent the partial answer to continue (prefill, the OpenAI-compatible default).
      const fallbackCall = mock.requests.find((r) => (r.body as { model?: string }).model === `${id}-f`)?.body as { messages: { role: string; content: string }[] };
      expect(fallbackCall.messages.at(-1)).toEqual({ role: 'assistant', content: chunkText(events.filter((e) => e.event === 'chunk').slice(0, 2)) });
      // The stored answer's model, endpoint and usage are the serving call's (the 4 chunks it continued with).
      expect(row.model).toBe(`${id}-f`);
      expect(row.completion_tokens).toBe(4);
      const failures = await failedAttempts(turnId);
      expect(failures).toHaveLength(1);
      expect(failures[0]).toMatchObject({ kind, mid_answer: true, error_code: 'UPSTREAM_INTERRUPTED', model: `${id}-p` });
      expect(failures[0]?.endpoint_id).not.toBe(row.endpoint_id);
    });

    it('a cut stream on the only endpoint is retried there, continuing the answer', async () => {
      await agent('onlycut', { url: await scripted(['cutAfter=2']), model: 'onlycut-m' });
      const { events, turnId } = await turn('onlycut', 'again');
      expect(events.map((e) => e.event)).not.toContain('reset');
      expect(endOf(events)).toBe('complete');
      const row = await stored(turnId);
      expect(row.content).toBe(chunkText(events));
      expect(row.content).toBe('Simulated answer to: again lorem ipsum dolor sit amet consectetur.');
    });

    it('a stream cut on every attempt ends as an error, never as a complete answer', async () => {
      await agent('alwayscut', { url: openai('cutAfter=2'), model: 'alwayscut-m' });
      const { events, turnId } = await turn('alwayscut', 'never whole');
      expect(endOf(events)).toBe('error');
      expect(errorOf(events)?.code).toBe('UPSTREAM_INTERRUPTED');
      expect(callsTo('alwayscut-m')).toBe(2);
      const row = await stored(turnId);
      expect(row.status).toBe('error');
      expect(row.error_code).toBe('UPSTREAM_INTERRUPTED');
      expect((await failedAttempts(turnId)).map((f) => f.mid_answer)).toEqual([true, true]);
    });

    it('a stream that ends cleanly without [DONE] is finished at once with its usage', async () => {
      // A generous idle deadline: a turn that waited for it instead of finishing would outlast the test.
      await agent('nodone', { url: openai('noDone=1'), model: 'nodone-m', timeouts: { idleMs: 600_000 } });
      const { events, turnId } = await turn('nodone', 'quick');
      expect(endOf(events)).toBe('complete');
      expect(events.map((e) => e.event)).toContain('usage');
      const row = await stored(turnId);
      expect(row.status).toBe('complete');
      expect(row.completion_tokens).toBe(6);
      expect(row.content).toBe(chunkText(events));
    });
  });

  describe('on every provider protocol', () => {
    const protocols = [
      { provider: 'anthropic', path: '/v1/messages', extra: { model: 'claude-mock' }, usage: true },
      { provider: 'fastgpt', path: '/api/v1/chat/completions', extra: { appId: '0123456789abcdef01234567' }, usage: false },
      { provider: 'dify', path: '/v1', extra: {}, usage: false },
    ] as const;
    // FastGPT and Dify answer a question to an app: there is no message to continue (continuation-kinds.ts).
    const restarting = protocols.filter((p) => p.provider !== 'anthropic');

    it.each(restarting)('$provider: a cut stream restarts on the fallback with a reset; the stored answer is the new one', async ({ provider, path, extra }) => {
      const id = `cut-${provider}`;
      const endpoint = (fault: string) => `${mock.url}${fault ? `/fault/${fault}` : ''}${path}`;
      const res = await t.app.inject({
        method: 'POST',
        url: '/api/agents',
        headers: bearer(admin),
        payload: { id, name: id, provider, endpoint: endpoint('cutAfter=2'), apiKey: 'k', ...extra, fallbacks: [{ provider, endpoint: endpoint(''), apiKey: 'k', ...extra }] },
      });
      expect(res.statusCode).toBe(201);
      const { events, turnId } = await turn(id, 'over again');
      expect(events.map((e) => e.event)).toContain('reset');
      expect(endOf(events)).toBe('complete');
      const row = await stored(turnId);
      expect(row.content).toBe(keptText(events));
      expect(row.content).toContain('Simulated answer to: over again');
      expect((await failedAttempts(turnId)).map((f) => [f.position, f.mid_answer])).toEqual([[0, true]]);
    });

    it.each(protocols)('$provider: a stream without its end marker is finished at once', async ({ provider, path, extra, usage }) => {
      const id = `nodone-${provider}`;
      const res = await t.app.inject({
        method: 'POST',
        url: '/api/agents',
        headers: bearer(admin),
        payload: { id, name: id, provider, endpoint: `${mock.url}/fault/noDone=1${path}`, apiKey: 'k', ...extra, timeouts: { idleMs: 600_000 } },
      });
      expect(res.statusCode).toBe(201);
      const { events, turnId } = await turn(id, 'quick');
      expect(endOf(events)).toBe('complete');
      const row = await stored(turnId);
      expect(row.status).toBe('complete');
      expect(row.content).toBe(chunkText(events));
      if (usage) expect(row.completion_tokens).toBe(6);
    });
  });

  describe('per-agent settings', () => {
    it('an agent\'s own retry.maxAttempts overrides the platform default', async () => {
      await agent('noretry', { url: openai('status=503'), model: 'noretry-m' }, [], { retry: { maxAttempts: 1 } });
      const { events } = await turn('noretry', 'once');
      expect(errorOf(events)?.code).toBe('UPSTREAM_ERROR');
      expect(callsTo('noretry-m')).toBe(1);
      const view = await t.app.inject({ method: 'GET', url: '/api/agents/noretry', headers: bearer(admin) });
      expect(view.json<{ data: { retry: unknown } }>().data.retry).toEqual({ maxAttempts: 1 });
    });

    it('a bad retry setting is refused with 400 and creates nothing; agents.json gets 422', async () => {
      const bad = await t.app.inject({ method: 'POST', url: '/api/agents', headers: bearer(admin), payload: { id: 'badretry', name: 'x', provider: 'openai', endpoint: openai(), retry: { maxAttempts: 0 } } });
      expect(bad.statusCode).toBe(400);
      expect(bad.json<{ error: { code: string } }>().error.code).toBe('VALIDATION_FAILED');
      expect((await t.app.inject({ method: 'GET', url: '/api/agents/badretry', headers: bearer(admin) })).statusCode).toBe(404);
      const file = await t.app.inject({ method: 'POST', url: '/api/agents/import', headers: bearer(admin), payload: { agents: [{ id: 'badretry', name: 'x', provider: 'openai', endpoint: openai(), retry: { maxAttempts: 11 } }] } });
      expect(file.statusCode).toBe(422);
      expect(file.json<{ error: { code: string } }>().error.code).toBe('AGENTS_CONFIG_INVALID');
      const patch = await t.app.inject({ method: 'PATCH', url: '/api/agents/noretry', headers: bearer(admin), payload: { retry: { baseDelayMs: -1 } } });
      expect(patch.statusCode).toBe(400);
      expect((await t.app.inject({ method: 'GET', url: '/api/agents/noretry', headers: bearer(admin) })).json<{ data: { retry: unknown } }>().data.retry).toEqual({ maxAttempts: 1 });
    });
  });

  describe('circuit breakers', () => {
    it('open after repeated failures: the primary is skipped and the fallback serves; the state is visible to admins', async () => {
      await agent('brk', { url: openai('status=503'), model: 'brk-p' }, [{ url: openai(), model: 'brk-f' }]);
      // Threshold 3, two attempts per turn: the second turn opens the primary's breaker.
      await turn('brk', 'one');
      await turn('brk', 'two');
      expect(callsTo('brk-p')).toBe(3);
      const { events, turnId } = await turn('brk', 'three');
      expect(endOf(events)).toBe('complete');
      expect(callsTo('brk-p')).toBe(3);
      expect((await stored(turnId)).model).toBe('brk-f');
      expect(await failedAttempts(turnId)).toEqual([]);

      const status = await t.app.inject({ method: 'GET', url: '/api/agents/brk/status', headers: bearer(admin) });
      const endpoints = status.json<{ data: { endpoints: { position: number; breaker?: { state: string }; failures?: { lastHour: number } }[] } }>().data.endpoints;
      expect(endpoints.map((e) => e.breaker?.state)).toEqual(['open', 'closed']);
      expect(endpoints[0]?.failures?.lastHour).toBe(3);
      // Signed-in users see whether the agent works, not the breakers.
      const asUser = await t.app.inject({ method: 'GET', url: '/api/agents/brk/status', headers: bearer(alice) });
      expect(asUser.json<{ data: { endpoints: { breaker?: unknown }[] } }>().data.endpoints[0]?.breaker).toBeUndefined();
    });

    it('when every endpoint is open the turn fails fast with a 503-style code and no upstream call', async () => {
      await agent('allopen', { url: openai('status=500'), model: 'allopen-m' });
      await turn('allopen', 'one');
      await turn('allopen', 'two');
      expect(callsTo('allopen-m')).toBe(3);
      const { events } = await turn('allopen', 'three');
      expect(errorOf(events)?.code).toBe('UPSTREAM_CIRCUIT_OPEN');
      expect(callsTo('allopen-m')).toBe(3);
      const { res } = await turn('allopen', 'four', false);
      expect(res.statusCode).toBe(503);
      expect(res.json<{ error: { code: string } }>().error.code).toBe('UPSTREAM_CIRCUIT_OPEN');
    });

    it('a caller-caused refusal does not count against the endpoint', async () => {
      await agent('refusals', { url: openai('status=400'), model: 'refusals-m' });
      for (let i = 0; i < 4; i++) await turn('refusals', `bad ${i}`);
      expect(callsTo('refusals-m')).toBe(4);
      const status = await t.app.inject({ method: 'GET', url: '/api/agents/refusals/status', headers: bearer(admin) });
      expect(status.json<{ data: { endpoints: { breaker?: { state: string } }[] } }>().data.endpoints[0]?.breaker?.state).toBe('closed');
    });
  });
});
