import { sql, type Kysely } from 'kysely';

/**
 * The retention sweep deletes failed attempts older than
 * UPSTREAM_FAILURES_RETENTION_DAYS, a range on `at` alone, which the
 * (endpoint_id, at) index cannot serve. A B-tree rather than BRIN: the sweep
 * frees pages at the old end that new rows then fill, so physical order
 * stops following `at`; failed attempts are rare, so the extra index write
 * costs the hot path nothing.
 */
export async function up(db: Kysely<unknown>): Promise<void> {
  await sql`CREATE INDEX upstream_failures_at_idx ON upstream_failures (at)`.execute(db);
}
