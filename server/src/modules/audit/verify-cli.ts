import fs from 'node:fs';
import path from 'node:path';
import { ConfigError, loadConfig } from '../../config.js';
import { createDatabase } from '../../db/database.js';
import { verifyAuditChain } from './audit-chain.js';

/**
 * `npm run audit:verify`: reads the whole audit log of DATABASE_URL (or the
 * embedded PGlite under DATA_DIR, while no server has it open) and checks
 * its hash chain. Exit 0 and the head when it is intact; exit 1 and one line
 * per problem (which entry was modified, which were deleted) when it is not;
 * exit 2 when it could not read the log at all.
 */
try {
  const config = loadConfig();
  const pgliteDir = config.databaseUrl ? undefined : `${config.dataDir}/pglite`;
  // Opening a directory that holds no database would create an empty one and call it intact.
  if (pgliteDir !== undefined && !fs.existsSync(path.join(pgliteDir, 'PG_VERSION'))) throw new ConfigError([`DATA_DIR holds no database at ${pgliteDir} (set DATA_DIR or DATABASE_URL as the server has them)`]);
  const database = await createDatabase({ url: config.databaseUrl, pgliteDir });
  try {
    const report = await verifyAuditChain(database.db);
    if (report.ok) {
      console.log(`audit log intact: ${report.entries} entries; head position ${report.head.seq}, hash ${report.head.hash}`);
      console.log('Keep the head somewhere else: a later run that finds the same position with another hash means the chain was rewritten.');
    } else {
      console.error(`audit log TAMPERED: ${report.problems.length} problem(s) in ${report.entries} entries (head position ${report.head.seq})`);
      for (const p of report.problems) console.error(`  ${p.kind}: ${p.message}`);
      process.exitCode = 1;
    }
  } finally {
    await database.close();
  }
} catch (err) {
  if (err instanceof ConfigError) console.error(err.message);
  else if (err instanceof Error && /relation "audit_(chain_head|log)" does not exist/.test(err.message)) {
    console.error('This database has no audit chain yet (migration 0010): run `npm run migrate` or start the server once, then verify.');
  } else console.error(err);
  process.exitCode = 2;
}
