import type { PGlite } from '@electric-sql/pglite';
import type { PostgresPool, PostgresPoolClient, PostgresQueryResult } from 'kysely';

/**
 * PGlite's errors carry the failed statement and its parameters (a user's
 * text, a password hash), which the error handler would log; node-postgres's
 * errors carry neither. Drop them so both backends log the same.
 */
function withoutStatement(err: unknown): unknown {
  if (err instanceof Error) {
    delete (err as { params?: unknown }).params;
    delete (err as { query?: unknown }).query;
  }
  return err;
}

/**
 * Presents one PGlite instance as a node-postgres style pool so Kysely's own
 * PostgresDialect drives it. PGlite is a single connection, so a client is
 * held exclusively from connect() to release(): a transaction never
 * interleaves with another caller's statements. (Kysely 0.29's own
 * PGliteDialect hands every caller the one connection without such a lock:
 * a statement from another request during a transaction would run inside it.)
 */
export class PGlitePool implements PostgresPool {
  /** Kysely reads a pool's options; a single embedded connection has none. */
  readonly options = {};
  private tail: Promise<void> = Promise.resolve();

  constructor(private readonly pglite: PGlite) {}

  async connect(): Promise<PostgresPoolClient> {
    let release!: () => void;
    const held = new Promise<void>((resolve) => (release = resolve));
    const previous = this.tail;
    this.tail = previous.then(() => held);
    await previous;
    const pglite = this.pglite;
    let released = false;
    return {
      async query<R>(sql: string, parameters: ReadonlyArray<unknown>): Promise<PostgresQueryResult<R>> {
        const command = /^\s*(\w+)/.exec(sql)?.[1]?.toUpperCase() ?? 'SELECT';
        try {
          if (parameters.length === 0) {
            const results = await pglite.exec(sql);
            const last = results[results.length - 1];
            return { command: command as PostgresQueryResult<R>['command'], rowCount: last?.affectedRows ?? 0, rows: (last?.rows ?? []) as R[] };
          }
          const result = await pglite.query<R>(sql, [...parameters]);
          return {
            command: command as PostgresQueryResult<R>['command'],
            rowCount: result.affectedRows ?? result.rows.length,
            rows: result.rows,
          };
        } catch (err) {
          throw withoutStatement(err);
        }
      },
      release() {
        if (released) return;
        released = true;
        release();
      },
    } as unknown as PostgresPoolClient;
  }

  async end(): Promise<void> {
    await this.tail;
    await this.pglite.close();
  }
}
