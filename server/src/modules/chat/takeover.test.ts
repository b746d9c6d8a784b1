import crypto from 'node:crypto';
import { sql } from 'kysely';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createMockUpstream, type MockUpstream } from '../../../../tools/src/mock-upstream/index.js';
import { bearer, buildTestApp, login, type TestApp } from '../../test/app.js';
import { backendNames } from '../../test/backends.js';
import { eventually } from '../../test/sse.js';
import { createChatRepository } from './chat-repository.js';
import { TakeoverService } from './takeover.js';

/**
 * Answers left `streaming` by an instance that is gone (kill -9, or the same
 * single node before a restart) are finished by a live one; answers of a
 * live instance are left alone. The multi-process proof is in instances.test.ts.
 */
describe.each(await backendNames())('taking over answers on %s', (backendName) => {
  let t: TestApp;
  let mock: MockUpstream;
  let token: string;
  let userId: string;

  beforeAll(async () => {
    mock = await createMockUpstream({ port: 0, defaultChunks: 3, defaultIntervalMs: 1 });
    t = await buildTestApp(backendName, { INSTANCE_HEARTBEAT_TTL_SECONDS: '2', TAKEOVER_SCAN_INTERVAL_MS: '60000' });
    token = await login(t.app);
    userId = (await t.backend.database.db.selectFrom('users').select('id').where('username', '=', 'admin').executeTakeFirstOrThrow()).id;
    for (const id of ['live', 'gone']) {
      const res = await t.app.inject({ method: 'POST', url: '/api/agents', headers: bearer(token), payload: { id, name: id, provider: 'openai', endpoint: `${mock.url}/v1/chat/completions`, apiKey: 'k', model: 'm' } });
      expect(res.statusCode).toBe(201);
    }
    expect((await t.app.inject({ method: 'POST', url: '/api/agents/gone/disable', headers: bearer(token) })).statusCode).toBe(200);
  });
  afterAll(async () => {
    await t.close();
    await mock.close();
  });

  /** An answer another instance started and left streaming, quiet for a while. */
  async function orphan(owner: string, agentId: string, question: string, options?: { temperature?: number }) {
    const repo = createChatRepository(t.backend.database, owner);
    const turn = { userId, agentId, sessionId: undefined, userMessageId: crypto.randomUUID(), assistantMessageId: crypto.randomUUID(), userContent: question, title: question, options };
    const created = await repo.createTurn(turn);
    await repo.checkpoint(turn.assistantMessageId, 'partial text from the dead instance', null);
    await t.backend.state.appendEvents(turn.assistantMessageId, [{ id: 1, event: 'start', data: '{}' }, { id: 2, event: 'chunk', data: '{"content":"partial"}' }], 600);
    await sql`UPDATE messages SET updated_at = now() - interval '1 minute' WHERE id = ${turn.assistantMessageId}`.execute(t.backend.database.db);
    return { id: turn.assistantMessageId, sessionId: created?.sessionId };
  }
  const message = (id: string) => t.backend.database.db.selectFrom('messages').select(['status', 'content', 'owner_instance', 'error_code']).where('id', '=', id).executeTakeFirstOrThrow();

  it('finishes an answer whose instance has no heartbeat: the same question again, events in a new block of ids after a reset', async () => {
    const left = await orphan('dead-instance', 'live', 'finish me please');
    await t.app.deps.chat.takeOverOrphans();
    const done = await eventually(async () => {
      const m = await message(left.id);
      return m.status === 'streaming' ? undefined : m;
    }, 'the answer to be finished');
    expect(done.status).toBe('complete');
    expect(done.content).toContain('finish me please');
    expect(done.content).not.toContain('dead instance');
    expect(done.owner_instance).not.toBe('dead-instance');
    const events = await t.backend.state.readEvents(left.id, 2);
    expect(events[0]).toMatchObject({ id: 1_000_001, event: 'reset' });
    expect(events.at(-1)?.event).toBe('end');
    // The answer is readable through the API like any other.
    const history = await t.app.inject({ method: 'GET', url: `/api/chat-sessions/${left.sessionId}`, headers: bearer(token) });
    expect(history.body).toContain('finish me please');
  });

  it('leaves alone an answer whose instance still beats', async () => {
    const left = await orphan('living-instance', 'live', 'not yours');
    await t.backend.state.set(TakeoverService.heartbeatKey('living-instance'), String(Date.now()), 60);
    await t.app.deps.chat.takeOverOrphans();
    expect(await message(left.id)).toMatchObject({ status: 'streaming', owner_instance: 'living-instance' });
    // Once it stops beating, the answer is taken over.
    await t.backend.state.del(TakeoverService.heartbeatKey('living-instance'));
    await t.app.deps.chat.takeOverOrphans();
    await eventually(async () => (await message(left.id)).status === 'complete', 'the answer to be finished after the heartbeat stopped');
  });

  it('ends with a clear error an answer whose agent was disabled meanwhile', async () => {
    const left = await orphan('dead-instance', 'gone', 'agent is gone');
    await t.app.deps.chat.takeOverOrphans();
    expect(await message(left.id)).toMatchObject({ status: 'error', error_code: 'AGENT_INACTIVE', content: 'partial text from the dead instance' });
    const events = await t.backend.state.readEvents(left.id, 2);
    expect(events.map((e) => e.event)).toEqual(['error', 'end']);
  });
});
