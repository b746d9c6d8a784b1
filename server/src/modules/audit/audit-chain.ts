import { createHash } from 'node:crypto';
import { sql, type Kysely, type RawBuilder } from 'kysely';

/**
 * The audit log is a hash chain. Each entry stores its position
 * (`chain_seq`, 1, 2, 3, … without gaps), the hash of the entry before it
 * (`prev_hash`) and its own `hash`: SHA-256 over a canonical text of its
 * position, the previous hash and every column. One row, `audit_chain_head`,
 * holds the last position and hash; an insert locks it (SELECT … FOR
 * UPDATE in the same statement), so inserts from any number of instances
 * take turns and the chain never forks. The table refuses UPDATE, DELETE
 * and TRUNCATE (a trigger, migration 0010), and no code path of the app
 * issues them.
 *
 * Someone who can write to the database directly can still change rows;
 * `verifyAuditChain` then says which: a changed row no longer matches its
 * hash, a changed and re-hashed row breaks the next row's link, a deleted
 * row leaves a gap in the positions, rows cut from the end no longer reach
 * the head. Rewriting the whole chain and the head after a change is
 * detected only against a head recorded elsewhere: `npm run audit:verify`
 * prints the head, for operators to keep.
 */

/** The `prev_hash` of the first entry. */
export const GENESIS_HASH = '0'.repeat(64);

/**
 * The canonical text an entry's hash covers, as SQL over the row `alias`.
 * jsonb's text form is canonical (keys sorted, numbers and strings
 * normalised) and the same on PostgreSQL and PGlite; the time is written in
 * UTC with microseconds. Version 1: never change it (migration 0010 hashed
 * the existing rows with it); a new form would be version 2, beside it.
 */
export function canonicalEntry(alias: string): RawBuilder<string> {
  const r = sql.ref(alias);
  return sql<string>`('llmchat-audit-v1' || jsonb_build_array(${r}.id, ${r}.chain_seq, ${r}.prev_hash, to_char(${r}.at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'), ${r}.actor_id, ${r}.actor_username, ${r}.action, ${r}.target_type, ${r}.target_id, ${r}.success, ${r}.ip, ${r}.detail)::text)`;
}

/** The same hash the database computes on insert, computed here from the canonical text. */
export function entryHash(canonical: string): string {
  return createHash('sha256').update(canonical, 'utf8').digest('hex');
}

/** One entry's columns as `record` writes them. */
export interface ChainedEntryValues {
  actorId: string | null;
  actorUsername: string | null;
  action: string;
  targetType: string | null;
  targetId: string | null;
  success: boolean;
  ip: string | null;
  /** JSON text, or null. */
  detail: string | null;
}

/**
 * Appends one entry in one statement (one round trip): locks the chain
 * head, inserts the entry after it with its hash, moves the head. A
 * concurrent insert waits for the lock and then reads the moved head.
 */
export async function appendEntry<DB>(db: Kysely<DB>, v: ChainedEntryValues): Promise<void> {
  await sql`
    WITH head AS (
      SELECT seq, hash FROM audit_chain_head WHERE id = 1 FOR UPDATE
    ), entry AS (
      SELECT nextval(pg_get_serial_sequence('audit_log', 'id')) AS id, head.seq + 1 AS chain_seq, head.hash AS prev_hash, now() AS at,
             ${v.actorId}::uuid AS actor_id, ${v.actorUsername}::text AS actor_username, ${v.action}::text AS action,
             ${v.targetType}::text AS target_type, ${v.targetId}::text AS target_id, ${v.success}::boolean AS success,
             ${v.ip}::text AS ip, ${v.detail}::jsonb AS detail
      FROM head
    ), hashed AS (
      SELECT entry.*, encode(sha256(convert_to(${canonicalEntry('entry')}, 'UTF8')), 'hex') AS hash FROM entry
    ), inserted AS (
      INSERT INTO audit_log (id, chain_seq, prev_hash, hash, at, actor_id, actor_username, action, target_type, target_id, success, ip, detail)
      OVERRIDING SYSTEM VALUE
      SELECT id, chain_seq, prev_hash, hash, at, actor_id, actor_username, action, target_type, target_id, success, ip, detail FROM hashed
      RETURNING chain_seq, hash
    )
    UPDATE audit_chain_head SET seq = inserted.chain_seq, hash = inserted.hash FROM inserted WHERE audit_chain_head.id = 1
  `.execute(db);
}

