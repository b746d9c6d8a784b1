import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createMockUpstream } from '../../../../tools/src/mock-upstream/index.js';
import { backendNames } from '../../test/backends.js';
import { bearer, buildTestApp, createUserAndLogin, login, type TestApp } from '../../test/app.js';
import { parseSse, type ParsedEvent } from '../../test/sse.js';

/**
 * One unreadable event in an otherwise healthy stream is skipped, for every
 * provider kind: the answer goes on, whole, with no `reset`. More than
 * UPSTREAM_MALFORMED_EVENTS_MAX of them fail the attempt, as before.
 */

type Mock = Awaited<ReturnType<typeof createMockUpstream>>;

const RELAXED = { connectMs: 30_000, firstTokenMs: 30_000, idleMs: 30_000 };

function chunkText(events: ParsedEvent[]): string {
  return events
    .filter((e) => e.event === 'chunk')
    .map((e) => (e.json as { content: string }).content)
    .join('');
}

describe.each(await backendNames())('unreadable upstream events on %s', (backendName) => {
  let t: TestApp;
  let mock: Mock;
  let alice: string;

  beforeAll(async () => {
    mock = await createMockUpstream({ port: 0, host: '127.0.0.1', defaultChunks: 6, defaultIntervalMs: 2 });
    // One attempt and no fallback: a failed attempt is the turn's error, nothing hides it.
    t = await buildTestApp(backendName, { UPSTREAM_MAX_ATTEMPTS: '1', UPSTREAM_MALFORMED_EVENTS_MAX: '3' });
    const admin = await login(t.app);
    alice = (await createUserAndLogin(t.app, admin, 'alice')).token;
    const agents = [
      { id: 'openai', provider: 'openai', endpoint: `${mock.url}/v1/chat/completions`, model: 'm-openai' },
      { id: 'anthropic', provider: 'anthropic', endpoint: `${mock.url}/v1/messages`, model: 'm-anthropic' },
      { id: 'fastgpt', provider: 'fastgpt', endpoint: `${mock.url}/api/v1/chat/completions`, appId: '0123456789abcdef01234567' },
      { id: 'dify', provider: 'dify', endpoint: `${mock.url}/v1` },
    ];
    for (const a of agents) {
      const res = await t.app.inject({ method: 'POST', url: '/api/agents', headers: bearer(admin), payload: { name: a.id, description: 'x', capabilities: [], isActive: true, apiKey: 'k', timeouts: RELAXED, ...a } });
      if (res.statusCode !== 201) throw new Error(`agent create failed: ${res.statusCode} ${res.body}`);
    }
  });

  afterAll(async () => {
    await t?.close();
    await mock?.close();
  });

  async function turn(agentId: string, text: string) {
    const res = await t.app.inject({ method: 'POST', url: '/api/chat/completions', headers: bearer(alice), payload: { agentId, stream: true, messages: [{ role: 'user', content: text }] } });
    const events = parseSse(res.body);
    const turnId = (events[0]?.json as { messageId: string }).messageId;
    const row = await t.backend.database.db.selectFrom('messages').select(['status', 'content']).where('id', '=', turnId).executeTakeFirstOrThrow();
    return { events, row };
  }

  for (const agentId of ['openai', 'anthropic', 'fastgpt', 'dify']) {
    it(`${agentId}: skips up to three unreadable events and keeps the whole answer; a fourth fails the attempt`, async () => {
      const clean = await turn(agentId, 'whole answer');
      expect(clean.row.status).toBe('complete');

      const skipped = await turn(agentId, 'whole answer [[mock malformedAfter=2 malformed=3]]');
      expect(skipped.events.map((e) => e.event)).not.toContain('reset');
      expect(skipped.events.at(-1)?.json).toMatchObject({ status: 'complete' });
      // The same answer as without the bad events (the mock's text depends on the question only).
      expect(chunkText(skipped.events)).toBe(chunkText(clean.events));
      expect(skipped.row).toEqual({ status: 'complete', content: clean.row.content });

      const failed = await turn(agentId, 'whole answer [[mock malformedAfter=2 malformed=4]]');
      expect(failed.row.status).toBe('error');
      expect(failed.events.map((e) => e.event)).toContain('error');
    });
  }
});
