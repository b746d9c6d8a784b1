import { sql, type Kysely } from 'kysely';

/**
 * A failed attempt keeps what the provider said (the admin-only detail, with
 * the endpoint's key already redacted, at most 1000 characters): ordinary
 * users see only the stable code and a generic sentence, so this row and the
 * warning log line are where an operator finds why an upstream failed.
 */
export async function up(db: Kysely<unknown>): Promise<void> {
  await sql`ALTER TABLE upstream_failures ADD COLUMN detail text`.execute(db);
}
