import crypto from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createMockUpstream } from '../../../../tools/src/mock-upstream/index.js';
import { bearer, buildTestApp, createUserAndLogin, login, type TestApp } from '../../test/app.js';
import { backendNames } from '../../test/backends.js';

/**
 * Issue 18, items 3 and 4: a conversation switches agents mid-way and each
 * answer keeps the agent that wrote it; it exports as Markdown and JSON; a
 * read-only share link shows it to others (signed in, or anyone when an
 * admin allows it), is revocable at once, and is never someone else's door.
 */

interface Fixture {
  t: TestApp;
  admin: string;
  owner: { token: string; userId: string };
  other: { token: string; userId: string };
}

let mock: Awaited<ReturnType<typeof createMockUpstream>>;

async function fixture(backendName: Parameters<typeof buildTestApp>[0], env: Record<string, string> = {}): Promise<Fixture> {
  const t = await buildTestApp(backendName, env);
  const admin = await login(t.app);
  for (const [id, name] of [
    ['first', 'First agent'],
    ['second', 'Second agent'],
  ] as const) {
    const res = await t.app.inject({ method: 'POST', url: '/api/agents', headers: bearer(admin), payload: { id, name, provider: 'openai', endpoint: `${mock.url}/v1/chat/completions`, apiKey: 'k', model: `${id}-model` } });
    expect(res.statusCode, res.body).toBe(201);
  }
  const suffix = crypto.randomUUID().slice(0, 8);
  return { t, admin, owner: await createUserAndLogin(t.app, admin, `owner-${suffix}`), other: await createUserAndLogin(t.app, admin, `other-${suffix}`) };
}

async function turn(f: Fixture, agentId: string, content: string, chatId?: string): Promise<{ chatId: string; messageId: string }> {
  const res = await f.t.app.inject({ method: 'POST', url: '/api/chat/completions', headers: bearer(f.owner.token), payload: { agentId, chatId, stream: false, messages: [{ role: 'user', content }] } });
  expect(res.statusCode, res.body).toBe(200);
  return res.json<{ data: { chatId: string; messageId: string } }>().data;
}

async function shareCount(f: Fixture): Promise<number> {
  const row = await f.t.backend.database.db.selectFrom('share_links').select((eb) => eb.fn.countAll<string>().as('n')).executeTakeFirstOrThrow();
  return Number(row.n);
}

async function makeLink(f: Fixture, chatId: string): Promise<{ id: string; token: string; path: string }> {
  const res = await f.t.app.inject({ method: 'POST', url: `/api/chat-sessions/${chatId}/shares`, headers: bearer(f.owner.token) });
  expect(res.statusCode, res.body).toBe(201);
  return res.json<{ data: { id: string; token: string; path: string } }>().data;
}

beforeAll(async () => {
  mock = await createMockUpstream({ port: 0, host: '127.0.0.1', defaultChunks: 2, defaultIntervalMs: 0 });
});
afterAll(async () => {
  await mock.close();
});

