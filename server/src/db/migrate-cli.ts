import { ConfigError, loadConfig } from '../config.js';
import { createDatabase } from './database.js';
import { migrateToLatest } from './migrate.js';

/** `npm run migrate`: applies pending migrations to DATABASE_URL (or the embedded PGlite) and exits. */
try {
  const config = loadConfig();
  const database = await createDatabase({ url: config.databaseUrl, pgliteDir: config.databaseUrl ? undefined : `${config.dataDir}/pglite` });
  const applied = await migrateToLatest(database.db);
  console.log(applied.length ? `applied: ${applied.join(', ')}` : 'database is up to date');
  await database.close();
} catch (err) {
  console.error(err instanceof ConfigError ? err.message : err);
  process.exit(1);
}
