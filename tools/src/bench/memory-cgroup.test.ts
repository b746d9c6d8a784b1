import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { cgroupParent, createMemoryCgroup, parseMemorySize } from './memory-cgroup.js';

describe('parseMemorySize', () => {
  it('reads binary units and bytes', () => {
    expect(parseMemorySize('1G')).toBe(2 ** 30);
    expect(parseMemorySize('2GiB')).toBe(2 * 2 ** 30);
    expect(parseMemorySize('512m')).toBe(512 * 2 ** 20);
    expect(parseMemorySize('1.5G')).toBe(1.5 * 2 ** 30);
    expect(parseMemorySize(String(2 ** 30))).toBe(2 ** 30);
  });

  it('refuses what is not a size, and limits too small for a server', () => {
    expect(() => parseMemorySize('lots')).toThrow(/looks like 512M/);
    expect(() => parseMemorySize('1T')).toThrow(/looks like 512M/);
    expect(() => parseMemorySize('16M')).toThrow(/below 64 MiB/);
  });
});

describe('cgroupParent', () => {
  it('finds cgroup v1 memory controller paths, also among joined controllers', () => {
    expect(cgroupParent('5:devices:/\n4:memory:/process_api/abc\n0::/\n')).toEqual({ dir: '/sys/fs/cgroup/memory/process_api/abc', version: 1 });
    expect(cgroupParent('3:cpu,memory:/x\n')).toEqual({ dir: '/sys/fs/cgroup/memory/x', version: 1 });
  });

  it('falls back to the unified hierarchy', () => {
    expect(cgroupParent('0::/user.slice/bench\n')).toEqual({ dir: '/sys/fs/cgroup/user.slice/bench', version: 2 });
    expect(cgroupParent('')).toBeUndefined();
  });
});

// Where the bench can make cgroups (root, as in CI), a child started through
// the cgroup sees its limit: Node sizes V8 from it.
function cgroupOrReason(): { cgroup: ReturnType<typeof createMemoryCgroup> } | { reason: string } {
  if (!existsSync('/proc/self/cgroup')) return { reason: 'no /proc/self/cgroup' };
  try {
    return { cgroup: createMemoryCgroup(2 ** 30, `llmchat-bench-test-${process.pid}`) };
  } catch (error) {
    return { reason: error instanceof Error ? error.message : String(error) };
  }
}

describe('createMemoryCgroup', () => {
  const made = cgroupOrReason();
  const run = (wrapped: [string, string[]]): { constrained: number; heapLimitMiB: number; cgroup: string } => {
    const [command, args] = wrapped;
    const result = spawnSync(command, args, { encoding: 'utf8' });
    expect(result.status, result.stderr).toBe(0);
    return JSON.parse(result.stdout) as { constrained: number; heapLimitMiB: number; cgroup: string };
  };
  const probe = [
    '-e',
    "const v8 = require('node:v8'); console.log(JSON.stringify({ constrained: process.constrainedMemory(), heapLimitMiB: v8.getHeapStatistics().heap_size_limit / 2 ** 20, cgroup: require('node:fs').readFileSync('/proc/self/cgroup', 'utf8') }))",
  ];

  it.skipIf('reason' in made)(`runs a child under the limit, which V8 sizes its heap from${'reason' in made ? ` (skipped: ${made.reason})` : ''}`, () => {
    if (!('cgroup' in made)) return;
    const { cgroup } = made;
    try {
      const inside = run(cgroup.wrap(process.execPath, probe));
      const outside = run([process.execPath, probe]);
      expect(inside.constrained).toBe(2 ** 30);
      expect(inside.cgroup).toContain(`llmchat-bench-test-${process.pid}`);
      expect(outside.cgroup).not.toContain(`llmchat-bench-test-${process.pid}`);
      // V8 takes about half of a 1 GiB limit for its heap (on a host of more
      // than 8 GiB, without a limit, it takes 4 GiB).
      expect(inside.heapLimitMiB).toBeLessThanOrEqual(1024);
    } finally {
      cgroup.remove();
    }
    expect(existsSync(cgroup.dir)).toBe(false);
  });
});
