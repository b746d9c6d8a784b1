import { existsSync } from 'node:fs';
import path from 'node:path';

const SYSTEM_DIRS = ['/usr/sbin', '/usr/bin', '/usr/local/sbin', '/usr/local/bin'];

/**
 * Where an engine's binary is: the path in `variable` when that is set,
 * else the first system directory (Debian's packages and local installs)
 * that has `name`; undefined when none does.
 */
export function findBinary(name: string, variable?: string): string | undefined {
  const fromEnv = variable === undefined ? undefined : process.env[variable];
  if (fromEnv) return fromEnv;
  return SYSTEM_DIRS.map((dir) => path.join(dir, name)).find((candidate) => existsSync(candidate));
}
