import { sql, type Kysely } from 'kysely';

/**
 * Read-only share links of a conversation (issue 18). Only the token's
 * SHA-256 is kept, so a copy of the database opens no conversation; a link
 * shows the messages up to `up_to_seq` (what was there when it was made).
 * Revoking sets `revoked_at`: the lookup reads the row on every view, so it
 * takes effect at once. Deleting the conversation or the user removes its links.
 */
export async function up(db: Kysely<unknown>): Promise<void> {
  await sql`CREATE TABLE share_links (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    session_id uuid NOT NULL REFERENCES chat_sessions(id) ON DELETE CASCADE,
    user_id uuid NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    token_hash text NOT NULL UNIQUE,
    up_to_seq bigint NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    revoked_at timestamptz
  )`.execute(db);
  await sql`CREATE INDEX share_links_session_idx ON share_links (session_id, created_at DESC)`.execute(db);
}
