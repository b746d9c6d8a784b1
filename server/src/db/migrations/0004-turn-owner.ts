import { sql, type Kysely } from 'kysely';

/**
 * The instance that runs an answer is written with it (`owner_instance`), so
 * when that instance dies another one can find its `streaming` answers, claim
 * them in one conditional UPDATE and finish them. The claim is the fence:
 * checkpoints and the final write only land for the current owner.
 */
export async function up(db: Kysely<unknown>): Promise<void> {
  await sql`ALTER TABLE messages ADD COLUMN owner_instance text`.execute(db);
}
