import crypto from 'node:crypto';
import { sql } from 'kysely';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { migrateToLatest } from '../../db/migrate.js';
import { backendNames, createBackend, type Backend } from '../../test/backends.js';
import { createChatRepository, markSnippet, type ChatRepository } from './chat-repository.js';

describe('markSnippet', () => {
  it('escapes markup from answers and marks full-text matches', () => {
    expect(markSnippet('say <b>\u0002zebra\u0003</b> & go', 'zebra')).toBe('say &lt;b&gt;<mark>zebra</mark>&lt;/b&gt; &amp; go');
  });

  it('marks every occurrence of the needle when the database did not', () => {
    expect(markSnippet('今天天气好，天气真好 <script>', '天气')).toBe('今天<mark>天气</mark>好，<mark>天气</mark>真好 &lt;script&gt;');
    expect(markSnippet('Zebra zebra', 'zebra')).toBe('<mark>Zebra</mark> <mark>zebra</mark>');
  });
});

describe.each(await backendNames())('turn writes on %s', (name) => {
  let backend: Backend;
  let repo: ChatRepository;
  let alice: string;
  let bob: string;
  beforeAll(async () => {
    backend = await createBackend(name);
    await migrateToLatest(backend.database.db);
    const users = await backend.database.db
      .insertInto('users')
      .values(['alice', 'bob'].map((username) => ({ username, password_hash: 'x', updated_at: new Date(), password_changed_at: new Date() })))
      .returning(['id', 'username'])
      .execute();
    alice = users.find((u) => u.username === 'alice')?.id ?? '';
    bob = users.find((u) => u.username === 'bob')?.id ?? '';
    repo = createChatRepository(backend.database, 'instance-1');
  });
  afterAll(async () => {
    await backend.dispose();
  });

  const turn = (userId: string, sessionId: string | undefined, text: string) => ({
    userId,
    agentId: 'a',
    sessionId,
    userMessageId: crypto.randomUUID(),
    assistantMessageId: crypto.randomUUID(),
    userContent: text,
    title: text,
  });

  it('writes many concurrent turns, each question before its answer, and refuses another user session in the same batch', async () => {
    const first = await repo.createTurn(turn(alice, undefined, 'q0'));
    expect(first).toBeDefined();
    const sessionId = first?.sessionId ?? '';
    const mine = Array.from({ length: 30 }, (_, i) => turn(alice, i % 2 === 0 ? sessionId : undefined, `q${i + 1}`));
    const theirs = turn(bob, sessionId, 'hijack');
    const results = await Promise.all([...mine, theirs].map((t) => repo.createTurn(t)));
    expect(results.slice(0, -1).every((r) => r !== undefined)).toBe(true);
    expect(results.at(-1)).toBeUndefined();

    const rows = await backend.database.db.selectFrom('messages').select(['id', 'seq', 'role', 'session_id', 'user_id']).orderBy('seq').execute();
    expect(rows.some((r) => r.user_id === bob)).toBe(false);
    expect(rows).toHaveLength(2 * 31);
    for (const t of mine) {
      const q = rows.find((r) => r.id === t.userMessageId);
      const a = rows.find((r) => r.id === t.assistantMessageId);
      expect(q?.role).toBe('user');
      expect(a?.role).toBe('assistant');
      expect(q?.session_id).toBe(a?.session_id);
      expect((q?.seq ?? 0) < (a?.seq ?? 0)).toBe(true);
    }
    const session = await backend.database.db.selectFrom('chat_sessions').select(['message_count']).where('id', '=', sessionId).executeTakeFirstOrThrow();
    expect(session.message_count).toBe(2 + 2 * 15);
  });

  it('writes turns that start and turns that end in one statement when they meet, with the same results as apart', async () => {
    const statements: string[] = [];
    const database = backend.database;
    const watched = createChatRepository(
      {
        ...database,
        prepared: (statement, text, values) => {
          statements.push(statement);
          return database.prepared(statement, text, values);
        },
      },
      'instance-1',
    );
    const running = Array.from({ length: 8 }, (_, i) => turn(alice, undefined, `running ${i}`));
    const started = await Promise.all(running.map((t) => watched.createTurn(t)));
    const first = started[0];
    if (!first) throw new Error('not written');
    const outcome = (content: string) => ({ status: 'complete' as const, content, reasoning: null, totalTokens: 3, firstTokenMs: 2, totalMs: 9 });
    // The first write goes alone; everything fired while it is in flight shares the next statement.
    const lead = watched.createTurn(turn(alice, undefined, 'lead'));
    const fresh = Array.from({ length: 6 }, (_, i) => turn(alice, i % 2 === 0 ? first.sessionId : undefined, `fresh ${i}`));
    const hijack = turn(bob, first.sessionId, 'hijack');
    const [ends, creates, refused] = await Promise.all([
      Promise.all(running.map((t, i) => watched.finishTurn(t.assistantMessageId, '', outcome(`answer ${i}`)))),
      Promise.all(fresh.map((t) => watched.createTurn(t))),
      watched.createTurn(hijack),
      lead,
    ]);
    expect(statements).toContain('llmchat_create_and_finish_turns');
    expect(ends).toEqual(running.map(() => true));
    expect(creates.every((c) => c !== undefined)).toBe(true);
    expect(refused).toBeUndefined();
    // Ended once: a second ending in a mixed statement is refused too.
    const [again] = await Promise.all([watched.finishTurn(running[0]?.assistantMessageId ?? '', '', outcome('again')), watched.createTurn(turn(alice, undefined, 'more'))]);
    expect(again).toBe(false);

    const rows = await backend.database.db
      .selectFrom('messages')
      .select(['id', 'status', 'content', 'total_tokens', 'session_id', 'role'])
      .where('id', 'in', [...running, ...fresh].flatMap((t) => [t.assistantMessageId, t.userMessageId]))
      .execute();
    const byId = new Map(rows.map((r) => [r.id, r]));
    running.forEach((t, i) => expect(byId.get(t.assistantMessageId)).toMatchObject({ status: 'complete', content: `answer ${i}`, total_tokens: 3 }));
    for (const t of fresh) {
      expect(byId.get(t.userMessageId)).toMatchObject({ role: 'user', status: 'complete', content: t.userContent });
      expect(byId.get(t.assistantMessageId)).toMatchObject({ role: 'assistant', status: 'streaming', content: '' });
    }
    expect(await backend.database.db.selectFrom('messages').select('id').where('user_id', '=', bob).execute()).toEqual([]);
  });

  it('records the owner and options of a streaming answer; only the owner checkpoints and ends it, until another claims it', async () => {
    const other = createChatRepository(backend.database, 'instance-2');
    const t = { ...turn(alice, undefined, 'owned'), options: { temperature: 0.2, variables: { x: 1 }, maxTokens: undefined } };
    const created = await repo.createTurn(t);
    expect(created).toBeDefined();
    const row = await backend.database.db.selectFrom('messages').select(['owner_instance', 'metadata']).where('id', '=', t.assistantMessageId).executeTakeFirstOrThrow();
    expect(row).toEqual({ owner_instance: 'instance-1', metadata: { options: { temperature: 0.2, variables: { x: 1 } } } });
    const question = await backend.database.db.selectFrom('messages').select(['owner_instance', 'metadata']).where('id', '=', t.userMessageId).executeTakeFirstOrThrow();
    expect(question).toEqual({ owner_instance: null, metadata: null });

    // Not the owner: neither a checkpoint nor the end lands.
    await other.checkpoint(t.assistantMessageId, 'intruder', null);
    expect(await other.finishTurn(t.assistantMessageId, created?.sessionId ?? '', { status: 'complete', content: 'intruder', reasoning: null })).toBe(false);
    await repo.checkpoint(t.assistantMessageId, 'partial', null);

    // Quiet for a minute (now() can equal the checkpoint's timestamp within one millisecond).
    await sql`UPDATE messages SET updated_at = now() - interval '1 minute' WHERE id = ${t.assistantMessageId}`.execute(backend.database.db);
    expect((await repo.orphanCandidates(1_000, 100)).filter((c) => c.id === t.assistantMessageId)).toEqual([{ id: t.assistantMessageId, ownerInstance: 'instance-1' }]);

    // Two claims of the same dead owner's answer: exactly one wins.
    const third = createChatRepository(backend.database, 'instance-3');
    const claims = await Promise.all([other.claimTurn(t.assistantMessageId, 'instance-1'), third.claimTurn(t.assistantMessageId, 'instance-1')]);
    expect(claims.filter((c) => c !== undefined)).toHaveLength(1);
    const winner = claims[0] ? other : third;
    const claimed = claims[0] ?? claims[1];
    expect(claimed).toMatchObject({ id: t.assistantMessageId, sessionId: created?.sessionId, userId: alice, agentId: 'a', content: 'partial', options: { temperature: 0.2, variables: { x: 1 } } });

    // The old owner is fenced off; the new one ends the answer, once.
    expect(await repo.finishTurn(t.assistantMessageId, created?.sessionId ?? '', { status: 'complete', content: 'stale', reasoning: null })).toBe(false);
    expect(await winner.finishTurn(t.assistantMessageId, created?.sessionId ?? '', { status: 'complete', content: 'taken over', reasoning: null })).toBe(true);
    expect(await winner.finishTurn(t.assistantMessageId, created?.sessionId ?? '', { status: 'complete', content: 'twice', reasoning: null })).toBe(false);
    const ended = await backend.database.db.selectFrom('messages').select(['status', 'content']).where('id', '=', t.assistantMessageId).executeTakeFirstOrThrow();
    expect(ended).toEqual({ status: 'complete', content: 'taken over' });
    expect(await other.claimTurn(t.assistantMessageId, 'instance-1')).toBeUndefined();
  });

  it('checkpoints send only what follows the stored text, checked by its UTF-8 length; a wrong base or an ended turn does not land', async () => {
    const t = turn(alice, undefined, 'delta');
    await repo.createTurn(t);
    const id = t.assistantMessageId;
    const stored = () => backend.database.db.selectFrom('messages').select(['content', 'reasoning']).where('id', '=', id).executeTakeFirstOrThrow();
    expect(await repo.checkpoint(id, '你好 é', null)).toBe(true);
    const base = { contentBytes: Buffer.byteLength('你好 é'), reasoningBytes: 0 };
    expect(await repo.checkpoint(id, ', wörld', '', base)).toBe(true);
    expect(await stored()).toEqual({ content: '你好 é, wörld', reasoning: null });
    // The base no longer matches (counted in characters, not bytes): nothing changes, and the caller sends the whole text.
    expect(await repo.checkpoint(id, '!', '', { contentBytes: '你好 é, wörld'.length, reasoningBytes: 0 })).toBe(false);
    expect(await stored()).toEqual({ content: '你好 é, wörld', reasoning: null });
    const next = { contentBytes: Buffer.byteLength('你好 é, wörld'), reasoningBytes: 0 };
    expect(await repo.checkpoint(id, '!', '想', next)).toBe(true);
    expect(await repo.checkpoint(id, '', '一想', { contentBytes: next.contentBytes + 1, reasoningBytes: Buffer.byteLength('想') })).toBe(true);
    expect(await stored()).toEqual({ content: '你好 é, wörld!', reasoning: '想一想' });
    // The whole text again replaces it.
    expect(await repo.checkpoint(id, 'again', null)).toBe(true);
    expect(await stored()).toEqual({ content: 'again', reasoning: null });
    expect(await repo.finishTurn(id, '', { status: 'complete', content: 'final', reasoning: null })).toBe(true);
    expect(await repo.checkpoint(id, ' more', '', { contentBytes: 5, reasoningBytes: 0 })).toBe(false);
    expect(await repo.checkpoint(id, 'late', null)).toBe(false);
    expect(await stored()).toEqual({ content: 'final', reasoning: null });
  });

  it('checkpoints many streaming answers at once, keeping the newest text of each and leaving ended ones alone', async () => {
    const turns = Array.from({ length: 12 }, (_, i) => turn(alice, undefined, `cp${i}`));
    await Promise.all(turns.map((t) => repo.createTurn(t)));
    const ended = turns[0];
    if (!ended) throw new Error('no turn');
    expect(await repo.finishTurn(ended.assistantMessageId, '', { status: 'complete', content: 'final', reasoning: null })).toBe(true);
    // Fired together, so they share batches: each answer twice, the second newer; the ended one too.
    await Promise.all(
      turns.flatMap((t, i) => [repo.checkpoint(t.assistantMessageId, `old ${i}`, null), repo.checkpoint(t.assistantMessageId, `new ${i}`, i % 2 === 0 ? `thinking ${i}` : null)]),
    );
    const rows = await backend.database.db
      .selectFrom('messages')
      .select(['id', 'content', 'reasoning', 'status'])
      .where('id', 'in', turns.map((t) => t.assistantMessageId))
      .execute();
    const byId = new Map(rows.map((r) => [r.id, r]));
    expect(byId.get(ended.assistantMessageId)).toMatchObject({ content: 'final', status: 'complete' });
    turns.slice(1).forEach((t, k) => {
      const i = k + 1;
      expect(byId.get(t.assistantMessageId)).toEqual({ id: t.assistantMessageId, content: `new ${i}`, reasoning: i % 2 === 0 ? `thinking ${i}` : null, status: 'streaming' });
    });
  });
});
