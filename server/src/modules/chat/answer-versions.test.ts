import crypto from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createMockUpstream } from '../../../../tools/src/mock-upstream/index.js';
import { bearer, buildTestApp, createUserAndLogin, login, type TestApp } from '../../test/app.js';
import { backendNames } from '../../test/backends.js';

/**
 * Answer versions (issue 18, item 2; README "Answer versions"): regenerate
 * and edit-and-resend keep the earlier versions, never overwritten; the
 * owner shows any of them, and the history, the provider's context, search
 * and export follow the version shown, with what followed it.
 */

interface Shown {
  id: string;
  role: string;
  content: string;
  versions: string[] | null;
}

let mock: Awaited<ReturnType<typeof createMockUpstream>>;

beforeAll(async () => {
  mock = await createMockUpstream({ port: 0, host: '127.0.0.1', defaultChunks: 2, defaultIntervalMs: 0 });
});
afterAll(async () => {
  await mock.close();
});

describe.each(await backendNames())('answer versions on %s', (backendName) => {
  let t: TestApp;
  let owner: string;
  let other: string;

  beforeAll(async () => {
    t = await buildTestApp(backendName);
    const admin = await login(t.app);
    const agent = await t.app.inject({ method: 'POST', url: '/api/agents', headers: bearer(admin), payload: { id: 'versions', name: 'Versions', provider: 'openai', endpoint: `${mock.url}/v1/chat/completions`, apiKey: 'k', model: 'versions-model' } });
    expect(agent.statusCode, agent.body).toBe(201);
    const suffix = crypto.randomUUID().slice(0, 8);
    owner = (await createUserAndLogin(t.app, admin, `versions-${suffix}`)).token;
    other = (await createUserAndLogin(t.app, admin, `stranger-${suffix}`)).token;
  });
  afterAll(async () => {
    await t?.close();
  });

  async function ask(content: string, chatId?: string): Promise<{ chatId: string; messageId: string }> {
    const res = await t.app.inject({ method: 'POST', url: '/api/chat/completions', headers: bearer(owner), payload: { agentId: 'versions', chatId, stream: false, messages: [{ role: 'user', content }] } });
    expect(res.statusCode, res.body).toBe(200);
    return res.json<{ data: { chatId: string; messageId: string } }>().data;
  }
  async function retry(chatId: string, content?: string): Promise<string> {
    const res = await t.app.inject({ method: 'POST', url: `/api/chat/history/${chatId}/retry`, headers: bearer(owner), payload: { stream: false, ...(content === undefined ? {} : { content }) } });
    expect(res.statusCode, res.body).toBe(200);
    return res.json<{ data: { messageId: string } }>().data.messageId;
  }
  async function shown(chatId: string): Promise<Shown[]> {
    const res = await t.app.inject({ method: 'GET', url: `/api/chat-sessions/${chatId}`, headers: bearer(owner) });
    expect(res.statusCode, res.body).toBe(200);
    return res.json<{ data: { messages: Shown[] } }>().data.messages;
  }
  const show = (chatId: string, messageId: string, token = owner) => t.app.inject({ method: 'POST', url: `/api/chat-sessions/${chatId}/versions`, headers: bearer(token), payload: { messageId } });
  const lastContext = () => ((mock.requests.at(-1)?.body as { messages: { role: string; content: string }[] }).messages ?? []).map((m) => m.content).join('\n');
  const searchHits = async (q: string) => (await t.app.inject({ method: 'GET', url: `/api/chat-sessions/search?q=${encodeURIComponent(q)}`, headers: bearer(owner) })).json<{ data: { messageId: string | null }[] }>().data.filter((h) => h.messageId !== null);

  it('keeps every regenerated answer as a version; showing one brings back what followed it, and the history, context and search follow', async () => {
    const { chatId, messageId: first } = await ask('versions one');
    const second = await retry(chatId);
    const third = await retry(chatId);
    let messages = await shown(chatId);
    expect(messages.map((m) => m.role)).toEqual(['user', 'assistant']);
    expect(messages[1]).toMatchObject({ id: third, versions: [first, second, third] });
    expect(messages[0]?.versions).toBeNull();
    // Never overwritten: every version is still stored.
    const rows = await t.backend.database.db.selectFrom('messages').select(['id', 'hidden_by']).where('session_id', '=', chatId).execute();
    expect(rows.length).toBe(4);

    expect((await show(chatId, first)).statusCode).toBe(200);
    messages = await shown(chatId);
    expect(messages.map((m) => m.id)).toEqual([messages[0]?.id, first]);
    expect(messages[1]?.versions).toEqual([first, second, third]);
    // A question asked after the first version follows it.
    const after = await ask('asked after the first version', chatId);
    expect((await shown(chatId)).map((m) => m.id)).toEqual([messages[0]?.id, first, expect.any(String), after.messageId]);
    expect(await searchHits('asked after the first version')).toHaveLength(2);

    // Showing the third version sets aside the first and what followed it: the history, search and the next question's context leave them out.
    expect((await show(chatId, third)).statusCode).toBe(200);
    expect((await shown(chatId)).map((m) => m.id)).toEqual([messages[0]?.id, third]);
    expect(await searchHits('asked after the first version')).toEqual([]);
    await ask('asked after the third version', chatId);
    expect(lastContext()).not.toContain('asked after the first version');
    // And back: the first version comes back with what followed it.
    expect((await show(chatId, first)).statusCode).toBe(200);
    const back = await shown(chatId);
    expect(back.map((m) => m.content).filter((c, i) => back[i]?.role === 'user')).toEqual(['versions one', 'asked after the first version']);
    expect(back.at(-1)?.id).toBe(after.messageId);
  });

  it('keeps an edited question as a version of the question; the context, history and export follow the one shown', async () => {
    const { chatId } = await ask('the original question');
    const [original] = await shown(chatId);
    await retry(chatId, 'the edited question');
    let messages = await shown(chatId);
    expect(messages.map((m) => m.content)[0]).toBe('the edited question');
    const edited = messages[0]!;
    expect(edited.versions).toEqual([original?.id, edited.id]);
    expect(messages[1]?.content).toContain('the edited question');
    // The original is kept as it was.
    const kept = await t.backend.database.db.selectFrom('messages').select('content').where('id', '=', original!.id).executeTakeFirstOrThrow();
    expect(kept.content).toBe('the original question');

    await ask('a follow-up', chatId);
    expect(lastContext()).toContain('the edited question');
    expect(lastContext()).not.toContain('the original question');

    expect((await show(chatId, original!.id)).statusCode).toBe(200);
    messages = await shown(chatId);
    expect(messages.map((m) => m.content)).toEqual(['the original question', expect.stringContaining('the original question')]);
    const md = await t.app.inject({ method: 'GET', url: `/api/chat-sessions/${chatId}/export?format=markdown`, headers: bearer(owner) });
    expect(md.body).toContain('the original question');
    expect(md.body).not.toContain('the edited question');
    expect(md.body).not.toContain('a follow-up');
    await ask('another follow-up', chatId);
    expect(lastContext()).toContain('the original question');
    expect(lastContext()).not.toContain('the edited question');
  });

  it('refuses, changing nothing: someone else\'s conversation, a message that is no version here, bad input, and while an answer streams', async () => {
    const { chatId, messageId: first } = await ask('refusals');
    const second = await retry(chatId);
    const before = await shown(chatId);
    expect((await show(chatId, first, other)).statusCode).toBe(404);
    const elsewhere = await ask('another conversation');
    const notHere = await show(chatId, elsewhere.messageId);
    expect([notHere.statusCode, notHere.json<{ error: { code: string } }>().error.code]).toEqual([404, 'MESSAGE_NOT_FOUND']);
    expect((await show(chatId, 'not-a-uuid')).statusCode).toBe(400);
    // Showing the version shown already changes nothing and is no error.
    expect((await show(chatId, second)).statusCode).toBe(200);
    expect(await shown(chatId)).toEqual(before);

    // While an answer streams in the conversation, its versions stay as they are.
    const streaming = fetchStream(chatId);
    await expect.poll(async () => (await t.backend.database.db.selectFrom('messages').select('id').where('session_id', '=', chatId).where('status', '=', 'streaming').execute()).length).toBe(1);
    const running = await show(chatId, first);
    expect([running.statusCode, running.json<{ error: { code: string } }>().error.code]).toEqual([409, 'GENERATION_RUNNING']);
    await t.app.inject({ method: 'POST', url: '/api/chat/stop', headers: bearer(owner), payload: { chatId } });
    await streaming;
  });

  function fetchStream(chatId: string): Promise<unknown> {
    return t.app.inject({ method: 'POST', url: '/api/chat/completions', headers: bearer(owner), payload: { agentId: 'versions', chatId, stream: true, messages: [{ role: 'user', content: '[[mock chunks=400 interval=20]] a long one' }] } });
  }
});
