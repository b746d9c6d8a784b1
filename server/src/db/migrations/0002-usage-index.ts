import { sql, type Kysely } from 'kysely';

/** Usage analytics scan answers and sessions by creation time. */
export async function up(db: Kysely<unknown>): Promise<void> {
  await sql`CREATE INDEX messages_created_idx ON messages (created_at)`.execute(db);
  await sql`CREATE INDEX chat_sessions_created_idx ON chat_sessions (created_at)`.execute(db);
}
