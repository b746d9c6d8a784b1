import { sql, type Kysely } from 'kysely';

/**
 * Issue 17 (hedged first token): an agent's opt-in to call its next
 * endpoint too when the current call has sent no token after a while
 * (`{ "afterMs": 2000 }` or `{ "afterMs": "p95" }`); null: no hedging.
 */
export async function up(db: Kysely<unknown>): Promise<void> {
  await sql`ALTER TABLE agents ADD COLUMN hedge jsonb`.execute(db);
}
