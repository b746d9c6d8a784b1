import type { Kysely } from 'kysely';
import type { Database } from '../../db/schema.js';

export interface Revocation {
  /** Access tokens issued before this instant stop working. */
  at: Date;
  /** A refresh-token family to keep (the session that changed its own password). */
  keepFamily?: string | undefined;
  /** Also revoke the user's personal API keys. */
  apiKeys: boolean;
}

/**
 * Ends a user's credentials after a password change or reset: every
 * refresh-token family (but the one kept), every access token issued before
 * `at` (through `users.tokens_valid_after`, which the authenticator checks),
 * and optionally every API key. Run it in the transaction that sets the new
 * password; then announce the user as changed so every instance drops its
 * cached "valid after" time at once.
 */
export async function revokeCredentials(trx: Kysely<Database>, userId: string, revocation: Revocation): Promise<{ apiKeysRevoked: number }> {
  await trx.updateTable('users').set({ tokens_valid_after: revocation.at }).where('id', '=', userId).execute();
  let refresh = trx.updateTable('refresh_tokens').set({ revoked_at: revocation.at }).where('user_id', '=', userId).where('revoked_at', 'is', null);
  if (revocation.keepFamily) refresh = refresh.where('family_id', '!=', revocation.keepFamily);
  await refresh.execute();
  if (!revocation.apiKeys) return { apiKeysRevoked: 0 };
  const keys = await trx.updateTable('api_keys').set({ revoked_at: revocation.at }).where('user_id', '=', userId).where('revoked_at', 'is', null).executeTakeFirst();
  return { apiKeysRevoked: Number(keys.numUpdatedRows) };
}
