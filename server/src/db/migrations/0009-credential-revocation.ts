import { sql, type Kysely } from 'kysely';

/**
 * Credentials that die with a compromise:
 * - `users.tokens_valid_after`: access tokens issued before it are refused
 *   (set by a password change or reset); null means none is revoked.
 * - `api_keys.scopes`: space-separated scopes of a personal API key
 *   (`chat`, `admin`, `keys`). Keys made before scopes existed get `chat`
 *   only: an older key can no longer reach admin routes or make keys
 *   until its owner makes a new one with those scopes.
 */
export async function up(db: Kysely<unknown>): Promise<void> {
  await sql`ALTER TABLE users ADD COLUMN IF NOT EXISTS tokens_valid_after timestamptz`.execute(db);
  await sql`ALTER TABLE api_keys ADD COLUMN IF NOT EXISTS scopes text NOT NULL DEFAULT 'chat'`.execute(db);
}
