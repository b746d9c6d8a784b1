import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createMockUpstream } from '../../../../tools/src/mock-upstream/index.js';
import { backendNames } from '../../test/backends.js';
import { bearer, buildTestApp, createUserAndLogin, login, type TestApp } from '../../test/app.js';
import { eventually, parseSse, readSse, type ParsedEvent } from '../../test/sse.js';

type Mock = Awaited<ReturnType<typeof createMockUpstream>>;

interface Ctx {
  t: TestApp;
  mock: Mock;
  base: string;
  admin: string;
  alice: string;
  bob: string;
}

function chunkText(events: ParsedEvent[]): string {
  return events
    .filter((e) => e.event === 'chunk')
    .map((e) => (e.json as { content: string }).content)
    .join('');
}

async function countRows(t: TestApp, table: 'messages' | 'chat_sessions' | 'feedback'): Promise<number> {
  const row = await t.backend.database.db.selectFrom(table).select((eb) => eb.fn.countAll<number>().as('n')).executeTakeFirstOrThrow();
  return Number(row.n);
}

async function createAgent(c: Ctx, body: Record<string, unknown>): Promise<void> {
  const res = await c.t.app.inject({ method: 'POST', url: '/api/agents', headers: bearer(c.admin), payload: { description: 'test agent', capabilities: [], isActive: true, apiKey: 'test-key', ...body } });
  if (res.statusCode !== 201) throw new Error(`agent create failed: ${res.statusCode} ${res.body}`);
}

