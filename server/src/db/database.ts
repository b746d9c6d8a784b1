import fs from 'node:fs';
import { Kysely, PostgresDialect, sql } from 'kysely';
import pg from 'pg';
import type { Logger } from 'pino';
import { confirmedQuery, guardedPool, watchCommits } from './commit-guard.js';
import { PGlitePool } from './pglite-pool.js';
import { ReadRouter, type ReadRouteHealth } from './read-routing.js';
import { isDatabaseUnavailable } from './unavailable.js';
import type { Database } from './schema.js';

export interface DatabaseOptions {
  /** PostgreSQL writer URL; absent means embedded PGlite. */
  url?: string | undefined;
  /** Optional read replica; reads fall back to the writer when absent. */
  readUrl?: string | undefined;
  /** Replica lag beyond which reads go to the writer (DATABASE_READ_MAX_LAG_MS). */
  readMaxLagMs?: number;
  poolMax?: number;
  /** PGlite data directory; absent means in memory (tests). */
  pgliteDir?: string | undefined;
  logger?: Logger;
}

export interface DatabaseHandle {
  kind: 'postgres' | 'pglite';
  /** The writer. Every write and every read-your-write goes here. */
  db: Kysely<Database>;
  /**
   * Reads that tolerate replica lag (search, usage figures): the replica
   * while it answers and lags at most DATABASE_READ_MAX_LAG_MS, else the
   * writer. Plain SELECTs only: never a write, never a transaction.
   */
  reader: Kysely<Database>;
  /** Where reads go right now; undefined without a DATABASE_READ_URL. */
  readRoute(): ReadRouteHealth | undefined;
  /** Connection pools right now, for metrics: the writer's, and the replica's when there is one (none on PGlite). */
  pools(): PoolFigures[];
  /**
   * Runs one statement of the chat hot path on the writer as a named
   * prepared statement (parsed and planned once per connection: about 40%
   * less PostgreSQL CPU per turn than an unnamed one). `name` must identify
   * `text` uniquely.
   */
  prepared<R>(name: string, text: string, values: unknown[]): Promise<{ rows: R[]; rowCount: number }>;
  /**
   * Resolves once everything committed so far is on the synchronous standby
   * (where there is one): a transaction that writes a commit record waits for
   * it. Used after an UnconfirmedCommitError, when retrying the write found
   * nothing left to do because the unconfirmed commit had done it.
   */
  confirmDurable(): Promise<void>;
  ping(): Promise<number>;
  close(): Promise<void>;
}

export interface PoolFigures {
  pool: 'writer' | 'reader';
  total: number;
  idle: number;
  /** Checkouts queued for a connection. */
  waiting: number;
}

function figures(pool: 'writer' | 'reader', p: pg.Pool): PoolFigures {
  return { pool, total: p.totalCount, idle: p.idleCount, waiting: p.waitingCount };
}

// int8 and numeric come back as numbers: counts and sums stay far below 2^53.
pg.types.setTypeParser(20, (v) => Number(v));
pg.types.setTypeParser(1700, (v) => Number(v));

/** How often the read replica's reachability and lag are checked. */
const READ_CHECK_INTERVAL_MS = 1_000;

function postgresPool(url: string, max: number, logger?: Logger, connectTimeoutMs = 5_000): pg.Pool {
  const pool = new pg.Pool({
    connectionString: url,
    max,
    idleTimeoutMillis: 30_000,
    connectionTimeoutMillis: connectTimeoutMs,
    keepAlive: true,
    application_name: 'llmchat',
  });
  // A dropped connection must never crash the process; the pool replaces it.
  pool.on('error', (err) => logger?.warn({ err: err.message }, 'postgres idle client error'));
  // The pool listens for errors only on idle connections. One checked out but between two statements
  // (a transaction, a query about to be sent) that hears PostgreSQL end the session (FATAL: shutdown,
  // crash, pg_terminate_backend) emits `error` with nobody listening, which throws from the socket's
  // handler and ends the process. Its queries fail and say so themselves (an idle one is reported by the
  // pool above), so this listener only keeps the error from becoming an uncaught one; the connection is
  // dropped at release.
  pool.on('connect', (client) => {
    client.on('error', (err) => logger?.debug({ err: err.message }, 'postgres connection ended'));
    watchCommits(client);
  });
  return pool;
}

