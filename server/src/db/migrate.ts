import type { Kysely } from 'kysely';
import { Migrator, type Migration, type MigrationProvider } from 'kysely/migration';
import type { Database } from './schema.js';
import * as m0001 from './migrations/0001-initial.js';
import * as m0002 from './migrations/0002-resilience.js';
import * as m0003 from './migrations/0003-usage-index.js';
import * as m0004 from './migrations/0004-turn-owner.js';
import * as m0005 from './migrations/0005-upstream-failures-at.js';
import * as m0006 from './migrations/0006-fts-finished-answers.js';
import * as m0007 from './migrations/0007-monthly-token-quota.js';
import * as m0009 from './migrations/0009-credential-revocation.js';
import * as m0010 from './migrations/0010-audit-chain.js';
import * as m0011 from './migrations/0011-upstream-failure-detail.js';
import * as m0012 from './migrations/0012-agent-hedge.js';
import * as m0013 from './migrations/0013-endpoint-continuation.js';
import * as m0014 from './migrations/0014-hidden-sessions.js';
import * as m0015 from './migrations/0015-share-links.js';
import * as m0016 from './migrations/0016-agent-content-policy.js';
import * as m0017 from './migrations/0017-answer-versions.js';
import * as m0018 from './migrations/0018-attachments.js';

/** Every migration, in order. Add new ones at the end; never edit old ones. */
const migrations: Record<string, Migration> = {
  '0001-initial': m0001,
  '0002-resilience': m0002,
  '0003-usage-index': m0003,
  '0004-turn-owner': m0004,
  '0005-upstream-failures-at': m0005,
  '0006-fts-finished-answers': m0006,
  '0007-monthly-token-quota': m0007,
  '0009-credential-revocation': m0009,
  '0010-audit-chain': m0010,
  '0011-upstream-failure-detail': m0011,
  '0012-agent-hedge': m0012,
  '0013-endpoint-continuation': m0013,
  '0014-hidden-sessions': m0014,
  '0015-share-links': m0015,
  '0016-agent-content-policy': m0016,
  '0017-answer-versions': m0017,
  '0018-attachments': m0018,
};

const provider: MigrationProvider = { getMigrations: () => Promise.resolve(migrations) };

export const latestMigration = Object.keys(migrations).at(-1) ?? '';

/** Runs pending migrations; safe to call from several instances at once (Kysely takes an advisory lock). */
export async function migrateToLatest(db: Kysely<Database>): Promise<string[]> {
  const migrator = new Migrator({ db, provider });
  const { error, results } = await migrator.migrateToLatest();
  if (error) throw error instanceof Error ? error : new Error('migration failed', { cause: error });
  return (results ?? []).filter((r) => r.status === 'Success').map((r) => r.migrationName);
}

/** True when every known migration has been applied. */
export async function migrationsDone(db: Kysely<Database>): Promise<boolean> {
  const migrator = new Migrator({ db, provider });
  const all = await migrator.getMigrations();
  return all.every((m) => m.executedAt !== undefined);
}
