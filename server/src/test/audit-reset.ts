import { sql, type Kysely } from 'kysely';
import { GENESIS_HASH } from '../modules/audit/audit-chain.js';

/**
 * Tests only: empties the audit log and restarts its chain, as on a fresh
 * database. The table refuses DELETE (migration 0010), so the guard is
 * lifted for the statement, as the table's owner can; the app has no such path.
 */
export async function emptyAuditLog<DB>(db: Kysely<DB>): Promise<void> {
  await db.transaction().execute(async (trx) => {
    await sql`ALTER TABLE audit_log DISABLE TRIGGER audit_log_append_only`.execute(trx);
    await sql`DELETE FROM audit_log`.execute(trx);
    await sql`ALTER TABLE audit_log ENABLE TRIGGER audit_log_append_only`.execute(trx);
    await sql`UPDATE audit_chain_head SET seq = 0, hash = ${GENESIS_HASH} WHERE id = 1`.execute(trx);
  });
}
