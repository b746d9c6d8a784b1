import { defineConfig } from 'vitest/config';
import { FlakyReporter, testRetry } from '../tools/src/testing/retry.js';

/**
 * Unit tests (src/**) run in Node. The browser journeys (e2e/**) start the
 * built server as a process and drive Debian's Chromium through
 * playwright-core; they run one file at a time so the 2-core machine is not
 * oversubscribed, and wait for conditions, never for fixed durations.
 */
export default defineConfig({
  test: {
    retry: testRetry(),
    reporters: ['default', new FlakyReporter()],
    include: ['src/**/*.test.ts', 'e2e/**/*.test.ts'],
    environment: 'node',
    testTimeout: 60_000,
    hookTimeout: 120_000,
    fileParallelism: false,
    pool: 'forks',
    // expect.poll waits for a condition; since Vitest 5 a late answer fails the poll instead of passing
    // after the deadline, so on a loaded machine the bound must be generous (it is a wait, not a timing).
    expect: { poll: { timeout: 15_000 } },
  },
});
