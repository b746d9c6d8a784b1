import type { FastifyInstance } from 'fastify';
import { sql } from 'kysely';
import pg from 'pg';
import pino from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { postgresBinDir, startPostgres, startStandby, type DisposableService } from '../../../tools/src/local-cluster/services.js';
import { createMockUpstream, type MockUpstream } from '../../../tools/src/mock-upstream/index.js';
import { buildApp } from '../app.js';
import { MemoryState } from '../shared-state/memory-state.js';
import { bearer, login, testConfig } from '../test/app.js';
import { eventually, readSse, type ParsedEvent } from '../test/sse.js';
import { UnconfirmedCommitError } from './commit-guard.js';
import { createDatabase, type DatabaseHandle } from './database.js';
import { Metrics } from '../modules/metrics/metrics.js';
import { databaseSources } from '../modules/metrics/sources.js';
import { sampleSum } from '../test/prometheus-text.js';
import { createGroupWriter } from './group-writer.js';
import { isDatabaseUnavailable } from './unavailable.js';

/**
 * The database handle against replication, on throw-away servers of the
 * test's own (a primary and a streaming standby made with pg_basebackup):
 * commits the synchronous standby never confirmed, and the reader's routing
 * between the replica and the writer.
 */

async function admin<T extends pg.QueryResultRow>(url: string, text: string): Promise<T[]> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    return (await client.query<T>(text)).rows;
  } finally {
    await client.end();
  }
}

/** Cancels, from another connection, every statement waiting for the synchronous standby; resolves with how many. */
async function cancelSyncRepWaits(url: string): Promise<number> {
  const rows = await admin<{ n: number }>(url, `SELECT count(pg_cancel_backend(pid))::int AS n FROM pg_stat_activity WHERE wait_event = 'SyncRep'`);
  return rows[0]?.n ?? 0;
}

async function synchronousStandby(url: string, names: string): Promise<void> {
  await admin(url, `ALTER SYSTEM SET synchronous_standby_names = '${names}'`);
  await admin(url, 'SELECT pg_reload_conf()');
}

