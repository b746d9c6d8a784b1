/**
 * Autovacuum's part, for a bench database on a PostgreSQL that runs without
 * it. A deployment runs autovacuum (PostgreSQL's default); this machine's
 * PostgreSQL has it off, and there a bench database is never analyzed. That
 * matters more than the dead rows: the hot path's prepared statements are
 * planned while the tables are empty, and without statistics PostgreSQL
 * keeps those plans. The one that finishes turns then reads every entry of
 * the partial index of streaming answers for each batch, live and dead
 * (measured with the chat repository alone at 1000 turns in flight:
 * 0.45 ms of PostgreSQL CPU per turn against 0.13 ms once analyzed).
 *
 * So, when the server's `autovacuum` is off, the bench applies autovacuum's
 * default rules to its own database once a second: VACUUM ANALYZE a table
 * whose dead rows exceed 50 + 20% of its rows, ANALYZE one whose changes
 * since the last analyze exceed 50 + 10% (autovacuum_vacuum_threshold and
 * _scale_factor, autovacuum_analyze_threshold and _scale_factor). Its work
 * runs in PostgreSQL, so it counts in the database's CPU as autovacuum's
 * would.
 */

import pg from 'pg';

const VACUUM_THRESHOLD = 50;
const VACUUM_SCALE = 0.2;
const ANALYZE_THRESHOLD = 50;
const ANALYZE_SCALE = 0.1;

/** A table's counters, as pg_stat_user_tables and pg_class give them. */
export interface TableActivity {
  table: string;
  deadRows: number;
  changedSinceAnalyze: number;
  /** pg_class.reltuples: -1 before the first VACUUM or ANALYZE. */
  rows: number;
}

/** What autovacuum's default rules would do to a table now. */
export function autovacuumAction(t: TableActivity): 'vacuum' | 'analyze' | undefined {
  const rows = Math.max(0, t.rows);
  if (t.deadRows > VACUUM_THRESHOLD + VACUUM_SCALE * rows) return 'vacuum';
  if (t.changedSinceAnalyze > ANALYZE_THRESHOLD + ANALYZE_SCALE * rows) return 'analyze';
  return undefined;
}

export interface AutovacuumStandIn {
  /** VACUUM ANALYZE and ANALYZE commands run so far. */
  counts(): { vacuums: number; analyzes: number };
  stop(): Promise<void>;
}

const ACTIVITY = `SELECT s.relname AS table, s.n_dead_tup AS dead, s.n_mod_since_analyze AS changed, c.reltuples AS rows
FROM pg_stat_user_tables AS s JOIN pg_class AS c ON c.oid = s.relid`;

/** True when the PostgreSQL at `url` runs autovacuum. */
export async function autovacuumOn(url: string): Promise<boolean> {
  const client = new pg.Client({ connectionString: url, connectionTimeoutMillis: 3_000 });
  await client.connect();
  try {
    const { rows } = await client.query<{ autovacuum: string }>('SHOW autovacuum');
    return rows[0]?.autovacuum === 'on';
  } finally {
    await client.end().catch(() => undefined);
  }
}

/** Checks the database at `url` every `intervalMs` and does what autovacuum would; one command at a time. */
export async function startAutovacuumStandIn(url: string, intervalMs = 1_000): Promise<AutovacuumStandIn> {
  const client = new pg.Client({ connectionString: url, connectionTimeoutMillis: 3_000, application_name: 'llmchat-bench-autovacuum' });
  await client.connect();
  client.on('error', () => undefined);
  let vacuums = 0;
  let analyzes = 0;
  let stopped = false;
  let running: Promise<void> | undefined;
  const onePass = async (): Promise<void> => {
    const { rows } = await client.query<{ table: string; dead: string; changed: string; rows: number }>(ACTIVITY);
    for (const row of rows) {
      if (stopped) return;
      const action = autovacuumAction({ table: row.table, deadRows: Number(row.dead), changedSinceAnalyze: Number(row.changed), rows: Number(row.rows) });
      if (action === undefined) continue;
      const name = client.escapeIdentifier(row.table);
      await client.query(action === 'vacuum' ? `VACUUM (ANALYZE) ${name}` : `ANALYZE ${name}`);
      if (action === 'vacuum') vacuums++;
      else analyzes++;
    }
  };
  const timer = setInterval(() => {
    // A pass still running (a long VACUUM) is not doubled; a failed one is tried again next time.
    if (running !== undefined || stopped) return;
    running = onePass()
      .catch(() => undefined)
      .finally(() => {
        running = undefined;
      });
  }, intervalMs);
  timer.unref();
  return {
    counts: () => ({ vacuums, analyzes }),
    async stop() {
      stopped = true;
      clearInterval(timer);
      await running;
      await client.end().catch(() => undefined);
    },
  };
}
