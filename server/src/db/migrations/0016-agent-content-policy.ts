import { sql, type Kysely } from 'kysely';

/**
 * Issue 17: a provider's content-policy refusal reaches the caller unless
 * the agent opts in to trying an endpoint with another model
 * (`other-model`); null: passed through. Routing a refusal around the
 * provider is a way around an enterprise's own safety policy, so it is
 * never the default.
 */
export async function up(db: Kysely<unknown>): Promise<void> {
  await sql`ALTER TABLE agents ADD COLUMN content_policy text CHECK (content_policy IN ('pass-through', 'other-model'))`.execute(db);
}