describe.skipIf(postgresBinDir() === undefined)('commits the synchronous standby did not confirm', () => {
  let primary: DisposableService;
  let database: DatabaseHandle;
  let mock: MockUpstream;
  let app: FastifyInstance;
  let token: string;
  const logged: string[] = [];

  beforeAll(async () => {
    primary = await startPostgres();
    await admin(primary.url, 'CREATE TABLE notes (id int PRIMARY KEY, body text)');
    database = await createDatabase({ url: primary.url, poolMax: 4 });
    mock = await createMockUpstream({ port: 0, defaultChunks: 3, defaultIntervalMs: 1 });
    const logger = pino({ level: 'warn' }, { write: (line: string) => void logged.push(line) });
    app = await buildApp({ config: testConfig({ DATABASE_URL: primary.url }), database, state: new MemoryState(), logger, logRequests: false });
    token = await login(app);
    const created = await app.inject({
      method: 'POST',
      url: '/api/agents',
      headers: bearer(token),
      payload: { id: 'a', name: 'A', provider: 'openai', endpoint: `${mock.url}/v1/chat/completions`, apiKey: 'k', model: 'm' },
    });
    expect(created.statusCode).toBe(201);
    // From here on a synchronous standby that never connects: every commit waits for it until cancelled.
    await synchronousStandby(primary.url, 'nobody');
    await untilCommitsWait();
  });

  /**
   * pg_reload_conf() only asks for the reload: each backend applies it
   * before its next command once signalled, and commits wait only after the
   * checkpointer has applied it too. Until then a write commits at once (on
   * a loaded machine the first test's write did, and waited 30 s for a wait
   * that never came). So: every connection of the pool (held together)
   * shows the setting, and a probe write on a connection of its own is seen
   * waiting for the standby (then let go).
   */
  async function untilCommitsWait(): Promise<void> {
    await eventually(async () => {
      const seen = await Promise.all(Array.from({ length: 4 }, () => sql<{ names: string }>`SELECT current_setting('synchronous_standby_names') AS names, pg_sleep(0.05)`.execute(database.db)));
      return seen.every((r) => r.rows[0]?.names === 'nobody') ? true : undefined;
    }, 'every pooled connection to apply synchronous_standby_names', 30_000);
    await eventually(async () => {
      const probe = new pg.Client({ connectionString: primary.url });
      await probe.connect();
      try {
        let done = false;
        const write = probe.query(`INSERT INTO notes VALUES (0, 'probe') ON CONFLICT (id) DO UPDATE SET body = excluded.body || '.'`).finally(() => (done = true));
        // It either commits at once (the setting is not in force yet) or waits, and is let go here.
        let waited = false;
        while (!done) {
          if ((await cancelSyncRepWaits(primary.url)) > 0) waited = true;
          else await new Promise((r) => setTimeout(r, 25));
        }
        await write;
        return waited ? true : undefined;
      } finally {
        await probe.end();
      }
    }, 'a commit to wait for the synchronous standby', 30_000);
  }

  afterAll(async () => {
    await app?.close();
    await database?.close();
    await mock?.close();
    await primary?.dispose();
  });

  /** Starts a write, cancels its wait for the standby once it is waiting, and returns how the write ended. */
  async function cancelledWrite(write: () => Promise<unknown>): Promise<unknown> {
    const outcome = write().then(
      () => 'succeeded',
      (err: unknown) => err,
    );
    await eventually(async () => ((await cancelSyncRepWaits(primary.url)) > 0 ? true : undefined), 'a commit waiting for the standby', 30_000);
    return outcome;
  }

  it('fails a prepared hot-path statement whose commit was only local, as the database being unavailable', async () => {
    const outcome = await cancelledWrite(() => database.prepared('insert_note', 'INSERT INTO notes (id, body) VALUES ($1, $2)', [1, 'prepared']));
    expect(outcome).toBeInstanceOf(UnconfirmedCommitError);
    expect(isDatabaseUnavailable(outcome)).toBe(true);
    // PostgreSQL did commit it locally: exactly what no client may be told is durable.
    expect(await admin(primary.url, 'SELECT body FROM notes WHERE id = 1')).toEqual([{ body: 'prepared' }]);
  });

  it('fails a Kysely statement and a transaction the same way', async () => {
    const single = await cancelledWrite(() => sql`INSERT INTO notes VALUES (2, 'kysely')`.execute(database.db));
    expect(single).toBeInstanceOf(UnconfirmedCommitError);
    const transaction = await cancelledWrite(() =>
      database.db.transaction().execute(async (trx) => {
        await sql`INSERT INTO notes VALUES (3, 'transaction')`.execute(trx);
      }),
    );
    expect(transaction).toBeInstanceOf(UnconfirmedCommitError);
  });

  it('does not split a group-committed batch on it, so no item is retried alone and reported done', async () => {
    let statements = 0;
    const write = createGroupWriter(async (ids: number[]) => {
      statements++;
      await database.prepared('insert_notes', 'INSERT INTO notes (id, body) SELECT unnest($1::int[]), $2 ON CONFLICT (id) DO NOTHING', [ids, 'batch']);
      return ids.map(() => true);
    }, 10);
    // The first write goes alone and waits; the next three queue behind it and go in one batch.
    const first = write(10).catch((err: unknown) => err);
    await eventually(async () => ((await admin<{ n: number }>(primary.url, `SELECT count(*)::int AS n FROM pg_stat_activity WHERE wait_event = 'SyncRep'`))[0]?.n === 1 ? true : undefined), 'the first write waiting for the standby', 10_000);
    const batch = [11, 12, 13].map((id) => write(id).catch((err: unknown) => err));
    await cancelSyncRepWaits(primary.url);
    expect(await first).toBeInstanceOf(UnconfirmedCommitError);
    await eventually(async () => ((await cancelSyncRepWaits(primary.url)) > 0 ? true : undefined), 'the batch waiting for the standby', 10_000);
    for (const outcome of await Promise.all(batch)) expect(outcome).toBeInstanceOf(UnconfirmedCommitError);
    expect(statements).toBe(2);
  });

  it('answers the client 503 with Retry-After, and no event, when the acknowledgement commit is unconfirmed', async () => {
    const response = app.inject({ method: 'POST', url: '/api/chat/completions', headers: bearer(token), payload: { agentId: 'a', stream: true, messages: [{ role: 'user', content: 'not durable' }] } });
    await eventually(async () => ((await cancelSyncRepWaits(primary.url)) > 0 ? true : undefined), 'the acknowledgement waiting for the standby', 10_000);
    const res = await response;
    expect(res.statusCode).toBe(503);
    expect(res.headers['retry-after']).toBe('2');
    expect(res.json<{ error: { code: string } }>().error.code).toBe('DATABASE_UNAVAILABLE');
    expect(res.body).not.toContain('event: start');
  });

  it('ends a streaming answer (`end`) only once its final write is confirmed, though a retry found it already done', async () => {
    await synchronousStandby(primary.url, '');
    try {
      await app.listen({ port: 0, host: '127.0.0.1' });
      const address = app.server.address();
      const base = `http://127.0.0.1:${typeof address === 'object' && address ? address.port : 0}`;
      const response = await fetch(`${base}/api/chat/completions`, {
        method: 'POST',
        headers: { ...bearer(token), 'content-type': 'application/json' },
        body: JSON.stringify({ agentId: 'a', stream: true, messages: [{ role: 'user', content: 'end once durable [[mock chunks=8 interval=100]]' }] }),
      });
      expect(response.status).toBe(200);
      let standbyGone: Promise<void> | undefined;
      let messageId = '';
      const reading = readSse(response.body as ReadableStream<Uint8Array>, (event) => {
        if (event.event === 'start') messageId = (event.json as { messageId: string }).messageId;
        // The acknowledgement was confirmed; from the first chunk on, commits wait for a standby that never comes.
        if (event.event === 'chunk') standbyGone ??= synchronousStandby(primary.url, 'nobody');
      });
      let ended: ParsedEvent[] | undefined;
      void reading.then((events) => (ended = events));
      // The final write waits; cancelling the wait leaves it committed locally only, which is a failed write.
      await eventually(async () => (logged.some((l) => l.includes('storing the finished turn failed')) ? true : (await cancelSyncRepWaits(primary.url), undefined)), 'the final write to fail unconfirmed', 15_000);
      expect(logged.find((l) => l.includes('storing the finished turn failed'))).toContain('not confirmed by the synchronous standby');
      // The retry finds the answer finished (by that local commit) and waits until it is durable: no `end` yet.
      await eventually(async () => ((await admin<{ n: number }>(primary.url, `SELECT count(*)::int AS n FROM pg_stat_activity WHERE wait_event = 'SyncRep'`))[0]?.n ? true : undefined), 'a durability wait', 10_000);
      expect(ended).toBeUndefined();
      // The answer is finished on the primary already (the unconfirmed commit), yet the client has no `end`.
      expect(await admin(primary.url, `SELECT status FROM messages WHERE id = '${messageId}'`)).toEqual([{ status: 'complete' }]);
      await synchronousStandby(primary.url, '');
      const events = await reading;
      const end = events.at(-1);
      expect(end?.event).toBe('end');
      expect((end?.json as { status: string }).status).toBe('complete');
      const text = events.filter((e) => e.event === 'chunk').map((e) => (e.json as { content: string }).content).join('');
      const stored = await database.db.selectFrom('messages').select(['status', 'content']).where('id', '=', (end?.json as { messageId: string }).messageId).executeTakeFirstOrThrow();
      expect(stored).toEqual({ status: 'complete', content: text });
      await standbyGone;
    } finally {
      await synchronousStandby(primary.url, 'nobody');
    }
  });

  /**
   * An idle backend applies a pg_reload_conf only after its next command, so
   * the first statement a pooled connection runs after synchronousStandby()
   * may still see the old setting: one statement on each of the pool's 4
   * connections (held together) makes every one of them apply it.
   */
  async function poolSeesSettings(): Promise<void> {
    await Promise.all(Array.from({ length: 4 }, () => sql`SELECT pg_sleep(0.05)`.execute(database.db)));
  }

  it('confirms durability once a standby confirms, and not before', async () => {
    await poolSeesSettings();
    const outcome = await cancelledWrite(() => database.confirmDurable());
    expect(outcome).toBeInstanceOf(UnconfirmedCommitError);
    await synchronousStandby(primary.url, '');
    try {
      await eventually(async () => ((await database.confirmDurable().then(() => true).catch(() => false)) ? true : undefined), 'a confirmed commit', 10_000);
    } finally {
      await synchronousStandby(primary.url, 'nobody');
    }
  });
});

