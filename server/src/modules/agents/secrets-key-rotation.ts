import type { Kysely } from 'kysely';
import type { Database } from '../../db/schema.js';
import type { SecretBox } from './secret-box.js';

export interface RotationReport {
  /** Values re-encrypted with the current key. */
  resealed: number;
  /** Values already under the current key. */
  current: number;
  /** Ids of endpoints whose value no key opens: left untouched, the admin must set their key again. */
  unreadable: string[];
}

/**
 * Re-encrypts every stored upstream key that is not sealed with the box's
 * current key (a previous SECRETS_KEY, or the v1 format without a key id).
 * Each row is updated only if it still holds the value read, so an admin
 * saving a new key meanwhile is never overwritten. Safe to run twice and
 * while instances serve: they open both keys during the rotation.
 */
export async function rotateStoredSecrets(db: Kysely<Database>, box: SecretBox): Promise<RotationReport> {
  const rows = await db.selectFrom('agent_endpoints').select(['id', 'api_key_encrypted']).where('api_key_encrypted', 'is not', null).execute();
  const report: RotationReport = { resealed: 0, current: 0, unreadable: [] };
  for (const row of rows) {
    const sealed = row.api_key_encrypted;
    if (sealed === null) continue;
    let plain: string;
    try {
      if (!box.needsReseal(sealed)) {
        box.decrypt(sealed);
        report.current++;
        continue;
      }
      plain = box.decrypt(sealed);
    } catch {
      report.unreadable.push(row.id);
      continue;
    }
    const updated = await db
      .updateTable('agent_endpoints')
      .set({ api_key_encrypted: box.encrypt(plain) })
      .where('id', '=', row.id)
      .where('api_key_encrypted', '=', sealed)
      .executeTakeFirst();
    if (Number(updated.numUpdatedRows) > 0) report.resealed++;
  }
  return report;
}