describe.each(await backendNames())('agent switching, export and share links on %s', (backendName) => {
  let f: Fixture;
  let chatId: string;

  beforeAll(async () => {
    f = await fixture(backendName);
    chatId = (await turn(f, 'first', 'a question for the first agent')).chatId;
    // Switching in the header, then the next turn; and a turn that names another agent switches too.
    const switched = await f.t.app.inject({ method: 'PATCH', url: `/api/chat-sessions/${chatId}/agent`, headers: bearer(f.owner.token), payload: { agentId: 'second' } });
    expect(switched.statusCode, switched.body).toBe(200);
    expect(switched.json<{ data: { agentId: string } }>().data.agentId).toBe('second');
    await turn(f, 'second', 'a question for the second agent', chatId);
  }, 180_000);
  afterAll(async () => {
    await f?.t.close();
  });

  it('keeps the agent of each answer, and shows the session with its current agent', async () => {
    const res = await f.t.app.inject({ method: 'GET', url: `/api/chat-sessions/${chatId}`, headers: bearer(f.owner.token) });
    const session = res.json<{ data: { agentId: string; messages: { role: string; agentId: string | null; model: string | null }[] } }>().data;
    expect(session.agentId).toBe('second');
    expect(session.messages.filter((m) => m.role === 'assistant').map((m) => [m.agentId, m.model])).toEqual([
      ['first', 'first-model'],
      ['second', 'second-model'],
    ]);
    // A turn that names another agent moves the session to it as well.
    await turn(f, 'first', 'back to the first', chatId);
    const after = await f.t.app.inject({ method: 'GET', url: `/api/chat-sessions/${chatId}`, headers: bearer(f.owner.token) });
    expect(after.json<{ data: { agentId: string } }>().data.agentId).toBe('first');
    // Regenerating uses the session's current agent.
    const regen = await f.t.app.inject({ method: 'POST', url: `/api/chat/history/${chatId}/retry`, headers: bearer(f.owner.token), payload: { stream: false } });
    expect(regen.statusCode, regen.body).toBe(200);
  });

  it('refuses an unknown agent or someone else’s session, changing nothing', async () => {
    const unknown = await f.t.app.inject({ method: 'PATCH', url: `/api/chat-sessions/${chatId}/agent`, headers: bearer(f.owner.token), payload: { agentId: 'no-such-agent' } });
    expect([unknown.statusCode, unknown.json<{ error: { code: string } }>().error.code]).toEqual([404, 'AGENT_NOT_FOUND']);
    const theirs = await f.t.app.inject({ method: 'PATCH', url: `/api/chat-sessions/${chatId}/agent`, headers: bearer(f.other.token), payload: { agentId: 'second' } });
    expect([theirs.statusCode, theirs.json<{ error: { code: string } }>().error.code]).toEqual([404, 'SESSION_NOT_FOUND']);
    const session = await f.t.app.inject({ method: 'GET', url: `/api/chat-sessions/${chatId}`, headers: bearer(f.owner.token) });
    expect(session.json<{ data: { agentId: string } }>().data.agentId).toBe('first');
  });

  it('exports the conversation as Markdown and as JSON, each answer with its agent', async () => {
    const md = await f.t.app.inject({ method: 'GET', url: `/api/chat-sessions/${chatId}/export?format=markdown`, headers: bearer(f.owner.token) });
    expect(md.statusCode, md.body).toBe(200);
    expect(md.headers['content-type']).toBe('text/markdown; charset=utf-8');
    expect(md.headers['content-disposition']).toMatch(/^attachment; filename="a-question-for-the-first-agent\.md"; filename\*=UTF-8''a-question-for-the-first-agent\.md$/);
    expect(md.headers['cache-control']).toBe('no-store');
    expect(md.body).toMatch(/^# a question for the first agent\n/);
    expect(md.body).toContain('## You\n');
    expect(md.body).toContain('## First agent\n');
    expect(md.body).toContain('## Second agent\n');
    expect(md.body).toContain('a question for the second agent');

    const json = await f.t.app.inject({ method: 'GET', url: `/api/chat-sessions/${chatId}/export?format=json`, headers: bearer(f.owner.token) });
    expect(json.headers['content-type']).toBe('application/json; charset=utf-8');
    const doc = json.json<{ format: string; session: { id: string; title: string }; messages: { role: string; content: string; agentName: string | null; status: string }[] }>();
    expect(doc.format).toBe('llmchat.conversation.v1');
    expect(doc.session.id).toBe(chatId);
    expect(doc.messages.filter((m) => m.role === 'assistant').map((m) => m.agentName)).toEqual(['First agent', 'Second agent', 'First agent']);
    expect(doc.messages[0]).toMatchObject({ role: 'user', content: 'a question for the first agent', agentName: null, status: 'complete' });
  });

  it('refuses bad export input and someone else’s conversation', async () => {
    const bad = await f.t.app.inject({ method: 'GET', url: `/api/chat-sessions/${chatId}/export?format=pdf`, headers: bearer(f.owner.token) });
    expect([bad.statusCode, bad.json<{ error: { code: string } }>().error.code]).toEqual([400, 'VALIDATION_FAILED']);
    const theirs = await f.t.app.inject({ method: 'GET', url: `/api/chat-sessions/${chatId}/export?format=json`, headers: bearer(f.other.token) });
    expect([theirs.statusCode, theirs.json<{ error: { code: string } }>().error.code]).toEqual([404, 'SESSION_NOT_FOUND']);
    const nobody = await f.t.app.inject({ method: 'GET', url: `/api/chat-sessions/${chatId}/export?format=json` });
    expect(nobody.statusCode).toBe(401);
  });

  it('shares a read-only snapshot with signed-in people: token unguessable and stored hashed, nothing private shown, never cached or indexed', async () => {
    const link = await makeLink(f, chatId);
    expect(link.token).toMatch(/^[A-Za-z0-9_-]{43}$/); // 32 random bytes: 256 bits
    expect(link.path).toBe(`/s/${link.token}`);
    const stored = await f.t.backend.database.db.selectFrom('share_links').selectAll().where('id', '=', link.id).executeTakeFirstOrThrow();
    expect(stored.token_hash).toBe(crypto.createHash('sha256').update(link.token).digest('hex'));
    expect(JSON.stringify(stored)).not.toContain(link.token);
    // What is said after the link was made is not part of it.
    await turn(f, 'first', 'said after sharing', chatId);

    const view = await f.t.app.inject({ method: 'GET', url: `/api/shared/${link.token}`, headers: bearer(f.other.token) });
    expect(view.statusCode, view.body).toBe(200);
    expect(view.headers['cache-control']).toBe('no-store');
    expect(view.headers['x-robots-tag']).toBe('noindex, nofollow');
    const shared = view.json<{ data: { title: string; messages: { role: string; content: string; agentName: string | null }[] } }>().data;
    expect(shared.title).toBe('a question for the first agent');
    expect(shared.messages.map((m) => m.content)).not.toContain('said after sharing');
    expect(shared.messages.filter((m) => m.role === 'assistant').map((m) => m.agentName)).toEqual(['First agent', 'Second agent', 'First agent']);
    // Nothing about the owner or the stored rows: no user id, username, session id, message id, usage or feedback.
    for (const secret of [f.owner.userId, chatId, 'owner-', 'totalTokens', 'feedback', 'usage']) expect(view.body).not.toContain(secret);

    const nobody = await f.t.app.inject({ method: 'GET', url: `/api/shared/${link.token}` });
    expect([nobody.statusCode, nobody.json<{ error: { code: string } }>().error.code]).toEqual([401, 'UNAUTHENTICATED']);
  });

  it('revokes a link at once; only the owner can list or revoke it', async () => {
    const link = await makeLink(f, chatId);
    const list = await f.t.app.inject({ method: 'GET', url: `/api/chat-sessions/${chatId}/shares`, headers: bearer(f.owner.token) });
    expect(list.json<{ data: { id: string; revokedAt: string | null }[] }>().data.find((l) => l.id === link.id)?.revokedAt).toBeNull();
    expect(list.body).not.toContain(link.token);

    // Someone else cannot list, revoke or add links on it.
    const count = await shareCount(f);
    for (const request of [
      { method: 'GET' as const, url: `/api/chat-sessions/${chatId}/shares` },
      { method: 'POST' as const, url: `/api/chat-sessions/${chatId}/shares` },
      { method: 'DELETE' as const, url: `/api/chat-sessions/${chatId}/shares/${link.id}` },
    ]) {
      const res = await f.t.app.inject({ ...request, headers: bearer(f.other.token) });
      expect(res.statusCode, `${request.method} ${request.url}`).toBe(404);
    }
    expect(await shareCount(f)).toBe(count);
    expect((await f.t.app.inject({ method: 'GET', url: `/api/shared/${link.token}`, headers: bearer(f.other.token) })).statusCode).toBe(200);

    const revoked = await f.t.app.inject({ method: 'DELETE', url: `/api/chat-sessions/${chatId}/shares/${link.id}`, headers: bearer(f.owner.token) });
    expect(revoked.statusCode, revoked.body).toBe(200);
    const revokedAt = revoked.json<{ data: { revokedAt: string | null } }>().data.revokedAt;
    expect(revokedAt).not.toBeNull();
    // Again: harmless, the first time is kept, and nothing more is audited (below).
    const again = await f.t.app.inject({ method: 'DELETE', url: `/api/chat-sessions/${chatId}/shares/${link.id}`, headers: bearer(f.owner.token) });
    expect([again.statusCode, again.json<{ data: { revokedAt: string | null } }>().data.revokedAt]).toEqual([200, revokedAt]);
    const after = await f.t.app.inject({ method: 'GET', url: `/api/shared/${link.token}`, headers: bearer(f.other.token) });
    expect([after.statusCode, after.json<{ error: { code: string } }>().error.code]).toEqual([404, 'SHARE_NOT_FOUND']);
    // Unknown and malformed tokens look the same as a revoked one.
    for (const token of [crypto.randomBytes(32).toString('base64url'), 'short', '%2e%2e']) {
      const res = await f.t.app.inject({ method: 'GET', url: `/api/shared/${token}`, headers: bearer(f.other.token) });
      expect(res.statusCode, token).toBe(404);
    }
    // Making and revoking the link are audited, by the owner and only once each; the refused attempts are not, and no token is kept.
    const audited = await f.t.backend.database.db.selectFrom('audit_log').selectAll().where('target_id', '=', link.id).orderBy('id').execute();
    expect(audited.map((a) => [a.action, a.actor_id, a.target_type, (a.detail as { sessionId?: string } | null)?.sessionId])).toEqual([
      ['share.create', f.owner.userId, 'share_link', chatId],
      ['share.revoke', f.owner.userId, 'share_link', chatId],
    ]);
    expect(JSON.stringify(audited)).not.toContain(link.token);
  });

  it('stops serving a link when the conversation is deleted', async () => {
    const other = await turn(f, 'first', 'a conversation to delete');
    const link = await makeLink(f, other.chatId);
    expect((await f.t.app.inject({ method: 'DELETE', url: `/api/chat-sessions/${other.chatId}`, headers: bearer(f.owner.token) })).statusCode).toBe(200);
    expect((await f.t.app.inject({ method: 'GET', url: `/api/shared/${link.token}`, headers: bearer(f.other.token) })).statusCode).toBe(404);
  });
});

describe.each(await backendNames())('share links an admin opened to everyone, on %s', (backendName) => {
  let f: Fixture;
  beforeAll(async () => {
    f = await fixture(backendName, { SHARE_LINKS_PUBLIC: 'true' });
  }, 180_000);
  afterAll(async () => {
    await f?.t.close();
  });

  it('opens without signing in, until revoked or the owner is disabled', async () => {
    const { chatId } = await turn(f, 'first', 'a public question');
    const link = await makeLink(f, chatId);
    const view = await f.t.app.inject({ method: 'GET', url: `/api/shared/${link.token}` });
    expect(view.statusCode, view.body).toBe(200);
    expect(view.headers['x-robots-tag']).toBe('noindex, nofollow');
    expect(view.headers['cache-control']).toBe('no-store');
    expect(view.json<{ data: { messages: { content: string }[] } }>().data.messages[0]?.content).toBe('a public question');
    // The owner's other routes stay closed to nobody.
    expect((await f.t.app.inject({ method: 'GET', url: `/api/chat-sessions/${chatId}/shares` })).statusCode).toBe(401);

    const disabled = await f.t.app.inject({ method: 'POST', url: `/api/admin/users/${f.owner.userId}/disable`, headers: bearer(f.admin) });
    expect(disabled.statusCode, disabled.body).toBe(200);
    expect((await f.t.app.inject({ method: 'GET', url: `/api/shared/${link.token}` })).statusCode).toBe(404);
  });

  it('stops at once when revoked', async () => {
    const owner = await createUserAndLogin(f.t.app, f.admin, `owner2-${crypto.randomUUID().slice(0, 8)}`);
    const g = { ...f, owner };
    const { chatId } = await turn(g, 'second', 'another public question');
    const link = await makeLink(g, chatId);
    expect((await f.t.app.inject({ method: 'GET', url: `/api/shared/${link.token}` })).statusCode).toBe(200);
    expect((await f.t.app.inject({ method: 'DELETE', url: `/api/chat-sessions/${chatId}/shares/${link.id}`, headers: bearer(owner.token) })).statusCode).toBe(200);
    expect((await f.t.app.inject({ method: 'GET', url: `/api/shared/${link.token}` })).statusCode).toBe(404);
  });
});
