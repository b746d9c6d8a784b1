import { sql, type Kysely } from 'kysely';

/**
 * Sessions that `/v1` calls create are hidden from their owner's chat list
 * (README, "Sessions of /v1 calls"): an application calling with a user's
 * API key would otherwise fill that user's sidebar. They are stored, counted
 * in usage and quotas like any other, and open by id. The column is set when
 * the session is inserted (no extra write on the hot path); the constant
 * default keeps the ALTER instant on a large table. The list's index leads
 * with it, replacing the one it extends (same write cost), so a user's
 * visible sessions are read in order without stepping over hidden ones.
 */
export async function up(db: Kysely<unknown>): Promise<void> {
  await sql`ALTER TABLE chat_sessions ADD COLUMN hidden boolean NOT NULL DEFAULT false`.execute(db);
  await sql`CREATE INDEX chat_sessions_user_listed_recent_idx ON chat_sessions (user_id, hidden, updated_at DESC, id DESC)`.execute(db);
  await sql`DROP INDEX IF EXISTS chat_sessions_user_recent_idx`.execute(db);
}
