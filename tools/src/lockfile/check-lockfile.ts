/**
 * What `npm audit` cannot be asked here (the registry's advisory service
 * does not answer on this machine), the lockfile can still show: where
 * every package comes from and what its bytes must hash to. Every entry of
 * package-lock.json must carry a sha512 `integrity` (npm refuses a tarball
 * that does not match it) and a `resolved` URL on the public registry that
 * names that same package and version: not a git URL, a file, another host,
 * or another package's tarball. The project's own workspaces are the only
 * exceptions (links to directories of this repository).
 */

export const REGISTRY = 'https://registry.npmjs.org/';

const SHA512 = /^sha512-[A-Za-z0-9+/]{86}==$/;

interface LockEntry {
  name?: unknown;
  version?: unknown;
  resolved?: unknown;
  integrity?: unknown;
  link?: unknown;
}

interface Lockfile {
  lockfileVersion?: unknown;
  packages?: Record<string, LockEntry>;
}

/** The package an entry installs: its `name` (an alias installs another package) or the last name in its path. */
export function packageName(key: string, entry: LockEntry): string {
  if (typeof entry.name === 'string') return entry.name;
  return key.slice(key.lastIndexOf('node_modules/') + 'node_modules/'.length);
}

/** The URL npm records for a package on the public registry. */
export function registryTarball(name: string, version: string): string {
  const base = name.startsWith('@') ? name.slice(name.indexOf('/') + 1) : name;
  return `${REGISTRY}${name}/-/${base}-${version}.tgz`;
}

function isWorkspaceDir(key: string, workspaces: Set<string>): boolean {
  return workspaces.has(key);
}

/** Problems with a parsed package-lock.json, one line each; empty when every entry is pinned to the registry. */
export function lockfileProblems(lock: unknown, workspaces: readonly string[]): string[] {
  const problems: string[] = [];
  const file = lock as Lockfile;
  if (typeof file !== 'object' || file === null || typeof file.packages !== 'object' || file.packages === null) {
    return ['not a package-lock.json of lockfileVersion 2 or 3 (no "packages")'];
  }
  if (file.lockfileVersion !== 2 && file.lockfileVersion !== 3) problems.push(`lockfileVersion is ${String(file.lockfileVersion)}, expected 2 or 3`);
  const ownDirs = new Set(workspaces);
  for (const [key, entry] of Object.entries(file.packages)) {
    if (key === '' || isWorkspaceDir(key, ownDirs)) continue;
    if (entry.link === true) {
      // A symlink to a workspace of this repository, and nothing else.
      if (typeof entry.resolved !== 'string' || !ownDirs.has(entry.resolved)) problems.push(`${key}: a link to ${String(entry.resolved)}, which is not one of this repository's workspaces`);
      continue;
    }
    const name = packageName(key, entry);
    if (typeof entry.integrity !== 'string' || !SHA512.test(entry.integrity)) {
      problems.push(`${key}: integrity is ${entry.integrity === undefined ? 'missing' : `not a sha512 hash (${JSON.stringify(entry.integrity).slice(1, 21)}…)`}`);
    }
    if (typeof entry.version !== 'string') {
      problems.push(`${key}: no version`);
      continue;
    }
    const expected = registryTarball(name, entry.version);
    if (typeof entry.resolved !== 'string') problems.push(`${key}: resolved is missing (expected ${expected})`);
    else if (entry.resolved !== expected) problems.push(`${key}: resolved is ${entry.resolved}, expected ${expected}`);
  }
  return problems;
}

/**
 * Writes the registry URL into entries that lack one, as npm does unless
 * `omit-lockfile-registry-resolved` is set (the repository's .npmrc turns
 * it off). Only entries that have a sha512 integrity are filled: the hash,
 * not the URL, is what npm checks the bytes against.
 */
export function fillResolved(lock: Lockfile, workspaces: readonly string[]): number {
  let filled = 0;
  const ownDirs = new Set(workspaces);
  for (const [key, entry] of Object.entries(lock.packages ?? {})) {
    if (key === '' || ownDirs.has(key) || entry.link === true || entry.resolved !== undefined) continue;
    if (typeof entry.version !== 'string' || typeof entry.integrity !== 'string' || !SHA512.test(entry.integrity)) continue;
    // Keep npm's key order: resolved sits right after version.
    const ordered: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(entry)) {
      ordered[k] = v;
      if (k === 'version') ordered.resolved = registryTarball(packageName(key, entry), entry.version);
    }
    for (const k of Object.keys(entry)) delete (entry as Record<string, unknown>)[k];
    Object.assign(entry, ordered);
    filled++;
  }
  return filled;
}
