import pino from 'pino';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { migrateToLatest } from '../../db/migrate.js';
import { emptyAuditLog } from '../../test/audit-reset.js';
import { backendNames, createBackend, type Backend } from '../../test/backends.js';
import { createAuditLog, scrubDetail, type AuditLog } from './audit-log.js';

describe('scrubDetail', () => {
  it('drops secret-looking keys at any depth and keeps the rest', () => {
    const scrubbed = scrubDetail({
      username: 'alice',
      password: 'p1',
      newPassword: 'p2',
      nested: { refresh_token: 't', apiKey: 'k', key: 'k2', apiKeyId: 'id-1', name: 'n' },
      list: [{ secret: 's', ok: 1 }],
      authorization: 'Bearer x',
    });
    expect(scrubbed).toEqual({
      username: 'alice',
      password: '[redacted]',
      newPassword: '[redacted]',
      nested: { refresh_token: '[redacted]', apiKey: '[redacted]', key: '[redacted]', apiKeyId: 'id-1', name: 'n' },
      list: [{ secret: '[redacted]', ok: 1 }],
      authorization: '[redacted]',
    });
  });

  it('bounds long strings and deep nesting', () => {
    const scrubbed = scrubDetail({ long: 'x'.repeat(10_000), deep: { a: { b: { c: { d: { e: 1 } } } } } }) as { long: string; deep: unknown };
    expect(scrubbed.long.length).toBeLessThan(600);
    expect(JSON.stringify(scrubbed.deep)).toContain('[nested]');
  });
});

describe.each(await backendNames())('audit log on %s', (backendName) => {
  let backend: Backend;
  let audit: AuditLog;
  const warnings: string[] = [];

  beforeAll(async () => {
    backend = await createBackend(backendName);
    await migrateToLatest(backend.database.db);
    const logger = pino({ level: 'warn' }, { write: (line: string) => warnings.push(line) });
    audit = createAuditLog({ db: backend.database.db, logger });
  });
  afterAll(async () => {
    await backend.dispose();
  });
  beforeEach(async () => {
    await emptyAuditLog(backend.database.db);
    warnings.length = 0;
  });

  it('records an entry with defaults and a scrubbed detail', async () => {
    await audit.record({ action: 'test.thing', actorId: '00000000-0000-4000-8000-000000000001', actorUsername: 'alice', ip: '10.0.0.1', detail: { password: 'hunter22', reason: 'x' } });
    const { entries } = await audit.list({ limit: 10 });
    expect(entries).toHaveLength(1);
    expect(entries[0]).toMatchObject({ action: 'test.thing', actorUsername: 'alice', success: true, ip: '10.0.0.1', detail: { password: '[redacted]', reason: 'x' } });
    const raw = await backend.database.db.selectFrom('audit_log').select('detail').executeTakeFirstOrThrow();
    expect(JSON.stringify(raw)).not.toContain('hunter22');
  });

  it('never throws into the caller: a failed write is logged as a warning', async () => {
    await expect(audit.record({ action: null as unknown as string })).resolves.toBeUndefined();
    expect(warnings.join('')).toContain('audit log write failed');
    expect((await audit.list({ limit: 10 })).entries).toHaveLength(0);
  });

  it('ignores a non-UUID actor id instead of failing', async () => {
    await audit.record({ action: 'test.actor', actorId: 'not-a-uuid', actorUsername: 'someone' });
    expect((await audit.list({ limit: 10 })).entries[0]).toMatchObject({ actorId: null, actorUsername: 'someone' });
  });

  it('filters by action, actor and time, newest first, and pages by cursor', async () => {
    const alice = '00000000-0000-4000-8000-00000000000a';
    for (let i = 0; i < 5; i++) await audit.record({ action: 'test.alpha', actorId: alice, actorUsername: 'Alice', detail: { i } });
    await audit.record({ action: 'test.beta', actorUsername: 'bob' });

    const alpha = await audit.list({ action: 'test.alpha', limit: 10 });
    expect(alpha.entries.map((e) => e.detail?.i)).toEqual([4, 3, 2, 1, 0]);
    expect(alpha.nextCursor).toBeNull();
    expect((await audit.list({ actor: 'alice', limit: 10 })).entries).toHaveLength(5);
    expect((await audit.list({ actor: alice, limit: 10 })).entries).toHaveLength(5);
    expect((await audit.list({ actorId: alice, limit: 10 })).entries).toHaveLength(5);
    expect((await audit.list({ actor: 'BOB', limit: 10 })).entries.map((e) => e.action)).toEqual(['test.beta']);

    const seen: number[] = [];
    let before: number | undefined;
    for (;;) {
      const page = await audit.list({ limit: 2, before });
      seen.push(...page.entries.map((e) => e.id));
      if (page.nextCursor === null) break;
      before = page.nextCursor;
    }
    expect(seen).toHaveLength(6);
    expect([...seen].sort((x, y) => y - x)).toEqual(seen);

    const all = await audit.list({ limit: 10 });
    const future = new Date(Date.now() + 60_000);
    expect((await audit.list({ from: future, limit: 10 })).entries).toHaveLength(0);
    expect((await audit.list({ to: future, limit: 10 })).entries).toHaveLength(all.entries.length);
    const at = new Date(all.entries[0]?.at ?? 0);
    expect((await audit.list({ from: at, to: at, limit: 10 })).entries.map((e) => e.id)).toContain(all.entries[0]?.id);
  });
});
