import { sql, type Kysely } from 'kysely';

/**
 * A user's own monthly token budget beside the daily one: null means the
 * platform default (MONTHLY_TOKEN_QUOTA), 0 unlimited. The partial index
 * serves the one query that loads every user with a budget of their own
 * into each instance's memory, so a chat turn never looks a budget up.
 */
export async function up(db: Kysely<unknown>): Promise<void> {
  await sql`ALTER TABLE users ADD COLUMN monthly_token_quota integer`.execute(db);
  await sql`CREATE INDEX users_own_token_quota_idx ON users (id) WHERE daily_token_quota IS NOT NULL OR monthly_token_quota IS NOT NULL`.execute(db);
}