export async function createDatabase(options: DatabaseOptions): Promise<DatabaseHandle> {
  if (options.url) {
    const writerPool = postgresPool(options.url, options.poolMax ?? 20, options.logger);
    const db = new Kysely<Database>({ dialect: new PostgresDialect({ pool: guardedPool(writerPool) }) });
    let router: ReadRouter | undefined;
    let replicaPool: pg.Pool | undefined;
    if (options.readUrl) {
      // A short connect deadline: an unreachable replica must not hold a read up for long before the writer takes it.
      replicaPool = postgresPool(options.readUrl, options.poolMax ?? 20, options.logger, 1_000);
      router = new ReadRouter({ writer: writerPool, replica: replicaPool, maxLagMs: options.readMaxLagMs ?? 5_000, intervalMs: READ_CHECK_INTERVAL_MS, logger: options.logger });
      await router.start();
    }
    const reader = router ? new Kysely<Database>({ dialect: new PostgresDialect({ pool: router.pool() }) }) : db;
    return {
      kind: 'postgres',
      db,
      reader,
      readRoute: () => router?.health(),
      pools: () => (replicaPool ? [figures('writer', writerPool), figures('reader', replicaPool)] : [figures('writer', writerPool)]),
      async prepared<R>(name: string, text: string, values: unknown[]) {
        const client = await writerPool.connect();
        let broken: Error | undefined;
        try {
          const result = await confirmedQuery<R & pg.QueryResultRow>(client, { name, text, values });
          return { rows: result.rows, rowCount: result.rowCount ?? 0 };
        } catch (err) {
          // A dropped connection, or one to a server that is a replica now, is not reused.
          if (isDatabaseUnavailable(err)) broken = err as Error;
          throw err;
        } finally {
          client.release(broken);
        }
      },
      // A transaction that writes WAL waits at commit for the synchronous standby to have everything up to
      // its commit record; an xid alone writes none and would not wait. A transactional logical message is
      // the smallest such write, and touches no table.
      confirmDurable: async () => void (await sql`SELECT pg_logical_emit_message(true, 'llmchat', 'durable')`.execute(db)),
      ping: () => timed(db),
      async close() {
        if (reader !== db) await reader.destroy();
        await db.destroy();
      },
    };
  }
  const { PGlite } = await import('@electric-sql/pglite');
  if (options.pgliteDir) fs.mkdirSync(options.pgliteDir, { recursive: true });
  const pglite = await PGlite.create({
    ...(options.pgliteDir ? { dataDir: options.pgliteDir } : {}),
    parsers: { 20: (v: string) => Number(v), 1700: (v: string) => Number(v) },
  });
  const pool = new PGlitePool(pglite);
  const db = new Kysely<Database>({ dialect: new PostgresDialect({ pool }) });
  return {
    kind: 'pglite',
    db,
    reader: db,
    readRoute: () => undefined,
    pools: () => [],
    async prepared<R>(_name: string, text: string, values: unknown[]) {
      // Through the pool, so it never interleaves with a running transaction.
      const client = await pool.connect();
      try {
        const result = await client.query<R>(text, values);
        return { rows: result.rows, rowCount: Number(result.rowCount) };
      } finally {
        client.release();
      }
    },
    confirmDurable: async () => undefined,
    ping: () => timed(db),
    close: () => db.destroy(),
  };
}

async function timed(db: Kysely<Database>): Promise<number> {
  const start = performance.now();
  await sql`select 1`.execute(db);
  return performance.now() - start;
}
