import type pg from 'pg';
import type { PostgresPool, PostgresPoolClient } from 'kysely';
import { isDatabaseUnavailable } from './unavailable.js';

/**
 * A commit PostgreSQL made only locally. With synchronous replication a
 * commit waits for the standby; a wait that is cancelled (pg_cancel_backend,
 * a client's cancel request) or cut short by a shutdown ends with a WARNING
 * ("canceling wait for synchronous replication …", detail "The transaction
 * has already committed locally, but might not have been replicated to the
 * standby") and the statement still reports success. A failover to the
 * standby would lose that commit, so it is no acknowledgement: the statement
 * fails with this error instead, which counts as the database being
 * unavailable (503 DATABASE_UNAVAILABLE, Retry-After).
 */
export class UnconfirmedCommitError extends Error {
  readonly code = 'LLMCHAT_UNCONFIRMED_COMMIT';
  constructor(notice: string) {
    super(`the commit was not confirmed by the synchronous standby: ${notice}`);
    this.name = 'UnconfirmedCommitError';
  }
}

/**
 * PostgreSQL's warnings for a cancelled synchronous-replication wait
 * (src/backend/replication/syncrep.c). Matched on the English text, which is
 * what servers with `lc_messages` C or en_* send; the shipped Patroni
 * template sets `lc_messages: C`.
 */
const UNCONFIRMED = [/wait for synchronous replication/i, /committed locally/i];

const unconfirmed = new WeakMap<pg.ClientBase, string>();

/** Listens for the warning on a new connection (call from the pool's `connect` event). */
export function watchCommits(client: pg.ClientBase): void {
  client.on('notice', (notice) => {
    const text = `${notice.message ?? ''} ${notice.detail ?? ''}`;
    if (notice.severity === 'WARNING' && UNCONFIRMED.some((re) => re.test(text))) unconfirmed.set(client, notice.message ?? text);
  });
}

/**
 * Runs one statement on a checked-out connection and fails it when its commit
 * was only local. The warning arrives before the statement's completion, on
 * the same connection, so it belongs to this statement.
 */
export async function confirmedQuery<R extends pg.QueryResultRow>(client: pg.PoolClient, query: pg.QueryConfig | string, values?: unknown[]): Promise<pg.QueryResult<R>> {
  unconfirmed.delete(client);
  const result = typeof query === 'string' ? await client.query<R>(query, values) : await client.query<R>(query);
  const notice = unconfirmed.get(client);
  if (notice !== undefined) {
    unconfirmed.delete(client);
    throw new UnconfirmedCommitError(notice);
  }
  return result;
}

/**
 * A node-postgres client as Kysely's pool client: statements go through
 * confirmedQuery, and a connection that failed as unavailable (dropped,
 * read-only after a failover, an unconfirmed commit) is destroyed at release
 * instead of going back to the pool.
 */
export function guardedClient(client: pg.PoolClient, onUnavailable?: (err: unknown) => void): PostgresPoolClient {
  let broken: Error | undefined;
  const guarded = {
    async query(sql: string, parameters: ReadonlyArray<unknown>) {
      try {
        return await confirmedQuery(client, sql, [...parameters]);
      } catch (err) {
        if (isDatabaseUnavailable(err)) {
          broken = err instanceof Error ? err : new Error(String(err));
          onUnavailable?.(err);
        }
        throw err;
      }
    },
    release() {
      client.release(broken);
    },
  };
  return guarded as unknown as PostgresPoolClient;
}

/** A node-postgres pool as Kysely's pool, handing out guarded clients. */
export function guardedPool(pool: pg.Pool): PostgresPool {
  return {
    options: pool.options,
    connect: async () => guardedClient(await pool.connect()),
    end: () => pool.end(),
  };
}
