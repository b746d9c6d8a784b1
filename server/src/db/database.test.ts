import { sql } from 'kysely';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { backendNames, createBackend, type Backend } from '../test/backends.js';
import { latestMigration, migrateToLatest, migrationsDone } from './migrate.js';

describe.each(await backendNames())('database on %s', (name) => {
  let backend: Backend;
  beforeAll(async () => {
    backend = await createBackend(name);
  });
  afterAll(async () => {
    await backend.dispose();
  });

  it('migrates once and is then up to date', async () => {
    expect(await migrationsDone(backend.database.db)).toBe(false);
    const applied = await migrateToLatest(backend.database.db);
    expect(applied.at(-1)).toBe(latestMigration);
    expect(await migrateToLatest(backend.database.db)).toEqual([]);
    expect(await migrationsDone(backend.database.db)).toBe(true);
  });

  it('has the indexes the hot queries need', async () => {
    const { rows } = await sql<{ indexname: string }>`select indexname from pg_indexes where schemaname = 'public'`.execute(backend.database.db);
    const names = rows.map((r) => r.indexname);
    for (const index of ['chat_sessions_user_listed_recent_idx', 'messages_session_seq_idx', 'messages_content_fts_idx', 'chat_sessions_title_fts_idx', 'users_username_key']) {
      expect(names).toContain(index);
    }
  });

  it('rolls a failed transaction back completely', async () => {
    const user = await backend.database.db
      .insertInto('users')
      .values({ username: `tx-${name}`, password_hash: 'x', updated_at: new Date(), password_changed_at: new Date() })
      .returning('id')
      .executeTakeFirstOrThrow();
    await expect(
      backend.database.db.transaction().execute(async (tx) => {
        await tx.insertInto('chat_sessions').values({ user_id: user.id, agent_id: 'a', updated_at: new Date() }).execute();
        await tx.insertInto('chat_sessions').values({ user_id: '00000000-0000-4000-8000-000000000000', agent_id: 'a', updated_at: new Date() }).execute();
      }),
    ).rejects.toThrow();
    const count = await backend.database.db.selectFrom('chat_sessions').select((eb) => eb.fn.countAll<number>().as('n')).executeTakeFirstOrThrow();
    expect(Number(count.n)).toBe(0);
  });

  it('raises statement errors without the statement\'s parameters (they would reach the log)', async () => {
    const err = await backend.database.prepared('llmchat_test_failing', 'SELECT $1::text AS t FROM no_such_table', ['secret-looking text']).then(
      () => undefined,
      (e: unknown) => e as Error & Record<string, unknown>,
    );
    expect(err?.message).toMatch(/no_such_table/);
    expect(JSON.stringify({ ...err, message: err?.message })).not.toContain('secret-looking text');
  });

  it('keeps concurrent transactions apart', async () => {
    const user = await backend.database.db.selectFrom('users').select('id').executeTakeFirstOrThrow();
    await Promise.all(
      Array.from({ length: 10 }, (_, i) =>
        backend.database.db.transaction().execute(async (tx) => {
          const s = await tx.insertInto('chat_sessions').values({ user_id: user.id, agent_id: `a${i}`, updated_at: new Date() }).returning('id').executeTakeFirstOrThrow();
          await tx.insertInto('messages').values({ session_id: s.id, user_id: user.id, role: 'user', content: `m${i}`, updated_at: new Date() }).execute();
        }),
      ),
    );
    const count = await backend.database.db.selectFrom('messages').select((eb) => eb.fn.countAll<number>().as('n')).executeTakeFirstOrThrow();
    expect(Number(count.n)).toBe(10);
  });

  it('reads on the writer without a replica, and confirms durability (no synchronous standby: at once)', async () => {
    expect(backend.database.readRoute()).toBeUndefined();
    expect(backend.database.reader).toBe(backend.database.db);
    await expect(backend.database.confirmDurable()).resolves.toBeUndefined();
  });

  // PostgreSQL going away tells an idle session so (FATAL); a connection checked out but between two
  // statements then had no listener for it, and the error went up the socket handler and ended the process.
  it.skipIf(name !== 'postgres+redis')('survives the server ending a connection a transaction holds between two statements', async () => {
    const { db } = backend.database;
    const held = db.transaction().execute(async (tx) => {
      const { rows } = await sql<{ pid: number }>`select pg_backend_pid() as pid`.execute(tx);
      await sql`select pg_terminate_backend(${rows[0]?.pid ?? 0})`.execute(db);
      // The FATAL arrives while no statement runs on this connection.
      await new Promise((resolve) => setTimeout(resolve, 300));
      await sql`select 1`.execute(tx);
    });
    await expect(held).rejects.toThrow();
    // The pool goes on with a new connection.
    expect((await sql<{ one: number }>`select 1 as one`.execute(db)).rows[0]?.one).toBe(1);
  });
});
