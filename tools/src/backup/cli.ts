/**
 * Backups and point-in-time restore of LLMChat's PostgreSQL with pgBackRest.
 *
 *   node tools/dist/backup/cli.js backup   [--type full|diff|incr] [where]
 *   node tools/dist/backup/cli.js restore  --to TIME|latest [--into DIR] [--port N] [--json] [where]
 *   node tools/dist/backup/cli.js config   --pg-data DIR --repo DIR [--stanza NAME] [--pg-port N] [--pg-socket DIR] [--out FILE]
 *   node tools/dist/backup/cli.js settings [--config FILE] [--stanza NAME] [--archive-timeout SECONDS] [--json]
 *
 * `where` picks the repository and cluster: --config FILE (pgbackrest.conf;
 * default PGBACKREST_CONFIG, else pgBackRest's own default), --stanza NAME
 * (default PGBACKREST_STANZA, else llmchat), and overrides of the file's
 * --pg-data (PGDATA), --pg-port (PGPORT), --pg-socket (PGHOST when it is a
 * directory) and --repo. As root, pgBackRest and PostgreSQL run as
 * --os-user (default postgres). --cluster instead takes the deployment
 * `npm run cluster` is running: its repository, through the current Patroni
 * leader's pgbackrest.conf.
 */

import { chownSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { archiveSettings, DEFAULT_STANZA, postgresqlConfLines, restoreCommand } from './archive-settings.js';
import { BACKUP_TYPES, describeBackup, takeBackup, type BackupType } from './backup.js';
import { renderShippedPgbackrestConfig } from './pgbackrest-config.js';
import { databaseOsUser, type Stanza } from './pgbackrest.js';
import { parseRecoveryTarget, type RecoveryTarget } from './recovery-target.js';
import { restoreCluster } from './restore.js';
import { clusterStanza } from './running-cluster.js';

const USAGE = `usage:
  backup   [--type full|diff|incr] [--timeout SECONDS] [where]
  restore  --to TIME|latest [--into DIR] [--port N] [--user NAME] [--database NAME] [--timeout SECONDS] [--json] [where]
  config   --pg-data DIR --repo DIR [--stanza NAME] [--pg-port N] [--pg-socket DIR] [--log-path DIR] [--lock-path DIR] [--out FILE]
  settings [--config FILE] [--stanza NAME] [--archive-timeout SECONDS] [--json]
where: [--config FILE] [--stanza NAME] [--pg-data DIR] [--pg-port N] [--pg-socket DIR] [--repo DIR] [--os-user NAME]
       or --cluster: the deployment \`npm run cluster\` runs (through its current leader)`;

/** Bounds: a backup of a large cluster takes hours; a restore beyond the RTO promise is a failure worth hearing about. */
const DEFAULT_BACKUP_TIMEOUT_S = 6 * 3600;
const DEFAULT_RESTORE_TIMEOUT_S = 30 * 60;

class UsageError extends Error {}

const OPTIONS = {
  type: { type: 'string' },
  to: { type: 'string' },
  into: { type: 'string' },
  port: { type: 'string' },
  user: { type: 'string' },
  database: { type: 'string' },
  timeout: { type: 'string' },
  json: { type: 'boolean' },
  config: { type: 'string' },
  stanza: { type: 'string' },
  'pg-data': { type: 'string' },
  'pg-port': { type: 'string' },
  'pg-socket': { type: 'string' },
  repo: { type: 'string' },
  'os-user': { type: 'string' },
  'log-path': { type: 'string' },
  'lock-path': { type: 'string' },
  out: { type: 'string' },
  'archive-timeout': { type: 'string' },
  cluster: { type: 'boolean' },
  help: { type: 'boolean', short: 'h' },
} as const;

type Values = ReturnType<typeof parseArgs<{ options: typeof OPTIONS; allowPositionals: true }>>['values'];

function positiveInteger(name: string, value: string | undefined): number | undefined {
  if (value === undefined) return undefined;
  if (!/^[1-9]\d*$/.test(value)) throw new UsageError(`--${name} must be a positive whole number, got "${value}"`);
  return Number(value);
}

function required(name: string, value: string | undefined): string {
  if (value === undefined || value === '') throw new UsageError(`--${name} is required`);
  return value;
}

function absolute(value: string | undefined): string | undefined {
  return value === undefined ? undefined : path.resolve(value);
}

/** Options first, then the environment names operators already use for them. */
function where(values: Values): Stanza {
  const env = process.env;
  const configPath = absolute(values.config ?? (env.PGBACKREST_CONFIG || undefined));
  const pgData = absolute(values['pg-data'] ?? (env.PGDATA || undefined));
  const pgPort = positiveInteger('pg-port', values['pg-port'] ?? (env.PGPORT || undefined));
  const pgSocket = absolute(values['pg-socket'] ?? (env.PGHOST?.startsWith('/') ? env.PGHOST : undefined));
  const repo = absolute(values.repo);
  const overrides: Record<string, string> = {};
  if (pgData !== undefined) overrides['pg1-path'] = pgData;
  if (pgPort !== undefined) overrides['pg1-port'] = String(pgPort);
  if (pgSocket !== undefined) overrides['pg1-socket-path'] = pgSocket;
  if (repo !== undefined) overrides['repo1-path'] = repo;
  const osUser = databaseOsUser(values['os-user'] ?? 'postgres');
  return {
    stanza: values.stanza ?? (env.PGBACKREST_STANZA || DEFAULT_STANZA),
    overrides,
    ...(configPath === undefined ? {} : { configPath }),
    ...(osUser === undefined ? {} : { osUser }),
  };
}

/** --cluster, or the options and environment. */
async function source(values: Values): Promise<Stanza> {
  if (values.cluster !== true) return where(values);
  if (values.config !== undefined || values['pg-data'] !== undefined || values.repo !== undefined) throw new UsageError('--cluster names the repository and cluster itself: leave out --config, --pg-data and --repo');
  return clusterStanza();
}

async function runBackup(values: Values): Promise<void> {
  const type = (values.type ?? 'incr') as BackupType;
  if (!BACKUP_TYPES.includes(type)) throw new UsageError(`--type must be one of ${BACKUP_TYPES.join(', ')}, got "${type}"`);
  const target = await source(values);
  const timeoutS = positiveInteger('timeout', values.timeout) ?? DEFAULT_BACKUP_TIMEOUT_S;
  console.log(`backup of stanza ${target.stanza} (config ${target.configPath ?? "pgBackRest's default"})`);
  const result = await takeBackup(target, {
    type,
    timeoutMs: timeoutS * 1000,
    onStep: (step) => console.log(`- ${step}`),
    onLine: (line) => console.log(`    ${line}`),
  });
  if (result.backup.type !== type) console.log(`(asked for ${type}; there was no backup to build on, so pgBackRest took a ${result.backup.type} backup)`);
  console.log(`done: ${describeBackup(result.backup)}`);
  console.log('');
  console.log(result.infoText.trimEnd());
}

async function runRestore(values: Values): Promise<void> {
  let target: RecoveryTarget;
  try {
    target = parseRecoveryTarget(required('to', values.to));
  } catch (err) {
    throw new UsageError((err as Error).message);
  }
  const timeoutS = positiveInteger('timeout', values.timeout) ?? DEFAULT_RESTORE_TIMEOUT_S;
  // With --json, stdout carries the one JSON line; progress goes to stderr either way.
  const restored = await restoreCluster({
    source: await source(values),
    target,
    into: values.into,
    port: positiveInteger('port', values.port),
    user: values.user,
    database: values.database,
    timeoutMs: timeoutS * 1000,
    onStep: (step) => console.error(`- ${step}`),
    onLine: (line) => console.error(`    ${line}`),
  });
  if (values.json === true) {
    console.log(JSON.stringify(restored));
    return;
  }
  console.log(`restored to ${restored.target}: ${restored.url}`);
  console.log(`  data directory ${restored.dataDir}, pid ${restored.pid}, log ${restored.logFile}`);
  console.log(`  copy ${(restored.restoreMs / 1000).toFixed(1)} s, recovery ${(restored.recoveryMs / 1000).toFixed(1)} s`);
  console.log(`  stop it with: pg_ctl -D ${restored.dataDir} stop`);
}

function printConfig(values: Values): void {
  const text = renderShippedPgbackrestConfig({
    pgData: required('pg-data', absolute(values['pg-data'])),
    repoPath: required('repo', absolute(values.repo)),
    stanza: values.stanza,
    pgPort: positiveInteger('pg-port', values['pg-port']),
    pgSocket: absolute(values['pg-socket']),
    logPath: absolute(values['log-path']),
    lockPath: absolute(values['lock-path']),
  });
  if (values.out === undefined) {
    process.stdout.write(text);
    return;
  }
  writeFileSync(values.out, text, { mode: 0o640 });
  const owner = databaseOsUser(values['os-user'] ?? 'postgres');
  if (owner) chownSync(values.out, owner.uid, owner.gid);
  console.error(`wrote ${values.out}`);
}

function printSettings(values: Values): void {
  const options = {
    stanza: values.stanza ?? (process.env.PGBACKREST_STANZA || DEFAULT_STANZA),
    configPath: absolute(values.config ?? (process.env.PGBACKREST_CONFIG || undefined)),
    archiveTimeoutSeconds: positiveInteger('archive-timeout', values['archive-timeout']),
  };
  const settings = archiveSettings(options);
  const restore = restoreCommand(options);
  if (values.json === true) {
    console.log(JSON.stringify({ parameters: settings, restore_command: restore }));
    return;
  }
  console.log('# postgresql.conf (Patroni: postgresql.parameters); archive_mode takes a restart');
  for (const line of postgresqlConfLines({ ...settings })) console.log(line);
  console.log('# replicas and restored clusters (Patroni: postgresql.recovery_conf)');
  for (const line of postgresqlConfLines({ restore_command: restore })) console.log(line);
}

async function main(): Promise<void> {
  const { values, positionals } = parseArgs({ options: OPTIONS, allowPositionals: true });
  const command = positionals[0];
  if (values.help === true || command === undefined) {
    console.log(USAGE);
    return;
  }
  if (positionals.length > 1) throw new UsageError(`unexpected argument "${positionals[1]}"`);
  switch (command) {
    case 'backup':
      return runBackup(values);
    case 'restore':
      return runRestore(values);
    case 'config':
      return printConfig(values);
    case 'settings':
      return printSettings(values);
    default:
      throw new UsageError(`unknown command "${command}"`);
  }
}

main().catch((err: unknown) => {
  if (err instanceof UsageError || (err instanceof TypeError && 'code' in err && String(err.code).startsWith('ERR_PARSE_ARGS'))) {
    console.error(`${err.message}\n${USAGE}`);
    process.exit(2);
  }
  console.error(err instanceof Error ? err.message : String(err));
  process.exit(1);
});