describe.skipIf(postgresBinDir() === undefined)('reads with a replica', () => {
  let primary: DisposableService;
  let standby: DisposableService;
  let database: DatabaseHandle;

  /** Where the reader's next plain read runs: true on the standby. */
  const readOnStandby = async () => (await sql<{ r: boolean }>`SELECT pg_is_in_recovery() AS r`.execute(database.reader)).rows[0]?.r;

  beforeAll(async () => {
    primary = await startPostgres();
    await admin(primary.url, 'CREATE TABLE notes (id int PRIMARY KEY, body text)');
    standby = await startStandby(primary);
    database = await createDatabase({ url: primary.url, readUrl: standby.url, readMaxLagMs: 500, poolMax: 4 });
  });

  afterAll(async () => {
    await database?.close();
    await standby?.dispose();
    await primary?.dispose();
  });

  it('reads from the standby while it keeps up, and says so', async () => {
    await eventually(async () => ((await readOnStandby()) === true ? true : undefined), 'a read on the standby', 10_000);
    expect(database.readRoute()).toMatchObject({ using: 'replica', reason: null, maxLagMs: 500 });
    expect(database.readRoute()?.lagMs).toBeLessThanOrEqual(500);
    const metrics = new Metrics();
    metrics.bindSources(databaseSources(database));
    expect(sampleSum(await metrics.text(), 'llmchat_db_reads_on_replica')).toBe(1);
  });

  it('moves reads to the writer while the standby lags past the bound, and back when it catches up', async () => {
    // A transaction the standby has replayed, so its lag has a time to be measured from.
    await admin(primary.url, `INSERT INTO notes VALUES (99, 'replayed')`);
    await eventually(async () => ((await admin(standby.url, 'SELECT 1 FROM notes WHERE id = 99')).length === 1 ? true : undefined), 'the row on the standby', 10_000);
    await admin(standby.url, 'SELECT pg_wal_replay_pause()');
    try {
      // Writes keep arriving while replay is paused: the standby receives them but does not apply them.
      for (let i = 0; i < 30 && database.readRoute()?.using === 'replica'; i++) {
        await admin(primary.url, `INSERT INTO notes VALUES (${100 + i}, 'lag') ON CONFLICT DO NOTHING`);
        await new Promise((resolve) => setTimeout(resolve, 100));
      }
      await eventually(async () => (database.readRoute()?.using === 'writer' ? true : undefined), 'reads moved to the writer', 10_000);
      expect(database.readRoute()?.reason).toMatch(/lags \d+ ms/);
      expect(await readOnStandby()).toBe(false);
      // What the replica alerts read: reads failed over, and the lag past the bound.
      const metrics = new Metrics();
      metrics.bindSources(databaseSources(database));
      const text = await metrics.text();
      expect(sampleSum(text, 'llmchat_db_reads_on_replica')).toBe(0);
      expect(sampleSum(text, 'llmchat_db_replica_lag_seconds')).toBeGreaterThan(0.5);
      expect(sampleSum(text, 'llmchat_db_pool_connections', { pool: 'reader', state: 'total' })).toBeGreaterThanOrEqual(0);
      expect(text).toMatch(/^llmchat_db_pool_connections\{pool="writer",state="total"\} [1-9]/m);
    } finally {
      await admin(standby.url, 'SELECT pg_wal_replay_resume()');
    }
    await eventually(async () => (database.readRoute()?.using === 'replica' ? true : undefined), 'reads back on the standby', 10_000);
    expect(await readOnStandby()).toBe(true);
  });

  it('serves reads from the writer, without a failed request, when the standby is gone', async () => {
    await standby.crash();
    // The very next read already succeeds: a read that fails on the standby runs again on the writer.
    expect(await readOnStandby()).toBe(false);
    await eventually(async () => (database.readRoute()?.using === 'writer' ? true : undefined), 'reads moved to the writer', 10_000);
    expect(database.readRoute()?.reason).toMatch(/unreachable|failed/);
    await standby.start();
    await eventually(async () => ((await readOnStandby()) === true ? true : undefined), 'reads back on the restarted standby', 15_000);
  });
});
