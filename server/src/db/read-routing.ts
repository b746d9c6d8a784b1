import type { PostgresPool, PostgresPoolClient } from 'kysely';
import type pg from 'pg';
import type { Logger } from 'pino';
import { guardedClient } from './commit-guard.js';
import { isDatabaseUnavailable } from './unavailable.js';

/** What the read pool is doing right now, for /health/detailed. */
export interface ReadRouteHealth {
  /** Reads go to the replica (DATABASE_READ_URL) or, while it is unreachable or lagging, to the writer. */
  using: 'replica' | 'writer';
  /** Replay lag of the replica at the last check, in ms (0 when it has replayed all it received); null when unknown. */
  lagMs: number | null;
  maxLagMs: number;
  /** Why reads go to the writer, when they do. */
  reason: string | null;
  checkedAt: string | null;
}

export interface ReadRouterOptions {
  writer: pg.Pool;
  replica: pg.Pool;
  maxLagMs: number;
  /** How often the replica's reachability and lag are checked. */
  intervalMs: number;
  logger?: Logger | undefined;
}

/**
 * Lag on a replica: 0 when it has replayed everything it received (an idle
 * primary writes nothing, so the last replayed transaction's age says nothing
 * then; just after a start the received position can even trail the
 * replayed one, since streaming restarts at a segment's beginning), else the
 * age of the last replayed transaction. A server that is not in recovery
 * (the URL reaches a primary) has none.
 */
const LAG_SQL = `SELECT CASE
  WHEN NOT pg_is_in_recovery() THEN 0
  WHEN pg_wal_lsn_diff(pg_last_wal_receive_lsn(), pg_last_wal_replay_lsn()) <= 0 THEN 0
  ELSE (extract(epoch FROM clock_timestamp() - pg_last_xact_replay_timestamp()) * 1000)::float8
END AS lag_ms`;

const CHECK_TIMEOUT_MS = 1_000;
/** A statement that only reads, so running it again on the writer changes nothing. */
const READ_ONLY = /^\s*select\b/i;

/**
 * Routes the reader's connections: to the replica while it answers and lags
 * at most `maxLagMs`, else to the writer. A check runs every `intervalMs`; a
 * replica connection that fails between checks sends reads to the writer at
 * once, and a plain read that failed on the replica is run again on the
 * writer, so a lost replica costs no request.
 */
export class ReadRouter {
  private healthy = false;
  private lagMs: number | null = null;
  private reason: string | null = 'not checked yet';
  private checkedAt: Date | undefined;
  private timer: NodeJS.Timeout | undefined;
  private checking: Promise<void> | undefined;
  private closed = false;

  constructor(private readonly options: ReadRouterOptions) {}

  /** Checks once now, then every interval. */
  async start(): Promise<void> {
    await this.check();
    this.timer = setInterval(() => void this.check(), this.options.intervalMs);
    this.timer.unref();
  }

  health(): ReadRouteHealth {
    return {
      using: this.healthy ? 'replica' : 'writer',
      lagMs: this.lagMs === null ? null : Math.round(this.lagMs),
      maxLagMs: this.options.maxLagMs,
      reason: this.healthy ? null : this.reason,
      checkedAt: this.checkedAt?.toISOString() ?? null,
    };
  }

  /** Kysely's pool for the reader. */
  pool(): PostgresPool {
    return {
      options: this.options.replica.options,
      connect: () => this.connect(),
      end: async () => {
        this.close();
        await this.options.replica.end();
      },
    };
  }

  close(): void {
    this.closed = true;
    clearInterval(this.timer);
  }

  check(): Promise<void> {
    this.checking ??= this.measure().finally(() => (this.checking = undefined));
    return this.checking;
  }

  private async measure(): Promise<void> {
    let timer: NodeJS.Timeout | undefined;
    try {
      const result = await Promise.race([
        this.options.replica.query<{ lag_ms: number | null }>(LAG_SQL),
        new Promise<never>((_, reject) => {
          timer = setTimeout(() => reject(new Error(`no answer within ${CHECK_TIMEOUT_MS} ms`)), CHECK_TIMEOUT_MS);
        }),
      ]);
      const lag = result.rows[0]?.lag_ms ?? null;
      this.lagMs = lag;
      if (lag === null) this.markUnhealthy('replica is behind by an unknown time (nothing replayed since it started)');
      else if (lag > this.options.maxLagMs) this.markUnhealthy(`replica lags ${Math.round(lag)} ms (bound ${this.options.maxLagMs} ms)`);
      else this.markHealthy();
    } catch (err) {
      this.lagMs = null;
      this.markUnhealthy(`replica unreachable: ${(err as Error).message.slice(0, 160)}`);
    } finally {
      clearTimeout(timer);
      this.checkedAt = new Date();
    }
  }

  private markHealthy(): void {
    if (!this.healthy && !this.closed) this.options.logger?.info({ lagMs: this.lagMs }, 'reads go to the replica again');
    this.healthy = true;
    this.reason = null;
  }

  private markUnhealthy(reason: string): void {
    if (this.healthy && !this.closed) this.options.logger?.warn({ reason }, 'reads go to the writer');
    this.healthy = false;
    this.reason = reason;
  }

  private async connect(): Promise<PostgresPoolClient> {
    if (this.healthy) {
      try {
        const client = await this.options.replica.connect();
        return this.replicaClient(client);
      } catch (err) {
        this.markUnhealthy(`replica unreachable: ${(err as Error).message.slice(0, 160)}`);
      }
    }
    return guardedClient(await this.options.writer.connect());
  }

  /** A replica connection whose first statement, when it fails as unavailable, runs again on the writer. */
  private replicaClient(client: pg.PoolClient): PostgresPoolClient {
    const replica = guardedClient(client, (err) => this.markUnhealthy(`replica failed: ${(err as Error).message.slice(0, 160)}`));
    let statements = 0;
    return {
      query: async (sql: string, parameters: ReadonlyArray<unknown>) => {
        const first = statements++ === 0;
        try {
          return await replica.query(sql, parameters);
        } catch (err) {
          // Only a query that opens the checkout is safe to repeat elsewhere: later ones may be inside a transaction.
          if (!first || !READ_ONLY.test(sql) || !isDatabaseUnavailable(err)) throw err;
          const writer = guardedClient(await this.options.writer.connect());
          try {
            return await writer.query(sql, parameters);
          } finally {
            writer.release();
          }
        }
      },
      release: () => replica.release(),
    } as unknown as PostgresPoolClient;
  }
}
