/**
 * `npm run backup`: makes sure the stanza exists and archiving works, then
 * takes one base backup with pgBackRest (incremental on top of the last
 * one; pgBackRest makes it full when there is no full backup yet).
 */

import { runPgbackrest, stanzaInfo, type BackupInfo, type Stanza, type StanzaInfo } from './pgbackrest.js';

export type BackupType = 'full' | 'diff' | 'incr';
export const BACKUP_TYPES: readonly BackupType[] = ['full', 'diff', 'incr'];

const SETUP_TIMEOUT_MS = 5 * 60_000;

export interface BackupResult {
  /** What was asked for; pgBackRest takes a full backup instead when there is none yet. */
  requested: BackupType;
  backup: BackupInfo;
  stanza: StanzaInfo;
  /** `pgbackrest info` as an operator reads it. */
  infoText: string;
}

/**
 * `onStep` hears each step as it starts; `onLine` sees pgBackRest's own
 * progress lines. The backup itself may run for `timeoutMs` at most.
 */
export async function takeBackup(
  target: Stanza,
  options: { type: BackupType; timeoutMs: number; onStep?: (step: string) => void; onLine?: (line: string) => void },
): Promise<BackupResult> {
  const step = options.onStep ?? (() => undefined);
  const progress = { onLine: options.onLine };
  // Both are safe to repeat: stanza-create accepts a stanza that exists and matches this cluster.
  step(`stanza-create ${target.stanza}`);
  await runPgbackrest(target, 'stanza-create', [], { timeoutMs: SETUP_TIMEOUT_MS, ...progress });
  // check forces a WAL switch and waits for it to reach the repository: archive_command works end to end.
  step('check (archive_command reaches the repository)');
  await runPgbackrest(target, 'check', [], { timeoutMs: SETUP_TIMEOUT_MS, ...progress });
  step(`backup --type=${options.type}`);
  await runPgbackrest(target, 'backup', [`--type=${options.type}`, '--log-level-console=info'], { timeoutMs: options.timeoutMs, ...progress });
  const stanza = await stanzaInfo(target, SETUP_TIMEOUT_MS);
  const backup = stanza?.backup.at(-1);
  if (stanza === undefined || backup === undefined) throw new Error(`pgbackrest info lists no backup of stanza ${target.stanza} after the backup`);
  const { stdout: infoText } = await runPgbackrest(target, 'info', [], { timeoutMs: SETUP_TIMEOUT_MS });
  return { requested: options.type, backup, stanza, infoText };
}

function mebibytes(bytes: number): string {
  return `${(bytes / 1024 / 1024).toFixed(1)} MiB`;
}

/** One line for the log: which backup, what it holds and what it cost. */
export function describeBackup(backup: BackupInfo): string {
  const seconds = backup.timestamp.stop - backup.timestamp.start;
  const base = backup.prior === null ? '' : ` on top of ${backup.prior}`;
  return (
    `${backup.type} backup ${backup.label}${base}: database ${mebibytes(backup.info.size)} (${mebibytes(backup.info.delta)} copied), ` +
    `${mebibytes(backup.info.repository.delta)} written to the repository, in ${seconds} s; WAL ${backup.archive.start ?? '?'} to ${backup.archive.stop ?? '?'}`
  );
}
