import { ConfigError, loadConfig } from './config.js';
import { createDatabase } from './db/database.js';
import { migrateToLatest } from './db/migrate.js';
import { createSecretBox } from './modules/agents/secret-box.js';
import { rotateStoredSecrets } from './modules/agents/secrets-key-rotation.js';
import { resolveSecrets } from './secrets.js';

/**
 * `npm run rotate-secrets-key`: re-encrypts every stored upstream key with
 * SECRETS_KEY, opening old values with SECRETS_KEY_PREVIOUS. Run it after
 * every instance runs with the new SECRETS_KEY and the old one as
 * SECRETS_KEY_PREVIOUS; once it reports nothing unreadable, unset
 * SECRETS_KEY_PREVIOUS. Exits 2 when some value could not be opened.
 */
try {
  const config = loadConfig();
  const secrets = resolveSecrets(config);
  const database = await createDatabase({ url: config.databaseUrl, pgliteDir: config.databaseUrl ? undefined : `${config.dataDir}/pglite` });
  await migrateToLatest(database.db);
  const box = createSecretBox(secrets.secretsKey, secrets.secretsKeyPrevious);
  const report = await rotateStoredSecrets(database.db, box);
  await database.close();
  console.log(`secrets key ${box.keyId}: re-encrypted ${report.resealed}, already current ${report.current}, unreadable ${report.unreadable.length}`);
  if (report.unreadable.length > 0) {
    console.error(`endpoints whose stored key no configured key opens (set SECRETS_KEY_PREVIOUS, or set their key again): ${report.unreadable.join(', ')}`);
    process.exit(2);
  }
} catch (err) {
  console.error(err instanceof ConfigError ? err.message : err);
  process.exit(1);
}
