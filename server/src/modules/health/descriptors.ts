import { readFileSync, readdirSync } from 'node:fs';

/**
 * Open file descriptors of this process against its limit. Every answer
 * holds a client connection, and over HTTP/1.1 an upstream connection too:
 * at 10,000 answers an instance holds about 20,000 sockets, more than many
 * hosts allow by default. Linux only (/proc); elsewhere unknown.
 */
export interface Descriptors {
  open: number;
  /** The soft limit (RLIMIT_NOFILE); Node raises it to the hard limit at start. Null when unlimited. */
  limit: number | null;
}

export function readDescriptors(): Descriptors | undefined {
  try {
    const open = readdirSync('/proc/self/fd').length;
    return { open, limit: descriptorLimit(readFileSync('/proc/self/limits', 'utf8')) };
  } catch {
    return undefined;
  }
}

/** The soft "Max open files" of /proc/<pid>/limits; null for unlimited. Throws when the line is missing. */
export function descriptorLimit(limits: string): number | null {
  const line = limits.split('\n').find((l) => l.startsWith('Max open files'));
  if (line === undefined) throw new Error('no "Max open files" in /proc/self/limits');
  const soft = line.slice('Max open files'.length).trim().split(/\s+/)[0];
  return soft === 'unlimited' || soft === undefined ? null : Number(soft);
}

/** Descriptors besides the streams' sockets: database and Redis pools, files, listeners, headroom. */
export const DESCRIPTOR_RESERVE = 1024;

/**
 * What carrying `streams` answers at once needs: one client socket each, and
 * one upstream socket each over HTTP/1.1 (HTTP/2 multiplexes them).
 */
export function descriptorsNeeded(streams: number): number {
  return 2 * streams + DESCRIPTOR_RESERVE;
}

/** A warning for the start log when the limit is below what `streams` answers at once need; undefined when it is not. */
export function descriptorWarning(descriptors: Descriptors | undefined, streams: number): { limit: number; needed: number } | undefined {
  if (descriptors === undefined || descriptors.limit === null) return undefined;
  const needed = descriptorsNeeded(streams);
  return descriptors.limit < needed ? { limit: descriptors.limit, needed } : undefined;
}
