import { sql, type Kysely } from 'kysely';
import { canonicalEntry, GENESIS_HASH } from '../../modules/audit/audit-chain.js';

/**
 * The audit log becomes an append-only hash chain (modules/audit/audit-chain.ts):
 * each entry gets its position, the previous entry's hash and its own; one
 * head row holds the last position and hash, and inserts lock it in turn.
 * Existing entries are chained in id order here, while the table is locked
 * against inserts. Then UPDATE, DELETE and TRUNCATE on the table are refused
 * by a trigger: no code path of the app issues them, and anything that
 * tries is an error, not a silent rewrite of history.
 */
export async function up(db: Kysely<unknown>): Promise<void> {
  await sql`LOCK TABLE audit_log IN EXCLUSIVE MODE`.execute(db);
  await sql`ALTER TABLE audit_log ADD COLUMN chain_seq bigint, ADD COLUMN prev_hash text, ADD COLUMN hash text`.execute(db);
  await sql`CREATE TABLE audit_chain_head (id smallint PRIMARY KEY CHECK (id = 1), seq bigint NOT NULL, hash text NOT NULL)`.execute(db);

  // Chain what is there, oldest first, one entry at a time (each hash covers the one before it).
  let seq = 0;
  let prev = GENESIS_HASH;
  let after = 0;
  for (;;) {
    const { rows } = await sql<{ id: number | string }>`SELECT id FROM audit_log WHERE id > ${after} ORDER BY id LIMIT 1000`.execute(db);
    for (const row of rows) {
      seq++;
      const updated = await sql<{ id: number | string }>`
        UPDATE audit_log a SET chain_seq = ${seq}, prev_hash = ${prev} WHERE a.id = ${row.id} RETURNING a.id
      `.execute(db);
      if (updated.rows.length !== 1) throw new Error(`audit_log row ${String(row.id)} vanished while chaining`);
      const hashed = await sql<{ hash: string }>`
        UPDATE audit_log a SET hash = encode(sha256(convert_to(${canonicalEntry('a')}, 'UTF8')), 'hex') WHERE a.id = ${row.id} RETURNING a.hash
      `.execute(db);
      prev = hashed.rows[0]?.hash ?? prev;
      after = Number(row.id);
    }
    if (rows.length < 1000) break;
  }
  await sql`INSERT INTO audit_chain_head (id, seq, hash) VALUES (1, ${seq}, ${prev})`.execute(db);

  await sql`ALTER TABLE audit_log ALTER COLUMN chain_seq SET NOT NULL, ALTER COLUMN prev_hash SET NOT NULL, ALTER COLUMN hash SET NOT NULL`.execute(db);
  await sql`CREATE UNIQUE INDEX audit_log_chain_seq_idx ON audit_log (chain_seq)`.execute(db);
  await sql`
    CREATE FUNCTION audit_log_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
      RAISE EXCEPTION 'audit_log is append-only: % is refused', TG_OP USING ERRCODE = 'insufficient_privilege';
    END
    $$
  `.execute(db);
  await sql`CREATE TRIGGER audit_log_append_only BEFORE UPDATE OR DELETE ON audit_log FOR EACH ROW EXECUTE FUNCTION audit_log_append_only()`.execute(db);
  await sql`CREATE TRIGGER audit_log_no_truncate BEFORE TRUNCATE ON audit_log FOR EACH STATEMENT EXECUTE FUNCTION audit_log_append_only()`.execute(db);
}
