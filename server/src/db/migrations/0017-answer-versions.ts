import { sql, type Kysely } from 'kysely';

/**
 * Answer versions (README, "Answer versions"): regenerating an answer or
 * editing and resending a question keeps the earlier one as a version of
 * the same place in the conversation, never overwritten.
 *
 * - `version_group`: the first version's id, on every later version (null on
 *   a message that is its own first version). The versions of a message are
 *   those sharing `coalesce(version_group, id)`, in `seq` order.
 * - `hidden_by`: null on the messages of the conversation's current path.
 *   When a version stops being shown (a newer one replaced it, or its owner
 *   chose another), it and what followed it on the path get the version's
 *   id; choosing it again shows exactly those again.
 *
 * New turns write neither column (the hot path's insert is unchanged); both
 * default to null, so the ALTERs are instant on a large table. Only
 * versioned messages carry a group, so the partial index stays small.
 */
export async function up(db: Kysely<unknown>): Promise<void> {
  await sql`ALTER TABLE messages ADD COLUMN version_group uuid`.execute(db);
  await sql`ALTER TABLE messages ADD COLUMN hidden_by uuid`.execute(db);
  await sql`CREATE INDEX messages_versions_idx ON messages (session_id, version_group) WHERE version_group IS NOT NULL`.execute(db);
  await sql`CREATE INDEX messages_hidden_by_idx ON messages (session_id, hidden_by) WHERE hidden_by IS NOT NULL`.execute(db);
}
