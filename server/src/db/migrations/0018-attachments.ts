import { sql, type Kysely } from 'kysely';

/**
 * Attachments of questions (issue 18, item 1): images and files a user
 * uploads, kept in PostgreSQL so the replicated data tier and the backups
 * cover them like the messages that name them.
 *
 * - `content_type` is the type decided from the bytes (modules/attachments/content-type.ts), never the client's word.
 * - `text_content`: the text of a text file or PDF, extracted once at upload, for providers that take no files.
 * - `thumbnail`: a small image of an image attachment, made by the browser and checked by content.
 *
 * A message names its attachments by URL (`/api/attachments/<id>`) inside
 * its stored content parts; deleting the user removes their attachments.
 * The per-user sum of `size` is the quota, so the index covers it.
 */
export async function up(db: Kysely<unknown>): Promise<void> {
  await sql`CREATE TABLE attachments (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    user_id uuid NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    name text NOT NULL,
    content_type text NOT NULL,
    size integer NOT NULL,
    sha256 text NOT NULL,
    data bytea NOT NULL,
    text_content text,
    thumbnail bytea,
    created_at timestamptz NOT NULL DEFAULT now()
  )`.execute(db);
  await sql`CREATE INDEX attachments_user_idx ON attachments (user_id) INCLUDE (size)`.execute(db);
}
