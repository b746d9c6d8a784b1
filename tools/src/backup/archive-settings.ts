/**
 * The PostgreSQL side of continuous archiving: the parameters that make
 * every WAL segment reach the pgBackRest repository, for a plain
 * postgresql.conf or for Patroni's `postgresql.parameters`.
 */

/** The stanza LLMChat's cluster is backed up under, unless told otherwise. */
export const DEFAULT_STANZA = 'llmchat';
/**
 * A segment is archived once it is full or this old. With few writes it is
 * what bounds the data at risk (RPO): a commit reaches the repository at most
 * this long (plus one archive-push) after it is made.
 */
export const DEFAULT_ARCHIVE_TIMEOUT_SECONDS = 15;

export interface ArchiveOptions {
  stanza?: string;
  /** pgbackrest.conf to use; pgbackrest's own default (/etc/pgbackrest/pgbackrest.conf) when unset. */
  configPath?: string;
  archiveTimeoutSeconds?: number;
  /** The pgbackrest binary, when it is not on PostgreSQL's PATH. */
  pgbackrestPath?: string;
}

/** PostgreSQL parameters, by name, as PostgreSQL and Patroni take them. */
export interface ArchiveSettings {
  archive_mode: 'on';
  archive_command: string;
  archive_timeout: string;
}

/** Quotes for /bin/sh, which runs archive_command and restore_command, only where needed. */
export function shellQuote(value: string): string {
  return /^[\w@%+=:,./-]+$/.test(value) ? value : `'${value.replace(/'/g, `'\\''`)}'`;
}

function pgbackrestCommand(options: ArchiveOptions): string {
  const words = [options.pgbackrestPath ?? 'pgbackrest'];
  if (options.configPath !== undefined) words.push(`--config=${options.configPath}`);
  words.push(`--stanza=${options.stanza ?? DEFAULT_STANZA}`);
  return words.map(shellQuote).join(' ');
}

/**
 * `archive_mode = on` archives on the primary only; after a failover the new
 * primary archives from its promotion on, so the archive stays one history.
 */
export function archiveSettings(options: ArchiveOptions = {}): ArchiveSettings {
  const timeout = options.archiveTimeoutSeconds ?? DEFAULT_ARCHIVE_TIMEOUT_SECONDS;
  if (!Number.isInteger(timeout) || timeout < 1) throw new Error(`archive timeout must be a whole number of seconds ≥ 1, got ${timeout}`);
  return {
    archive_mode: 'on',
    archive_command: `${pgbackrestCommand(options)} archive-push %p`,
    archive_timeout: `${timeout}s`,
  };
}

/** What a replica or a restored cluster fetches WAL with (Patroni: `postgresql.recovery_conf.restore_command`). */
export function restoreCommand(options: ArchiveOptions = {}): string {
  return `${pgbackrestCommand(options)} archive-get %f "%p"`;
}

/** One `name = 'value'` line per parameter, as postgresql.conf and ALTER SYSTEM spell string values. */
export function postgresqlConfLines(parameters: Readonly<Record<string, string>>): string[] {
  return Object.entries(parameters).map(([name, value]) => `${name} = '${value.replace(/'/g, "''")}'`);
}