export type ChainProblemKind = 'modified' | 'relinked' | 'deleted' | 'truncated' | 'reordered' | 'head';

export interface ChainProblem {
  kind: ChainProblemKind;
  /** The entry the problem was found at (for a deletion: the entry after the gap), when there is one. */
  id: number | null;
  seq: number | null;
  message: string;
}

export interface ChainReport {
  ok: boolean;
  entries: number;
  head: { seq: number; hash: string };
  problems: ChainProblem[];
}

const BATCH = 1_000;
/** Problems listed at most; the count of entries read is complete either way. */
const MAX_PROBLEMS = 1_000;

/** Reads the whole chain in order, in batches, and says whether and where it was tampered with. */
export async function verifyAuditChain<DB>(db: Kysely<DB>): Promise<ChainReport> {
  const headRows = await sql<{ seq: number | string; hash: string }>`SELECT seq, hash FROM audit_chain_head WHERE id = 1`.execute(db);
  const headRow = headRows.rows[0];
  const problems: ChainProblem[] = [];
  const report = (p: ChainProblem) => {
    if (problems.length < MAX_PROBLEMS) problems.push(p);
  };
  const head = { seq: Number(headRow?.seq ?? 0), hash: headRow?.hash ?? GENESIS_HASH };
  if (!headRow) report({ kind: 'head', id: null, seq: null, message: 'the chain head (audit_chain_head) is missing' });

  let entries = 0;
  let expectedSeq = 1;
  let prevHash = GENESIS_HASH;
  let prevId: number | null = null;
  let after = 0;
  for (;;) {
    const { rows } = await sql<{ id: number | string; chain_seq: number | string; prev_hash: string; hash: string; canonical: string }>`
      SELECT a.id, a.chain_seq, a.prev_hash, a.hash, ${canonicalEntry('a')} AS canonical
      FROM audit_log a WHERE a.chain_seq > ${after} ORDER BY a.chain_seq LIMIT ${BATCH}
    `.execute(db);
    for (const row of rows) {
      const id = Number(row.id);
      const seq = Number(row.chain_seq);
      entries++;
      if (seq > expectedSeq) {
        const missing = seq - expectedSeq === 1 ? `entry ${expectedSeq} is` : `entries ${expectedSeq}–${seq - 1} are`;
        report({ kind: 'deleted', id, seq, message: `${missing} missing (deleted) ${prevId === null ? 'before the first entry' : `between id ${prevId} and id ${id}`}` });
      } else if (row.prev_hash !== prevHash) {
        report({ kind: 'relinked', id, seq, message: `entry ${seq} (id ${id}) does not link to the entry before it (id ${prevId ?? 'none'}): that entry was changed and re-hashed, or this link was rewritten` });
      }
      if (prevId !== null && id <= prevId) {
        report({ kind: 'reordered', id, seq, message: `entry ${seq} has id ${id}, not above the id ${prevId} of the entry before it` });
      }
      if (entryHash(row.canonical) !== row.hash) {
        report({ kind: 'modified', id, seq, message: `entry ${seq} (id ${id}) was modified: its content does not match its hash` });
      }
      expectedSeq = seq + 1;
      // A gap or a broken link is reported once; the chain goes on from what each row stores.
      prevHash = row.hash;
      prevId = id;
      after = seq;
    }
    if (rows.length < BATCH) break;
  }

  const lastSeq = expectedSeq - 1;
  if (lastSeq < head.seq) {
    const missing = head.seq - lastSeq === 1 ? `entry ${head.seq} is` : `entries ${lastSeq + 1}–${head.seq} are`;
    report({ kind: 'truncated', id: null, seq: lastSeq + 1, message: `${missing} missing (deleted from the end${prevId === null ? '' : `, after id ${prevId}`})` });
  } else if (lastSeq > head.seq) {
    report({ kind: 'head', id: prevId, seq: lastSeq, message: `entries past the head (position ${head.seq}) exist: they were added outside the audit log, or the head was rolled back` });
  } else if (headRow && lastSeq > 0 && prevHash !== head.hash) {
    report({ kind: 'head', id: prevId, seq: lastSeq, message: `the last entry's hash does not match the chain head: it was changed and re-hashed, or the head was rewritten` });
  }
  return { ok: problems.length === 0, entries, head, problems };
}
