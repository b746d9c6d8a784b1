import { sql, type Kysely } from 'kysely';

/**
 * How an endpoint continues an answer that broke off on an earlier attempt
 * (`prefill`, `continue_final_message`, `restart`); null: its provider
 * kind's default (modules/providers/continuation-kinds.ts).
 */
export async function up(db: Kysely<unknown>): Promise<void> {
  await sql`ALTER TABLE agent_endpoints ADD COLUMN continuation text`.execute(db);
}
