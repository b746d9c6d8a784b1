import { sql, type Kysely } from 'kysely';

/**
 * Usage analytics scan answers and sessions by creation time. Rows arrive in
 * creation order, so a BRIN index serves those range scans at almost no cost
 * to the chat hot path's inserts (a B-tree would add a page write to each).
 */
export async function up(db: Kysely<unknown>): Promise<void> {
  await sql`CREATE INDEX messages_created_brin_idx ON messages USING brin (created_at)`.execute(db);
  await sql`CREATE INDEX chat_sessions_created_brin_idx ON chat_sessions USING brin (created_at)`.execute(db);
}
