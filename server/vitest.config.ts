import { defineConfig } from 'vitest/config';
import { FlakyReporter, testRetry } from '../tools/src/testing/retry.js';

export default defineConfig({
  test: {
    retry: testRetry(),
    reporters: ['default', new FlakyReporter()],
    include: ['src/**/*.test.ts'],
    environment: 'node',
    testTimeout: 30_000,
    hookTimeout: 60_000,
    // Each file gets its own databases; two workers keep the 2-core machine responsive.
    pool: 'forks',
    maxWorkers: 2,
  },
});
