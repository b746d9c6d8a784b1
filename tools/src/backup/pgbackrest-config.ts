/**
 * The shipped pgbackrest.conf (`ops/pgbackrest/pgbackrest.conf.template`)
 * and how its placeholders are filled in.
 */

import { readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { DEFAULT_STANZA } from './archive-settings.js';

const here = path.dirname(fileURLToPath(import.meta.url));
/** The shipped template, from tools/dist/backup or tools/src/backup alike. */
export const PGBACKREST_TEMPLATE = path.resolve(here, '../../../ops/pgbackrest/pgbackrest.conf.template');

export interface PgbackrestConfigValues {
  /** The PostgreSQL data directory being backed up. */
  pgData: string;
  repoPath: string;
  stanza?: string;
  pgPort?: number;
  /** Directory of PostgreSQL's Unix socket. */
  pgSocket?: string;
  logPath?: string;
  lockPath?: string;
}

/** The defaults of a Debian/Ubuntu host; also pgbackrest's own for the log and lock paths. */
const CONFIG_DEFAULTS = {
  stanza: DEFAULT_STANZA,
  pgPort: 5432,
  pgSocket: '/var/run/postgresql',
  logPath: '/var/log/pgbackrest',
  lockPath: '/tmp/pgbackrest',
} as const;

const PLACEHOLDER = /\$\{(LLMCHAT_[A-Z_]+)\}/g;

/** Fills every `${LLMCHAT_*}` placeholder; one the values do not cover is an error, never left in the file. */
export function renderPgbackrestConfig(template: string, values: PgbackrestConfigValues): string {
  for (const [name, value] of Object.entries(values)) {
    // A line break in a value would start a new option of pgbackrest's own choosing.
    if (typeof value === 'string' && /[\r\n]/.test(value)) throw new Error(`pgbackrest config: ${name} must be one line`);
  }
  const filled: Record<string, string> = {
    LLMCHAT_PG_DATA: values.pgData,
    LLMCHAT_REPO_PATH: values.repoPath,
    LLMCHAT_STANZA: values.stanza ?? CONFIG_DEFAULTS.stanza,
    LLMCHAT_PG_PORT: String(values.pgPort ?? CONFIG_DEFAULTS.pgPort),
    LLMCHAT_PG_SOCKET: values.pgSocket ?? CONFIG_DEFAULTS.pgSocket,
    LLMCHAT_LOG_PATH: values.logPath ?? CONFIG_DEFAULTS.logPath,
    LLMCHAT_LOCK_PATH: values.lockPath ?? CONFIG_DEFAULTS.lockPath,
  };
  return template.replace(PLACEHOLDER, (_, name: string) => {
    const value = filled[name];
    if (value === undefined) throw new Error(`pgbackrest config: no value for placeholder \${${name}}`);
    return value;
  });
}

export function renderShippedPgbackrestConfig(values: PgbackrestConfigValues): string {
  return renderPgbackrestConfig(readFileSync(PGBACKREST_TEMPLATE, 'utf8'), values);
}
