/**
 * A memory cgroup for the server the bench starts (`--server-memory-limit`),
 * so it runs as it would in a container with a memory limit.
 *
 * Node sizes V8's heap from the cgroup's limit when there is one, not from
 * the host's memory, and the young generation with it: on this 24 GiB host
 * V8 takes a 128 MiB young generation, in a 2 GiB container 64 MiB and in a
 * 1 GiB one 32 MiB. The memory a stream costs therefore depends on where the
 * server runs; this lets the bench measure it as shipped (the Kubernetes
 * manifests limit a pod to 1 GiB, 2 GiB in the production overlay) without
 * putting the load generator and the mock under the same limit.
 *
 * Needs a writable cgroup hierarchy (root, or a delegated subtree): cgroup v1's
 * memory controller, or cgroup v2 with the memory controller enabled for
 * children of the bench's own cgroup.
 */

import { existsSync, mkdirSync, readFileSync, rmdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';

export interface MemoryCgroup {
  /** The cgroup's directory. */
  dir: string;
  /** `command args` run as `sh`, which joins the cgroup and then execs them (same pid). */
  wrap(command: string, args: readonly string[]): [string, string[]];
  /** Removes the cgroup once no process is left in it; best effort. */
  remove(): void;
}

const UNITS: Record<string, number> = { '': 1, k: 2 ** 10, m: 2 ** 20, g: 2 ** 30 };

/** `512M`, `1G`, `1GiB`, `2g`, or bytes, into bytes (binary units). */
export function parseMemorySize(raw: string): number {
  const match = /^\s*(\d+(?:\.\d+)?)\s*([kmg]?)(?:i?b)?\s*$/i.exec(raw);
  const unit = UNITS[(match?.[2] ?? '').toLowerCase()];
  if (match === null || unit === undefined) throw new Error(`a memory size looks like 512M or 2G, got "${raw}"`);
  const bytes = Math.round(Number(match[1]) * unit);
  if (bytes < 64 * 2 ** 20) throw new Error(`a memory limit below 64 MiB cannot hold the server, got "${raw}"`);
  return bytes;
}

/** How the bench names a limit in its output: `1024 MiB memory cgroup`. */
export function describeMemoryLimit(bytes: number): string {
  return `${(bytes / 2 ** 20).toFixed(0)} MiB memory cgroup`;
}

/** Where a child cgroup of this process's own would go, from /proc/self/cgroup's text; undefined when there is no memory hierarchy. */
export function cgroupParent(procSelfCgroup: string, root = '/sys/fs/cgroup'): { dir: string; version: 1 | 2 } | undefined {
  const lines = procSelfCgroup.split('\n').filter((line) => line.trim() !== '');
  for (const line of lines) {
    const [, controllers, own] = /^\d+:([^:]*):(.*)$/.exec(line) ?? [];
    if (controllers !== undefined && own !== undefined && controllers.split(',').includes('memory')) {
      return { dir: path.join(root, 'memory', own), version: 1 };
    }
  }
  const unified = lines.map((line) => /^0::(.*)$/.exec(line)?.[1]).find((own) => own !== undefined);
  if (unified !== undefined) return { dir: path.join(root, unified), version: 2 };
  return undefined;
}

/** Creates a cgroup limited to `limitBytes` under this process's own; throws with the reason when it cannot. */
export function createMemoryCgroup(limitBytes: number, name: string, procSelfCgroup = readFileSync('/proc/self/cgroup', 'utf8')): MemoryCgroup {
  const parent = cgroupParent(procSelfCgroup);
  if (parent === undefined || !existsSync(parent.dir)) throw new Error('no cgroup memory controller is mounted where this process is (/proc/self/cgroup)');
  if (parent.version === 2) {
    const controllers = readFileSync(path.join(parent.dir, 'cgroup.subtree_control'), 'utf8');
    if (!controllers.split(/\s+/).includes('memory')) {
      throw new Error(`cgroup v2: the memory controller is not enabled for children of ${parent.dir} (cgroup.subtree_control)`);
    }
  }
  const dir = path.join(parent.dir, name);
  try {
    mkdirSync(dir);
    writeFileSync(path.join(dir, parent.version === 1 ? 'memory.limit_in_bytes' : 'memory.max'), String(limitBytes));
  } catch (error) {
    try {
      rmdirSync(dir);
    } catch {
      // never made
    }
    throw new Error(`cannot create a memory cgroup at ${dir} (root, or a delegated cgroup, is needed): ${error instanceof Error ? error.message : String(error)}`, { cause: error });
  }
  const procs = path.join(dir, 'cgroup.procs');
  return {
    dir,
    wrap: (command, args) => ['sh', ['-c', 'echo $$ > "$0" && exec "$@"', procs, command, ...args]],
    remove: () => {
      try {
        rmdirSync(dir);
      } catch {
        // a process is still in it, or it is gone already
      }
    },
  };
}