describe.each(await backendNames())('chat on %s', (backendName) => {
  const c = {} as Ctx;

  beforeAll(async () => {
    c.mock = await createMockUpstream({ port: 0, host: '127.0.0.1', defaultChunks: 5, defaultIntervalMs: 2 });
    c.t = await buildTestApp(backendName);
    await c.t.app.listen({ port: 0, host: '127.0.0.1' });
    c.base = `http://127.0.0.1:${(c.t.app.server.address() as AddressInfo).port}`;
    c.admin = await login(c.t.app);
    c.alice = (await createUserAndLogin(c.t.app, c.admin, 'alice')).token;
    c.bob = (await createUserAndLogin(c.t.app, c.admin, 'bob')).token;
    await createAgent(c, { id: 'gpt', name: 'GPT', provider: 'openai', endpoint: `${c.mock.url}/v1/chat/completions`, model: 'mock-model', systemPrompt: 'You are terse.' });
    await createAgent(c, { id: 'fast', name: 'FastGPT', provider: 'fastgpt', endpoint: `${c.mock.url}/api/v1/chat/completions`, appId: '0123456789abcdef01234567', features: { supportsChatId: true, supportsDetail: true }, welcomeText: 'Hello from FastGPT agent' });
    await createAgent(c, { id: 'claude', name: 'Claude', provider: 'anthropic', endpoint: `${c.mock.url}/v1/messages`, model: 'claude-mock', systemPrompt: 'Be kind.' });
    await createAgent(c, { id: 'dify', name: 'Dify', provider: 'dify', endpoint: `${c.mock.url}/v1` });
    await createAgent(c, { id: 'off', name: 'Off', provider: 'openai', endpoint: `${c.mock.url}/v1/chat/completions`, model: 'mock-model', isActive: false });
    await createAgent(c, {
      id: 'failover',
      name: 'Failover',
      provider: 'openai',
      endpoint: `${c.mock.url}/fault/status=503/v1/chat/completions`,
      model: 'primary-model',
      fallbacks: [{ provider: 'openai', endpoint: `${c.mock.url}/v1/chat/completions`, apiKey: 'fallback-key', model: 'fallback-model' }],
    });
  });

  afterAll(async () => {
    await c.t?.close();
    await c.mock?.close();
  });

  async function turn(token: string, payload: Record<string, unknown>) {
    const res = await c.t.app.inject({ method: 'POST', url: '/api/chat/completions', headers: bearer(token), payload: { stream: true, ...payload } });
    return { res, events: parseSse(res.body) };
  }

  describe('streaming turn', () => {
    it('streams start, chatId, chunks and end with increasing ids, and stores the answer', async () => {
      const { res, events } = await turn(c.alice, { agentId: 'gpt', messages: [{ role: 'user', content: 'What is 2+2?' }] });
      expect(res.statusCode).toBe(200);
      expect(res.headers['content-type']).toContain('text/event-stream');
      expect(res.headers['cache-control']).toBe('no-cache, no-transform');
      expect(res.headers['x-accel-buffering']).toBe('no');
      expect(res.headers['content-encoding']).toBeUndefined();
      expect(res.headers['x-content-type-options']).toBe('nosniff');
      const names = events.map((e) => e.event);
      expect(names[0]).toBe('start');
      expect(names[1]).toBe('chatId');
      expect(names.at(-1)).toBe('end');
      expect(names.filter((n) => n === 'chunk').length).toBeGreaterThan(0);
      expect(names).toContain('usage');
      const start = events[0]?.json as { messageId: string; sessionId: string };
      const seqs = events.map((e) => Number(e.id?.split(':')[1]));
      expect(seqs).toEqual(seqs.map((_, i) => i + 1));
      expect(events.every((e) => e.id?.startsWith(`${start.messageId}:`))).toBe(true);
      const text = chunkText(events);
      expect(text).toContain('Simulated answer to: What is 2+2?');

      const session = await c.t.app.inject({ method: 'GET', url: `/api/chat-sessions/${start.sessionId}`, headers: bearer(c.alice) });
      const data = session.json<{ data: { title: string; messages: { id: string; role: string; content: string; status: string; provider: string; model: string; usage: { totalTokens: number } | null; firstTokenMs: number | null; totalMs: number | null }[] } }>().data;
      expect(data.title).toBe('What is 2+2?');
      expect(data.messages.map((m) => m.role)).toEqual(['user', 'assistant']);
      const answer = data.messages[1];
      expect(answer?.id).toBe(start.messageId);
      expect(answer?.status).toBe('complete');
      expect(answer?.content).toBe(text);
      expect(answer?.provider).toBe('openai');
      expect(answer?.model).toBe('mock-model');
      expect(answer?.usage?.totalTokens).toBeGreaterThan(0);
      expect(answer?.firstTokenMs).not.toBeNull();
      expect(answer?.totalMs).not.toBeNull();
    });

    it('sends the agent system prompt upstream', async () => {
      c.mock.clearRequests();
      const { events } = await turn(c.alice, { agentId: 'gpt', messages: [{ role: 'user', content: 'hi' }] });
      expect(chunkText(events)).toMatch(/^\[system prompt received\]/);
      const sent = c.mock.requests.at(-1)?.body as { messages: { role: string; content: string }[] };
      expect(sent.messages[0]).toEqual({ role: 'system', content: 'You are terse.' });
    });

    it('continues a session with its stored context and keeps the legacy options object', async () => {
      const first = await turn(c.alice, { agentId: 'gpt', messages: [{ role: 'user', content: 'first question' }] });
      const sessionId = (first.events[0]?.json as { sessionId: string }).sessionId;
      c.mock.clearRequests();
      const second = await turn(c.alice, { agentId: 'gpt', options: { chatId: sessionId }, messages: [{ role: 'user', content: 'second question' }] });
      expect((second.events[0]?.json as { sessionId: string }).sessionId).toBe(sessionId);
      const sent = c.mock.requests.at(-1)?.body as { messages: { role: string; content: string }[] };
      expect(sent.messages.map((m) => m.role)).toEqual(['system', 'user', 'assistant', 'user']);
      expect(sent.messages[1]?.content).toBe('first question');
      expect(sent.messages[3]?.content).toBe('second question');
    });

    it('answers without streaming as one JSON body', async () => {
      const res = await c.t.app.inject({ method: 'POST', url: '/api/chat/completions', headers: bearer(c.alice), payload: { agentId: 'gpt', stream: false, messages: [{ role: 'user', content: 'blocking please' }] } });
      expect(res.statusCode).toBe(200);
      const body = res.json<{ success: boolean; data: { choices: { message: { content: string } }[]; chatId: string; messageId: string; usage: { total_tokens: number } } }>();
      expect(body.success).toBe(true);
      expect(body.data.choices[0]?.message.content).toContain('Simulated answer to: blocking please');
      expect(body.data.usage.total_tokens).toBeGreaterThan(0);
      const stored = await c.t.app.inject({ method: 'GET', url: `/api/chat-sessions/${body.data.chatId}`, headers: bearer(c.alice) });
      expect(stored.json<{ data: { messages: { status: string }[] } }>().data.messages[1]?.status).toBe('complete');
    });

    it('streams reasoning separately from the answer', async () => {
      const { events } = await turn(c.alice, { agentId: 'gpt', messages: [{ role: 'user', content: 'think first [[mock reasoning=3]]' }] });
      const reasoning = events.filter((e) => e.event === 'reasoning');
      expect(reasoning.length).toBe(3);
      const start = events[0]?.json as { sessionId: string };
      const stored = await c.t.app.inject({ method: 'GET', url: `/api/chat-sessions/${start.sessionId}`, headers: bearer(c.alice) });
      const answer = stored.json<{ data: { messages: { reasoning: string | null }[] } }>().data.messages[1];
      expect(answer?.reasoning).toBe(reasoning.map((e) => (e.json as { content: string }).content).join(''));
    });
  });

  describe('providers through the chat path', () => {
    it('FastGPT: detail gives flow-node status, the session id is its chatId, interactive nodes pass through', async () => {
      c.mock.clearRequests();
      const { events } = await turn(c.alice, { agentId: 'fast', detail: true, variables: { name: 'Ann' }, messages: [{ role: 'user', content: 'pick one [[mock interactive=select]]' }] });
      const start = events[0]?.json as { sessionId: string; messageId: string };
      expect(events.some((e) => e.event === 'status' && (e.json as { type: string }).type === 'flowNodeStatus')).toBe(true);
      const interactive = events.find((e) => e.event === 'interactive');
      expect(JSON.stringify(interactive?.json)).toContain('userSelect');
      const sent = c.mock.requests.at(-1)?.body as { chatId: string; detail: boolean; variables: Record<string, string>; responseChatItemId: string };
      expect(sent.chatId).toBe(start.sessionId);
      expect(sent.detail).toBe(true);
      expect(sent.variables).toEqual({ name: 'Ann' });
      expect(sent.responseChatItemId).toBe(start.messageId);
      expect(events.at(-1)?.event).toBe('end');
    });

    it('Anthropic: Messages API with top-level system prompt', async () => {
      c.mock.clearRequests();
      const { events } = await turn(c.alice, { agentId: 'claude', messages: [{ role: 'user', content: 'hello claude' }] });
      expect(chunkText(events)).toContain('Simulated answer to: hello claude');
      const req = c.mock.requests.at(-1);
      expect((req?.body as { system: string }).system).toBe('Be kind.');
      expect(req?.headers['anthropic-version']).toBeDefined();
    });

    it('Dify: the conversation id is kept and sent back on the next turn', async () => {
      const first = await turn(c.alice, { agentId: 'dify', messages: [{ role: 'user', content: 'hello dify' }] });
      expect(chunkText(first.events)).toContain('Simulated answer to: hello dify');
      const sessionId = (first.events[0]?.json as { sessionId: string }).sessionId;
      const firstConversation = (c.mock.requests.at(-1)?.body as { conversation_id?: string }).conversation_id;
      expect(firstConversation ?? '').toBe('');
      c.mock.clearRequests();
      await turn(c.alice, { agentId: 'dify', chatId: sessionId, messages: [{ role: 'user', content: 'again' }] });
      const second = c.mock.requests.at(-1)?.body as { conversation_id: string; query: string };
      expect(second.conversation_id).toMatch(/\S+/);
      expect(second.query).toBe('again');
    });

    it('falls back to the next endpoint when the primary fails before the first token', async () => {
      const { events } = await turn(c.alice, { agentId: 'failover', messages: [{ role: 'user', content: 'are you there' }] });
      expect(events.map((e) => e.event)).not.toContain('error');
      expect((events.at(-1)?.json as { status: string }).status).toBe('complete');
      const start = events[0]?.json as { sessionId: string };
      const stored = await c.t.app.inject({ method: 'GET', url: `/api/chat-sessions/${start.sessionId}`, headers: bearer(c.alice) });
      expect(stored.json<{ data: { messages: { model: string }[] } }>().data.messages[1]?.model).toBe('fallback-model');
    });

    it('an upstream error ends the turn with an error event and is stored as error', async () => {
      const { res, events } = await turn(c.alice, { agentId: 'gpt', messages: [{ role: 'user', content: 'fail [[mock status=400 code=context_length_exceeded]]' }] });
      expect(res.statusCode).toBe(200);
      const error = events.find((e) => e.event === 'error');
      expect((error?.json as { code: string }).code).toBe('UPSTREAM_CONTEXT_LENGTH_EXCEEDED');
      // A user gets the code's generic sentence; the provider's reason is for admins (issue 14, finding 3).
      expect((error?.json as { message: string }).message).toBe('The conversation is too long for the model; start a new chat or shorten the message');
      expect((events.at(-1)?.json as { status: string }).status).toBe('error');
      const start = events[0]?.json as { sessionId: string };
      const stored = await c.t.app.inject({ method: 'GET', url: `/api/chat-sessions/${start.sessionId}`, headers: bearer(c.alice) });
      const answer = stored.json<{ data: { messages: { status: string; error: { code: string } | null }[] } }>().data.messages[1];
      expect(answer?.status).toBe('error');
      expect(answer?.error?.code).toBe('UPSTREAM_CONTEXT_LENGTH_EXCEEDED');
    });

    it('a cut stream is never stored as a complete answer', async () => {
      const { events } = await turn(c.alice, { agentId: 'gpt', messages: [{ role: 'user', content: 'cut [[mock cutAfter=2 chunks=6]]' }] });
      expect((events.at(-1)?.json as { status: string }).status).toBe('error');
      expect(events.some((e) => e.event === 'error')).toBe(true);
    });
  });

  describe('durability', () => {
    it('writes the turn before the first event and finishes it after the client disconnects', async () => {
      const res = await fetch(`${c.base}/api/chat/completions`, {
        method: 'POST',
        headers: { ...bearer(c.alice), 'content-type': 'application/json' },
        body: JSON.stringify({ agentId: 'gpt', stream: true, messages: [{ role: 'user', content: 'long one [[mock chunks=30 interval=20]]' }] }),
      });
      expect(res.status).toBe(200);
      let messageId = '';
      // Read until the first chunk, then hang up.
      await readSse(res.body!, (event) => {
        if (event.event === 'start') messageId = (event.json as { messageId: string }).messageId;
        if (event.event === 'chunk') return false;
        return true;
      });
      const row = await c.t.backend.database.db.selectFrom('messages').select(['status']).where('id', '=', messageId).executeTakeFirstOrThrow();
      expect(['streaming', 'complete']).toContain(row.status);
      const finished = await eventually(async () => {
        const r = await c.t.backend.database.db.selectFrom('messages').select(['status', 'content']).where('id', '=', messageId).executeTakeFirstOrThrow();
        return r.status !== 'streaming' ? r : undefined;
      }, 'the abandoned answer to be stored');
      expect(finished.status).toBe('complete');
      expect(finished.content).toContain('Simulated answer to: long one');
      expect(finished.content.split(' ').length).toBeGreaterThan(5);
    });

    it('stops a running generation on request and keeps the partial answer', async () => {
      const res = await fetch(`${c.base}/api/chat/completions`, {
        method: 'POST',
        headers: { ...bearer(c.alice), 'content-type': 'application/json' },
        body: JSON.stringify({ agentId: 'gpt', stream: true, messages: [{ role: 'user', content: 'endless [[mock chunks=500 interval=20]]' }] }),
      });
      let messageId = '';
      let stopSent = false;
      const events = await readSse(res.body!, (event) => {
        if (event.event === 'start') messageId = (event.json as { messageId: string }).messageId;
        if (event.event === 'chunk' && !stopSent) {
          stopSent = true;
          void c.t.app.inject({ method: 'POST', url: '/api/chat/stop', headers: bearer(c.alice), payload: { messageId } });
        }
      });
      expect((events.at(-1)?.json as { status: string }).status).toBe('stopped');
      const row = await c.t.backend.database.db.selectFrom('messages').select(['status', 'content']).where('id', '=', messageId).executeTakeFirstOrThrow();
      expect(row.status).toBe('stopped');
      expect(row.content.length).toBeGreaterThan(0);
      expect(chunkText(events)).toBe(row.content);
    });

    it('replays missed events after Last-Event-ID', async () => {
      const { events } = await turn(c.alice, { agentId: 'gpt', messages: [{ role: 'user', content: 'replay me' }] });
      const start = events[0]?.json as { messageId: string };
      const res = await c.t.app.inject({ method: 'GET', url: `/api/chat/stream?messageId=${start.messageId}`, headers: { ...bearer(c.alice), 'last-event-id': `${start.messageId}:3` } });
      const replayed = parseSse(res.body);
      expect(replayed.map((e) => e.id)).toEqual(events.slice(3).map((e) => e.id));
      const other = await c.t.app.inject({ method: 'GET', url: `/api/chat/stream?messageId=${start.messageId}`, headers: bearer(c.bob) });
      expect(other.statusCode).toBe(404);
    });
  });

  describe('history, retry, feedback, init', () => {
    it('lists, reads, regenerates and deletes history with the original paths', async () => {
      const { events } = await turn(c.alice, { agentId: 'gpt', messages: [{ role: 'user', content: 'history test' }] });
      const start = events[0]?.json as { sessionId: string; messageId: string };
      const list = await c.t.app.inject({ method: 'GET', url: '/api/chat/history?agentId=gpt', headers: bearer(c.alice) });
      expect(list.json<{ data: { chatId: string }[] }>().data.map((s) => s.chatId)).toContain(start.sessionId);
      const detail = await c.t.app.inject({ method: 'GET', url: `/api/chat/history/${start.sessionId}`, headers: bearer(c.alice) });
      expect(detail.json<{ data: { messages: { role: string }[] } }>().data.messages.map((m) => m.role)).toEqual(['user', 'assistant']);

      const retry = await c.t.app.inject({ method: 'POST', url: `/api/chat/history/${start.sessionId}/retry`, headers: bearer(c.alice), payload: { stream: true } });
      const retried = parseSse(retry.body);
      const newId = (retried[0]?.json as { messageId: string }).messageId;
      expect(newId).not.toBe(start.messageId);
      expect(chunkText(retried)).toContain('Simulated answer to: history test');
      const after = await c.t.app.inject({ method: 'GET', url: `/api/chat/history/${start.sessionId}`, headers: bearer(c.alice) });
      const msgs = after.json<{ data: { messages: { id: string; role: string }[] } }>().data.messages;
      expect(msgs.map((m) => m.role)).toEqual(['user', 'assistant']);
      expect(msgs[1]?.id).toBe(newId);

      const del = await c.t.app.inject({ method: 'DELETE', url: `/api/chat/history/${start.sessionId}`, headers: bearer(c.alice) });
      expect(del.statusCode).toBe(200);
      const gone = await c.t.app.inject({ method: 'GET', url: `/api/chat/history/${start.sessionId}`, headers: bearer(c.alice) });
      expect(gone.statusCode).toBe(404);
    });

    it('edits the last question and answers the edited text; the old question and answer stay as earlier versions', async () => {
      const { events } = await turn(c.alice, { agentId: 'gpt', messages: [{ role: 'user', content: 'first question' }] });
      const start = events[0]?.json as { sessionId: string; messageId: string; userMessageId: string };
      const res = await c.t.app.inject({ method: 'POST', url: `/api/chat/history/${start.sessionId}/retry`, headers: bearer(c.alice), payload: { stream: true, content: 'edited question' } });
      expect(res.statusCode).toBe(200);
      const retried = parseSse(res.body);
      expect(chunkText(retried)).toContain('Simulated answer to: edited question');
      const { messageId: newAnswer, userMessageId: newQuestion } = retried[0]?.json as { messageId: string; userMessageId: string };
      expect(newQuestion).not.toBe(start.userMessageId);
      const after = await c.t.app.inject({ method: 'GET', url: `/api/chat-sessions/${start.sessionId}`, headers: bearer(c.alice) });
      const msgs = after.json<{ data: { messages: { id: string; role: string; content: string; status: string; versions: string[] | null }[] } }>().data.messages;
      expect(msgs.map((m) => [m.id, m.role])).toEqual([
        [newQuestion, 'user'],
        [newAnswer, 'assistant'],
      ]);
      expect(msgs[0]?.content).toBe('edited question');
      expect(msgs[0]?.versions).toEqual([start.userMessageId, newQuestion]);
      expect(msgs[1]?.content).toContain('Simulated answer to: edited question');
      expect(msgs[1]?.status).toBe('complete');
    });

    it('refuses to edit with bad input or an earlier answer, and changes nothing', async () => {
      const first = await turn(c.alice, { agentId: 'gpt', messages: [{ role: 'user', content: 'q one' }] });
      const start = first.events[0]?.json as { sessionId: string; messageId: string };
      await turn(c.alice, { agentId: 'gpt', chatId: start.sessionId, messages: [{ role: 'user', content: 'q two' }] });
      const snapshot = async () => (await c.t.app.inject({ method: 'GET', url: `/api/chat-sessions/${start.sessionId}`, headers: bearer(c.alice) })).json<{ data: { messages: unknown[] } }>().data.messages;
      const before = await snapshot();
      const url = `/api/chat/history/${start.sessionId}/retry`;
      const cases: [Record<string, unknown>, number, string][] = [
        [{ content: '' }, 400, 'VALIDATION_FAILED'],
        [{ content: 42 }, 400, 'VALIDATION_FAILED'],
        [{ content: '   ' }, 400, 'VALIDATION_FAILED'],
        [{ content: 'x'.repeat(200_001) }, 400, 'VALIDATION_FAILED'],
        [{ content: 'rewrite the first', dataId: start.messageId }, 409, 'NOT_LAST_QUESTION'],
      ];
      for (const [payload, status, code] of cases) {
        const res = await c.t.app.inject({ method: 'POST', url, headers: bearer(c.alice), payload });
        expect(res.statusCode, JSON.stringify(payload).slice(0, 60)).toBe(status);
        expect(res.json<{ error: { code: string } }>().error.code).toBe(code);
      }
      expect(await snapshot()).toEqual(before);
    });

    it('records feedback and forwards it to FastGPT', async () => {
      const { events } = await turn(c.alice, { agentId: 'fast', messages: [{ role: 'user', content: 'rate me' }] });
      const start = events[0]?.json as { sessionId: string; messageId: string };
      c.mock.clearRequests();
      const res = await c.t.app.inject({ method: 'POST', url: '/api/chat/feedback', headers: bearer(c.alice), payload: { messageId: start.messageId, rating: 'down', comment: 'too short' } });
      expect(res.statusCode).toBe(200);
      expect(res.json<{ data: { forwarded: boolean } }>().data.forwarded).toBe(true);
      const forwarded = c.mock.requests.find((r) => r.path.includes('updateUserFeedback'));
      expect(forwarded?.body).toMatchObject({ chatId: start.sessionId, dataId: start.messageId });
      const session = await c.t.app.inject({ method: 'GET', url: `/api/chat-sessions/${start.sessionId}`, headers: bearer(c.alice) });
      expect(session.json<{ data: { messages: { feedback: unknown }[] } }>().data.messages[1]?.feedback).toEqual({ rating: 'down', comment: 'too short' });
      // Legacy shape clears it.
      const clear = await c.t.app.inject({ method: 'POST', url: '/api/chat/feedback', headers: bearer(c.alice), payload: { dataId: start.messageId, chatId: start.sessionId, agentId: 'fast' } });
      expect(clear.json<{ data: { rating: null } }>().data.rating).toBeNull();
    });

    it('gives the welcome text, streamed or not', async () => {
      const plain = await c.t.app.inject({ method: 'GET', url: '/api/chat/init?appId=fast', headers: bearer(c.alice) });
      expect(plain.json<{ data: { welcomeText: string } }>().data.welcomeText).toBe('Hello from FastGPT agent');
      const streamed = await c.t.app.inject({ method: 'GET', url: '/api/chat/init?appId=fast&stream=true', headers: bearer(c.alice) });
      const events = parseSse(streamed.body);
      expect(events.map((e) => e.event)[0]).toBe('start');
      expect(events.map((e) => e.event).slice(-2)).toEqual(['complete', 'end']);
      expect(chunkText(events)).toBe('Hello from FastGPT agent');
      const unknown = await c.t.app.inject({ method: 'GET', url: '/api/chat/init?appId=nope', headers: bearer(c.alice) });
      expect(unknown.statusCode).toBe(404);
    });
  });

  describe('sessions', () => {
    it('creates, lists newest first, renames, archives, searches and deletes', async () => {
      const created = await c.t.app.inject({ method: 'POST', url: '/api/chat-sessions', headers: bearer(c.bob), payload: { agentId: 'gpt', title: 'Empty one' } });
      expect(created.statusCode).toBe(201);
      const id = created.json<{ data: { id: string } }>().data.id;
      const { events } = await turn(c.bob, { agentId: 'gpt', messages: [{ role: 'user', content: 'the zebra crossing question' }] });
      const talked = (events[0]?.json as { sessionId: string }).sessionId;
      await turn(c.bob, { agentId: 'gpt', messages: [{ role: 'user', content: '今天北京的天气怎么样' }] });

      const list = await c.t.app.inject({ method: 'GET', url: '/api/chat-sessions?pageSize=2', headers: bearer(c.bob) });
      const page = list.json<{ data: { items: { id: string }[]; total: number } }>().data;
      expect(page.total).toBe(3);
      expect(page.items.length).toBe(2);
      expect(page.items.map((s) => s.id)).not.toContain(id);

      const renamed = await c.t.app.inject({ method: 'PATCH', url: `/api/chat-sessions/${id}/title`, headers: bearer(c.bob), payload: { title: 'Renamed' } });
      expect(renamed.json<{ data: { title: string } }>().data.title).toBe('Renamed');

      const hits = await c.t.app.inject({ method: 'GET', url: '/api/chat-sessions/search?q=zebra', headers: bearer(c.bob) });
      const found = hits.json<{ data: { sessionId: string; snippet: string }[] }>().data;
      expect(found.some((h) => h.sessionId === talked && h.snippet.includes('<mark>zebra</mark>'))).toBe(true);
      const cjk = await c.t.app.inject({ method: 'GET', url: `/api/chat-sessions/search?q=${encodeURIComponent('天气')}`, headers: bearer(c.bob) });
      expect(cjk.json<{ data: { snippet: string }[] }>().data.some((h) => h.snippet.includes('天气'))).toBe(true);
      const aliceSearch = await c.t.app.inject({ method: 'GET', url: '/api/chat-sessions/search?q=zebra', headers: bearer(c.alice) });
      expect(aliceSearch.json<{ data: unknown[] }>().data).toEqual([]);

      await c.t.app.inject({ method: 'POST', url: `/api/chat-sessions/${id}/archive`, headers: bearer(c.bob) });
      const archived = await c.t.app.inject({ method: 'GET', url: '/api/chat-sessions?archived=only', headers: bearer(c.bob) });
      expect(archived.json<{ data: { items: { id: string }[] } }>().data.items.map((s) => s.id)).toEqual([id]);
      await c.t.app.inject({ method: 'POST', url: `/api/chat-sessions/${id}/unarchive`, headers: bearer(c.bob) });

      const paged = await c.t.app.inject({ method: 'GET', url: `/api/chat-sessions/${talked}?limit=1`, headers: bearer(c.bob) });
      const p1 = paged.json<{ data: { messages: { seq: number; role: string }[]; hasMore: boolean } }>().data;
      expect(p1.messages.map((m) => m.role)).toEqual(['assistant']);
      expect(p1.hasMore).toBe(true);
      const p2 = await c.t.app.inject({ method: 'GET', url: `/api/chat-sessions/${talked}?limit=1&before=${p1.messages[0]?.seq}`, headers: bearer(c.bob) });
      expect(p2.json<{ data: { messages: { role: string }[]; hasMore: boolean } }>().data).toMatchObject({ messages: [{ role: 'user' }], hasMore: false });

      const del = await c.t.app.inject({ method: 'DELETE', url: `/api/chat-sessions/${id}`, headers: bearer(c.bob) });
      expect(del.statusCode).toBe(200);
      const again = await c.t.app.inject({ method: 'DELETE', url: `/api/chat-sessions/${id}`, headers: bearer(c.bob) });
      expect(again.statusCode).toBe(404);
    });
  });

  describe('ownership', () => {
    it("nobody else — admins included — can read, change, continue, stop or rate a user's chat", async () => {
      const { events } = await turn(c.alice, { agentId: 'gpt', messages: [{ role: 'user', content: 'private matter' }] });
      const start = events[0]?.json as { sessionId: string; messageId: string };
      const before = { messages: await countRows(c.t, 'messages'), feedback: await countRows(c.t, 'feedback') };
      for (const token of [c.bob, c.admin]) {
        const h = bearer(token);
        const attempts = await Promise.all([
          c.t.app.inject({ method: 'GET', url: `/api/chat-sessions/${start.sessionId}`, headers: h }),
          c.t.app.inject({ method: 'GET', url: `/api/chat/history/${start.sessionId}`, headers: h }),
          c.t.app.inject({ method: 'PATCH', url: `/api/chat-sessions/${start.sessionId}/title`, headers: h, payload: { title: 'mine now' } }),
          c.t.app.inject({ method: 'POST', url: `/api/chat-sessions/${start.sessionId}/archive`, headers: h }),
          c.t.app.inject({ method: 'DELETE', url: `/api/chat-sessions/${start.sessionId}`, headers: h }),
          c.t.app.inject({ method: 'DELETE', url: `/api/chat/history/${start.sessionId}`, headers: h }),
          c.t.app.inject({ method: 'POST', url: '/api/chat/completions', headers: h, payload: { agentId: 'gpt', chatId: start.sessionId, messages: [{ role: 'user', content: 'hijack' }] } }),
          c.t.app.inject({ method: 'POST', url: `/api/chat/history/${start.sessionId}/retry`, headers: h, payload: {} }),
          c.t.app.inject({ method: 'POST', url: '/api/chat/stop', headers: h, payload: { messageId: start.messageId } }),
          c.t.app.inject({ method: 'POST', url: '/api/chat/feedback', headers: h, payload: { messageId: start.messageId, rating: 'up' } }),
        ]);
        for (const res of attempts) {
          expect(res.statusCode).toBe(404);
          expect(res.json<{ error: { code: string } }>().error.code).toMatch(/NOT_FOUND$/);
        }
      }
      expect(await countRows(c.t, 'messages')).toBe(before.messages);
      expect(await countRows(c.t, 'feedback')).toBe(before.feedback);
      const mine = await c.t.app.inject({ method: 'GET', url: `/api/chat-sessions/${start.sessionId}`, headers: bearer(c.alice) });
      expect(mine.json<{ data: { title: string } }>().data.title).toBe('private matter');
    });
  });

  describe('bad input', () => {
    const cases: [string, Record<string, unknown> | string, number, string][] = [
      ['missing agentId', { messages: [{ role: 'user', content: 'x' }] }, 400, 'VALIDATION_FAILED'],
      ['missing messages', { agentId: 'gpt' }, 400, 'VALIDATION_FAILED'],
      ['empty messages', { agentId: 'gpt', messages: [] }, 400, 'VALIDATION_FAILED'],
      ['messages not an array', { agentId: 'gpt', messages: 'hello' }, 400, 'VALIDATION_FAILED'],
      ['bad role', { agentId: 'gpt', messages: [{ role: 'wizard', content: 'x' }] }, 400, 'VALIDATION_FAILED'],
      ['empty content', { agentId: 'gpt', messages: [{ role: 'user', content: '' }] }, 400, 'VALIDATION_FAILED'],
      ['last message from assistant', { agentId: 'gpt', messages: [{ role: 'user', content: 'x' }, { role: 'assistant', content: 'y' }] }, 400, 'VALIDATION_FAILED'],
      ['temperature out of range', { agentId: 'gpt', temperature: 7, messages: [{ role: 'user', content: 'x' }] }, 400, 'VALIDATION_FAILED'],
      ['temperature wrong type', { agentId: 'gpt', temperature: 'hot', messages: [{ role: 'user', content: 'x' }] }, 400, 'VALIDATION_FAILED'],
      ['unknown field', { agentId: 'gpt', bogus: 1, messages: [{ role: 'user', content: 'x' }] }, 400, 'VALIDATION_FAILED'],
      ['chatId not a uuid', { agentId: 'gpt', chatId: 'chat_123', messages: [{ role: 'user', content: 'x' }] }, 400, 'VALIDATION_FAILED'],
      ['unknown chatId', { agentId: 'gpt', chatId: '00000000-0000-4000-8000-000000000000', messages: [{ role: 'user', content: 'x' }] }, 404, 'SESSION_NOT_FOUND'],
      ['unknown agent', { agentId: 'nope', messages: [{ role: 'user', content: 'x' }] }, 404, 'AGENT_NOT_FOUND'],
      ['malformed JSON', '{"agentId": "gpt", "messages": [', 400, 'INVALID_JSON'],
      ['a NUL character in the question', { agentId: 'gpt', messages: [{ role: 'user', content: 'a\u0000b' }] }, 400, 'VALIDATION_FAILED'],
      ['a NUL character in a variable name', { agentId: 'gpt', variables: { 'k\u0000': 1 }, messages: [{ role: 'user', content: 'x' }] }, 400, 'VALIDATION_FAILED'],
      ['variables nested 20,000 levels deep', `{"agentId":"gpt","variables":{"v":${'['.repeat(20_000)}${']'.repeat(20_000)}},"messages":[{"role":"user","content":"x"}]}`, 400, 'VALIDATION_FAILED'],
    ];
    it.each(cases)('%s → %s %s, nothing written', async (_name, payload, status, code) => {
      const before = { messages: await countRows(c.t, 'messages'), sessions: await countRows(c.t, 'chat_sessions') };
      const res = await c.t.app.inject({
        method: 'POST',
        url: '/api/chat/completions',
        headers: { ...bearer(c.alice), 'content-type': 'application/json' },
        payload: typeof payload === 'string' ? payload : JSON.stringify({ stream: true, ...payload }),
      });
      expect(res.statusCode).toBe(status);
      const body = res.json<{ error: { code: string; message: string; requestId: string } }>();
      expect(body.error.code).toBe(code);
      expect(body.error.requestId).toMatch(/\S/);
      expect(await countRows(c.t, 'messages')).toBe(before.messages);
      expect(await countRows(c.t, 'chat_sessions')).toBe(before.sessions);
    });

    it('names where a NUL character was found, in bodies and query strings (PostgreSQL cannot store it)', async () => {
      const body = await c.t.app.inject({ method: 'POST', url: '/api/chat/completions', headers: bearer(c.alice), payload: { agentId: 'gpt', messages: [{ role: 'user', content: 'x' }, { role: 'user', content: [{ type: 'text', text: 'y\u0000' }] }] } });
      expect(body.statusCode).toBe(400);
      expect(body.json<{ error: { code: string; details: { path: string }[] } }>().error).toMatchObject({ code: 'VALIDATION_FAILED', details: [{ path: '/messages/1/content/0/text' }] });
      const search = await c.t.app.inject({ method: 'GET', url: `/api/chat-sessions/search?q=${encodeURIComponent('a\u0000')}`, headers: bearer(c.alice) });
      expect(search.statusCode).toBe(400);
      expect(search.json<{ error: { code: string } }>().error.code).toBe('VALIDATION_FAILED');
    });

    it('an inactive agent is refused and nothing is written', async () => {
      const before = await countRows(c.t, 'messages');
      const res = await c.t.app.inject({ method: 'POST', url: '/api/chat/completions', headers: bearer(c.alice), payload: { agentId: 'off', messages: [{ role: 'user', content: 'x' }] } });
      expect(res.statusCode).toBeGreaterThanOrEqual(400);
      expect(res.statusCode).toBeLessThan(500);
      expect(res.json<{ error: { code: string } }>().error.code).toMatch(/^AGENT_(INACTIVE|NOT_FOUND)$/);
      expect(await countRows(c.t, 'messages')).toBe(before);
    });

    it('an oversized body gets 413', async () => {
      const huge = 'x'.repeat(c.t.config.bodyLimitBytes + 10);
      const res = await c.t.app.inject({ method: 'POST', url: '/api/chat/completions', headers: { ...bearer(c.alice), 'content-type': 'application/json' }, payload: JSON.stringify({ agentId: 'gpt', messages: [{ role: 'user', content: huge }] }) });
      expect(res.statusCode).toBe(413);
      expect(res.json<{ error: { code: string } }>().error.code).toBe('PAYLOAD_TOO_LARGE');
    });

    it('refuses missing, tampered and expired tokens', async () => {
      const payload = { agentId: 'gpt', messages: [{ role: 'user', content: 'x' }] };
      const none = await c.t.app.inject({ method: 'POST', url: '/api/chat/completions', payload });
      expect(none.statusCode).toBe(401);
      const [h, p, s] = c.alice.split('.');
      const tampered = await c.t.app.inject({ method: 'POST', url: '/api/chat/completions', headers: bearer(`${h}.${p}x.${s}`), payload });
      expect(tampered.statusCode).toBe(401);
      expect(tampered.json<{ error: { code: string } }>().error.code).toBe('TOKEN_INVALID');
      const { SignJWT } = await import('jose');
      const claims = JSON.parse(Buffer.from(p ?? '', 'base64url').toString()) as Record<string, unknown>;
      const expired = await new SignJWT({ ...claims, exp: Math.floor(Date.now() / 1000) - 60 })
        // The genuine header: its kid names the secret, so only the expiry is wrong.
        .setProtectedHeader(JSON.parse(Buffer.from(h ?? '', 'base64url').toString()) as { alg: 'HS256'; kid: string })
        .sign(new TextEncoder().encode(c.t.config.jwtSecret));
      const res = await c.t.app.inject({ method: 'POST', url: '/api/chat/completions', headers: bearer(expired), payload });
      expect(res.statusCode).toBe(401);
      expect(res.json<{ error: { code: string } }>().error.code).toBe('TOKEN_EXPIRED');
    });

    it('validates the other chat routes', async () => {
      const h = bearer(c.alice);
      const checks = await Promise.all([
        c.t.app.inject({ method: 'GET', url: '/api/chat-sessions/not-a-uuid', headers: h }),
        c.t.app.inject({ method: 'GET', url: '/api/chat-sessions?pageSize=5000', headers: h }),
        c.t.app.inject({ method: 'GET', url: '/api/chat-sessions/search', headers: h }),
        c.t.app.inject({ method: 'PATCH', url: '/api/chat-sessions/00000000-0000-4000-8000-000000000000/title', headers: h, payload: { title: '' } }),
        c.t.app.inject({ method: 'PATCH', url: '/api/chat-sessions/00000000-0000-4000-8000-000000000000/title', headers: h, payload: { title: 'x'.repeat(500) } }),
        c.t.app.inject({ method: 'POST', url: '/api/chat-sessions', headers: h, payload: { title: 'no agent' } }),
        c.t.app.inject({ method: 'POST', url: '/api/chat/stop', headers: h, payload: {} }),
        c.t.app.inject({ method: 'POST', url: '/api/chat/feedback', headers: h, payload: { messageId: 'nope', rating: 'up' } }),
        c.t.app.inject({ method: 'POST', url: '/api/chat/feedback', headers: h, payload: { messageId: '00000000-0000-4000-8000-000000000000', rating: 'meh' } }),
        c.t.app.inject({ method: 'GET', url: '/api/chat/init', headers: h }),
        c.t.app.inject({ method: 'DELETE', url: '/api/chat/history', headers: h }),
        c.t.app.inject({ method: 'GET', url: '/api/chat/stream', headers: h }),
      ]);
      for (const res of checks) {
        expect(res.statusCode).toBe(400);
        expect(res.json<{ error: { code: string } }>().error.code).toBe('VALIDATION_FAILED');
      }
      const missing = await c.t.app.inject({ method: 'POST', url: '/api/chat-sessions', headers: h, payload: { agentId: 'nope' } });
      expect(missing.statusCode).toBe(404);
    });
  });

  describe('OpenAI wire format at /v1', () => {
    it('serves models and completions to an API-key holder', async () => {
      const key = await c.t.app.inject({ method: 'POST', url: '/api/auth/api-keys', headers: bearer(c.alice), payload: { name: 'sdk' } });
      expect(key.statusCode).toBe(201);
      const apiKey = key.json<{ data: { key: string } }>().data.key;
      const models = await c.t.app.inject({ method: 'GET', url: '/v1/models', headers: bearer(apiKey) });
      const ids = models.json<{ data: { id: string }[] }>().data.map((m) => m.id);
      expect(ids).toContain('gpt');
      expect(ids).not.toContain('off');

      const blocking = await c.t.app.inject({ method: 'POST', url: '/v1/chat/completions', headers: bearer(apiKey), payload: { model: 'gpt', messages: [{ role: 'user', content: 'sdk call' }] } });
      expect(blocking.statusCode).toBe(200);
      const completion = blocking.json<{ object: string; choices: { message: { content: string }; finish_reason: string }[]; usage: { total_tokens: number } }>();
      expect(completion.object).toBe('chat.completion');
      expect(completion.choices[0]?.message.content).toContain('Simulated answer to: sdk call');
      expect(completion.choices[0]?.finish_reason).toBe('stop');

      const streamed = await c.t.app.inject({ method: 'POST', url: '/v1/chat/completions', headers: bearer(apiKey), payload: { model: 'gpt', stream: true, stream_options: { include_usage: true }, messages: [{ role: 'user', content: 'sdk stream' }] } });
      const lines = streamed.body.split('\n\n').filter(Boolean);
      expect(lines.at(-1)).toBe('data: [DONE]');
      const chunks = lines.slice(0, -1).map((l) => JSON.parse(l.slice(6)) as { object: string; choices: { delta: { content?: string }; finish_reason: string | null }[]; usage?: unknown });
      expect(chunks.every((ch) => ch.object === 'chat.completion.chunk')).toBe(true);
      expect(chunks.map((ch) => ch.choices[0]?.delta.content ?? '').join('')).toContain('Simulated answer to: sdk stream');
      expect(chunks.some((ch) => ch.choices[0]?.finish_reason === 'stop')).toBe(true);
      expect(chunks.at(-1)?.usage).toBeDefined();

      const unknown = await c.t.app.inject({ method: 'POST', url: '/v1/chat/completions', headers: bearer(apiKey), payload: { model: 'nope', messages: [{ role: 'user', content: 'x' }] } });
      expect(unknown.statusCode).toBe(404);
      const noKey = await c.t.app.inject({ method: 'GET', url: '/v1/models', headers: bearer('llmc_not-a-real-key') });
      expect(noKey.statusCode).toBe(401);
    });
  });
});
