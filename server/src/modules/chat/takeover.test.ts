import crypto from 'node:crypto';
import { sql } from 'kysely';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createMockUpstream, type MockUpstream } from '../../../../tools/src/mock-upstream/index.js';
import { bearer, buildTestApp, login, type TestApp } from '../../test/app.js';
import { sampleSum } from '../../test/prometheus-text.js';
import { backendNames } from '../../test/backends.js';
import { eventually } from '../../test/sse.js';
import { createChatRepository, storedToolCalls } from './chat-repository.js';
import { ONE_PIXEL_PNG } from '../attachments/test-files.js';

/**
 * Answers left `streaming` by an instance that is gone (kill -9, or the same
 * single node before a restart) are finished by a live one; answers of a
 * live instance are left alone. The multi-process proof is in instances.test.ts
 * and tools/src/drill/takeover-timing.test.ts.
 */
describe.each(await backendNames())('taking over answers on %s', (backendName) => {
  let t: TestApp;
  let mock: MockUpstream;
  let token: string;
  let userId: string;

  beforeAll(async () => {
    mock = await createMockUpstream({ port: 0, defaultChunks: 3, defaultIntervalMs: 1 });
    t = await buildTestApp(backendName, { INSTANCE_HEARTBEAT_TTL_SECONDS: '0.6', TAKEOVER_SCAN_INTERVAL_MS: '60000' });
    token = await login(t.app);
    userId = (await t.backend.database.db.selectFrom('users').select('id').where('username', '=', 'admin').executeTakeFirstOrThrow()).id;
    for (const id of ['live', 'gone']) {
      const res = await t.app.inject({ method: 'POST', url: '/api/agents', headers: bearer(token), payload: { id, name: id, provider: 'openai', endpoint: `${mock.url}/v1/chat/completions`, apiKey: 'k', model: 'm' } });
      expect(res.statusCode).toBe(201);
    }
    // Dify answers a question to an app: nothing to continue, so its answers start over.
    const dify = await t.app.inject({ method: 'POST', url: '/api/agents', headers: bearer(token), payload: { id: 'app', name: 'app', provider: 'dify', endpoint: `${mock.url}/v1`, apiKey: 'k' } });
    expect(dify.statusCode).toBe(201);
    expect((await t.app.inject({ method: 'POST', url: '/api/agents/gone/disable', headers: bearer(token) })).statusCode).toBe(200);
  });
  afterAll(async () => {
    await t.close();
    await mock.close();
  });

  /**
   * An answer another instance started and left streaming, quiet for a
   * while: its last checkpoint, and the text its events in the shared buffer
   * carry (sent to the client, often ahead of the checkpoint).
   */
  async function orphan(owner: string, agentId: string, question: string, partial = { checkpoint: 'partial text from the dead instance', buffered: 'partial' }) {
    const repo = createChatRepository(t.backend.database, owner);
    const turn = { userId, agentId, sessionId: undefined, userMessageId: crypto.randomUUID(), assistantMessageId: crypto.randomUUID(), userContent: question, title: question };
    const created = await repo.createTurn(turn);
    await repo.checkpoint(turn.assistantMessageId, partial.checkpoint, null);
    await t.backend.state.appendEvents(turn.assistantMessageId, [{ id: 1, event: 'start', data: '{}' }, { id: 2, event: 'chunk', data: JSON.stringify({ content: partial.buffered }) }], 600);
    await sql`UPDATE messages SET updated_at = now() - interval '1 minute' WHERE id = ${turn.assistantMessageId}`.execute(t.backend.database.db);
    return { id: turn.assistantMessageId, sessionId: created?.sessionId };
  }
  const message = (id: string) => t.backend.database.db.selectFrom('messages').select(['status', 'content', 'owner_instance', 'error_code']).where('id', '=', id).executeTakeFirstOrThrow();

  const finished = (id: string) =>
    eventually(async () => {
      // With Redis, an owner missing from the registry is judged once this instance has beaten steadily for a while.
      await t.app.deps.chat.takeOverOrphans();
      const m = await message(id);
      return m.status === 'streaming' ? undefined : m;
    }, 'the answer to be finished');
  /** The buffered events after `afterId` once the `end` is there: the finishing write can land before the buffer's last flush. */
  const bufferedToEnd = (id: string, afterId: number) =>
    eventually(async () => {
      const events = await t.backend.state.readEvents(id, afterId);
      return events.at(-1)?.event === 'end' ? events : undefined;
    }, 'the buffer to hold the end');
  const chunks = (events: { event: string; data: string }[]) => events.filter((e) => e.event === 'chunk').map((e) => (JSON.parse(e.data) as { content: string }).content);

  it('finishes an answer whose instance holds no lease by continuing its partial text: events in a new block of ids after a reset', async () => {
    // The planned answer (3 chunks) is "Simulated answer to: finish me please lorem ipsum dolor."; the client got
    // "Simulated answer to: finish" (the buffer), the last checkpoint holds less.
    const left = await orphan('dead-instance', 'live', 'finish me please', { checkpoint: 'Simulated answer to: fin', buffered: 'Simulated answer to: finish' });
    await t.app.deps.chat.takeOverOrphans();
    const done = await finished(left.id);
    expect(done.status).toBe('complete');
    expect(done.content).toBe('Simulated answer to: finish me please lorem ipsum dolor.');
    expect(done.owner_instance).not.toBe('dead-instance');
    // The upstream was asked to continue the text the client holds, not to answer again.
    const call = mock.requests.at(-1)?.body as { messages: { role: string; content: string }[] };
    expect(call.messages.at(-1)).toEqual({ role: 'assistant', content: 'Simulated answer to: finish' });
    // A client reconnecting with Last-Event-ID 2 gets: reset, the text it had, then only the continuation.
    const events = await bufferedToEnd(left.id, 2);
    expect(events[0]).toMatchObject({ id: 1_000_001, event: 'reset' });
    expect(events[1]).toMatchObject({ id: 1_000_002, event: 'chunk' });
    expect(chunks(events)[0]).toBe('Simulated answer to: finish');
    expect(chunks(events).join('')).toBe(done.content);
    expect(events.at(-1)?.event).toBe('end');
    // The answer is readable through the API like any other.
    const history = await t.app.inject({ method: 'GET', url: `/api/chat-sessions/${left.sessionId}`, headers: bearer(token) });
    expect(history.body).toContain('finish me please');
    // Counted for the takeover-spike alert.
    expect(sampleSum(await t.app.deps.metrics.text(), 'llmchat_takeovers_total')).toBe(1);
  });

  it('continues from the checkpoint when the buffer holds no more of it', async () => {
    const left = await orphan('dead-instance', 'live', 'finish me please', { checkpoint: 'Simulated answer to: finish me', buffered: '' });
    await t.app.deps.chat.takeOverOrphans();
    const done = await finished(left.id);
    expect(done.content).toBe('Simulated answer to: finish me please lorem ipsum dolor.');
    expect(chunks(await bufferedToEnd(left.id, 2))[0]).toBe('Simulated answer to: finish me');
  });

  it('sends the question\'s attachments again when it takes over an answer to a question with one', async () => {
    const vision = await t.app.inject({ method: 'POST', url: '/api/agents', headers: bearer(token), payload: { id: 'vision', name: 'vision', provider: 'openai', endpoint: `${mock.url}/v1/chat/completions`, apiKey: 'k', model: 'm', features: { supportsImages: true } } });
    expect(vision.statusCode, vision.body).toBe(201);
    const upload = await t.app.inject({ method: 'POST', url: '/api/attachments?name=dot.png', headers: { ...bearer(token), 'content-type': 'image/png' }, payload: ONE_PIXEL_PNG });
    expect(upload.statusCode, upload.body).toBe(201);
    const { url, sha256 } = upload.json<{ data: { url: string; sha256: string } }>().data;
    const question = JSON.stringify([{ type: 'text', text: 'look' }, { type: 'image_url', image_url: { url } }]);
    const left = await orphan('dead-instance', 'vision', question, { checkpoint: 'Simulated answer to: lo', buffered: '' });
    await t.app.deps.chat.takeOverOrphans();
    const done = await finished(left.id);
    // The continued answer echoes the question as the upstream got it: with the image, inline.
    expect(done.content).toBe(`Simulated answer to: look [received image image/png ${ONE_PIXEL_PNG.length} bytes sha256 ${sha256}] lorem ipsum dolor.`);
  });

  it('runs the whole question again where the endpoint cannot continue (Dify)', async () => {
    const left = await orphan('dead-instance', 'app', 'start me over', { checkpoint: 'Simulated answer to: start', buffered: 'Simulated answer to: start' });
    await t.app.deps.chat.takeOverOrphans();
    const done = await finished(left.id);
    expect(done.status).toBe('complete');
    expect(done.content).toBe('Simulated answer to: start me over lorem ipsum dolor.');
    const events = await bufferedToEnd(left.id, 2);
    expect(events[0]).toMatchObject({ id: 1_000_001, event: 'reset' });
    expect(chunks(events).join('')).toBe(done.content);
    expect(events.filter((e) => e.event === 'reset')).toHaveLength(1);
  });

  it('starts over an answer with tools that had begun a function call (a call cannot be prefilled), and ends one whose agent has no endpoint that calls functions', async () => {
    const tools = { tools: [{ type: 'function' as const, function: { name: 'get_weather', parameters: { type: 'object' } } }] };
    const callingOrphan = async (agentId: string) => {
      const repo = createChatRepository(t.backend.database, 'dead-instance');
      const turn = { userId, agentId, sessionId: undefined, userMessageId: crypto.randomUUID(), assistantMessageId: crypto.randomUUID(), userContent: 'Weather in Paris?', title: 'weather', options: { tools } };
      await repo.createTurn(turn);
      const piece = { index: 0, id: 'call_dead', name: 'get_weather', arguments: '{"ci' };
      await t.backend.state.appendEvents(turn.assistantMessageId, [{ id: 1, event: 'start', data: '{}' }, { id: 2, event: 'toolCall', data: JSON.stringify(piece) }], 600);
      await sql`UPDATE messages SET updated_at = now() - interval '1 minute' WHERE id = ${turn.assistantMessageId}`.execute(t.backend.database.db);
      return turn.assistantMessageId;
    };
    const calling = await callingOrphan('live');
    await t.app.deps.chat.takeOverOrphans();
    expect(await finished(calling)).toMatchObject({ status: 'complete', content: '' });
    const events = await bufferedToEnd(calling, 2);
    expect(events[0]?.event).toBe('reset');
    expect(events.map((e) => e.event)).not.toContain('chunk');
    const row = await t.backend.database.db.selectFrom('messages').select('metadata').where('id', '=', calling).executeTakeFirstOrThrow();
    expect(storedToolCalls(row.metadata)).toEqual([{ id: expect.stringMatching(/^call_/) as unknown, type: 'function', function: { name: 'get_weather', arguments: '{"question":"Weather in Paris?","call":0}' } }]);

    const nowhere = await callingOrphan('app');
    await t.app.deps.chat.takeOverOrphans();
    expect(await finished(nowhere)).toMatchObject({ status: 'error', error_code: 'AGENT_INACTIVE' });
  });

  it('leaves alone an answer whose instance holds a lease', async () => {
    const left = await orphan('living-instance', 'live', 'not yours');
    // A lease long enough to outlast the test: the instance lives.
    await t.backend.state.beatInstance('living-instance', 600_000, 600_000);
    await t.app.deps.chat.takeOverOrphans();
    expect(await message(left.id)).toMatchObject({ status: 'streaming', owner_instance: 'living-instance' });
    // Once its lease ends, the answer is taken over.
    await t.backend.state.expireInstance('living-instance');
    await eventually(async () => {
      await t.app.deps.chat.takeOverOrphans();
      return (await message(left.id)).status === 'complete';
    }, 'the answer to be finished after the lease ended');
  });

  it('takes over at once the answers of an instance that misses its lease, however recently they streamed, and tells that instance it was taken for dead', async () => {
    const repo = createChatRepository(t.backend.database, 'paused-instance');
    const turn = { userId, agentId: 'live', sessionId: undefined, userMessageId: crypto.randomUUID(), assistantMessageId: crypto.randomUUID(), userContent: 'take me now', title: 'take me now' };
    await repo.createTurn(turn);
    await repo.checkpoint(turn.assistantMessageId, 'streaming a moment ago', null);
    // It beats once with a lease of 0.3 s, then no more (a kill, or a long pause).
    await t.backend.state.beatInstance('paused-instance', 300, 300);
    // No scan runs (TAKEOVER_SCAN_INTERVAL_MS is a minute) and the answer is not quiet: the app's beats alone find it.
    await eventually(async () => (await message(turn.assistantMessageId)).status === 'complete', 'the answer to be taken over by a beat');
    expect((await message(turn.assistantMessageId)).owner_instance).not.toBe('paused-instance');
    // Back from its pause, the instance learns it was taken for dead (and leaves what it lost).
    expect(await t.backend.state.beatInstance('paused-instance', 300, 300)).toMatchObject({ lost: true, gone: [] });
  });

  it('an instance that learns it was taken for dead leaves the answers another instance now owns, and keeps the rest', async () => {
    if (!t.app.server.listening) await t.app.listen({ port: 0, host: '127.0.0.1' });
    const origin = `http://127.0.0.1:${(t.app.server.address() as { port: number }).port}`;
    const started: string[] = [];
    // Answers far longer than the test waits: only leaving ends the first one early.
    for (const content of ['taken from me [[mock chunks=3000 interval=20]]', 'still mine [[mock chunks=3000 interval=20]]']) {
      const response = await fetch(`${origin}/api/chat/completions`, { method: 'POST', headers: { ...bearer(token), 'content-type': 'application/json' }, body: JSON.stringify({ agentId: 'live', stream: true, messages: [{ role: 'user', content }] }) });
      const reader = (response.body as ReadableStream<Uint8Array>).getReader();
      const first = new TextDecoder().decode((await reader.read()).value);
      started.push(/"messageId":"([^"]+)"/.exec(first)?.[1] ?? '');
      await reader.cancel();
    }
    const [takenId, keptId] = started as [string, string];
    const self = (await message(takenId)).owner_instance ?? '';
    expect(self).not.toBe('');
    const taken = t.app.deps.chat.localGeneration(takenId);
    const kept = t.app.deps.chat.localGeneration(keptId);
    // Another instance took the first answer over while this one was paused, and said so in the registry.
    await sql`UPDATE messages SET owner_instance = 'the-other-instance' WHERE id = ${takenId}`.execute(t.backend.database.db);
    await t.backend.state.markInstanceTaken(self);
    await eventually(async () => t.app.deps.chat.localGeneration(takenId) === undefined, 'the taken answer to be left');
    expect(taken?.leftToAnotherInstance).toBe(true);
    expect(t.app.deps.chat.localGeneration(keptId)).toBe(kept);
    expect(kept?.leftToAnotherInstance).toBe(false);
    // Left, not finished: this instance wrote nothing more to the answer it lost.
    expect(await message(takenId)).toMatchObject({ status: 'streaming', owner_instance: 'the-other-instance' });
    t.app.deps.chat.localGeneration(keptId)?.stop();
    await eventually(async () => (await message(keptId)).status === 'stopped', 'the kept answer to stop');
    await sql`UPDATE messages SET status = 'error' WHERE id = ${takenId}`.execute(t.backend.database.db);
  });

  it('ends with a clear error an answer whose agent was disabled meanwhile', async () => {
    const left = await orphan('dead-instance', 'gone', 'agent is gone');
    await eventually(async () => {
      await t.app.deps.chat.takeOverOrphans();
      return (await message(left.id)).status !== 'streaming';
    }, 'the answer to be ended');
    expect(await message(left.id)).toMatchObject({ status: 'error', error_code: 'AGENT_INACTIVE', content: 'partial text from the dead instance' });
    const events = await bufferedToEnd(left.id, 2);
    expect(events.map((e) => e.event)).toEqual(['error', 'end']);
  });
});
