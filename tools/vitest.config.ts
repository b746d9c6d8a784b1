import { defineConfig } from 'vitest/config';
import { FlakyReporter, testRetry } from './src/testing/retry.js';

export default defineConfig({
  test: {
    retry: testRetry(),
    reporters: ['default', new FlakyReporter()],
    include: ['src/**/*.test.ts'],
    testTimeout: 15_000,
  },
});
