import fs from 'node:fs';
import { Kysely, PostgresDialect, sql } from 'kysely';
import pg from 'pg';
import type { Logger } from 'pino';
import { PGlitePool } from './pglite-pool.js';
import type { Database } from './schema.js';

export interface DatabaseOptions {
  /** PostgreSQL writer URL; absent means embedded PGlite. */
  url?: string | undefined;
  /** Optional read replica; reads fall back to the writer when absent. */
  readUrl?: string | undefined;
  poolMax?: number;
  /** PGlite data directory; absent means in memory (tests). */
  pgliteDir?: string | undefined;
  logger?: Logger;
}

export interface DatabaseHandle {
  kind: 'postgres' | 'pglite';
  /** The writer. Every write and every read-your-write goes here. */
  db: Kysely<Database>;
  /** Reads that tolerate replica lag (history lists, search). */
  reader: Kysely<Database>;
  /**
   * Runs one statement of the chat hot path on the writer as a named
   * prepared statement (parsed and planned once per connection: about 40%
   * less PostgreSQL CPU per turn than an unnamed one). `name` must identify
   * `text` uniquely.
   */
  prepared<R>(name: string, text: string, values: unknown[]): Promise<{ rows: R[]; rowCount: number }>;
  ping(): Promise<number>;
  close(): Promise<void>;
}

// int8 and numeric come back as numbers: counts and sums stay far below 2^53.
pg.types.setTypeParser(20, (v) => Number(v));
pg.types.setTypeParser(1700, (v) => Number(v));

function postgresPool(url: string, max: number, logger?: Logger): pg.Pool {
  const pool = new pg.Pool({
    connectionString: url,
    max,
    idleTimeoutMillis: 30_000,
    connectionTimeoutMillis: 5_000,
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
  });
  return pool;
}

export async function createDatabase(options: DatabaseOptions): Promise<DatabaseHandle> {
  if (options.url) {
    const writerPool = postgresPool(options.url, options.poolMax ?? 20, options.logger);
    const db = new Kysely<Database>({ dialect: new PostgresDialect({ pool: writerPool }) });
    const reader = options.readUrl
      ? new Kysely<Database>({ dialect: new PostgresDialect({ pool: postgresPool(options.readUrl, options.poolMax ?? 20, options.logger) }) })
      : db;
    return {
      kind: 'postgres',
      db,
      reader,
      async prepared<R>(name: string, text: string, values: unknown[]) {
        const result = await writerPool.query<R & pg.QueryResultRow>({ name, text, values });
        return { rows: result.rows, rowCount: result.rowCount ?? 0 };
      },
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
    ping: () => timed(db),
    close: () => db.destroy(),
  };
}

async function timed(db: Kysely<Database>): Promise<number> {
  const start = performance.now();
  await sql`select 1`.execute(db);
  return performance.now() - start;
}
