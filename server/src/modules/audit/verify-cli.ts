import { ConfigError, loadConfig } from '../../config.js';
import { createDatabase } from '../../db/database.js';
import { verifyAuditChain } from './audit-chain.js';

/**
 * `npm run audit:verify`: reads the whole audit log of DATABASE_URL (or the
 * embedded PGlite under DATA_DIR, while no server has it open) and checks
 * its hash chain. Exit 0 and the head when it is intact; exit 1 and one line
 * per problem (which entry was modified, which were deleted) when it is not.
 */
try {
  const config = loadConfig();
  const database = await createDatabase({ url: config.databaseUrl, pgliteDir: config.databaseUrl ? undefined : `${config.dataDir}/pglite` });
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
  console.error(err instanceof ConfigError ? err.message : err);
  process.exitCode = 2;
}
