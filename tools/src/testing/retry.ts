import type { Reporter, TestCase } from 'vitest/node';

/**
 * CI retries a failed test once (LLMCHAT_TEST_RETRY, set by .ci/run): the
 * suites start real processes, databases and clusters on a noisy 2-core
 * machine, and one slow moment out of some two thousand tests must not
 * refuse everything else. A retry is never silent: every test that passed
 * only on its retry is listed at the end of the run as flaky, and a listed
 * test is a defect to fix (NOTES.md). Locally the default is no retry.
 */
export function testRetry(): number {
  const value = Number(process.env.LLMCHAT_TEST_RETRY ?? 0);
  return Number.isInteger(value) && value > 0 ? value : 0;
}

/** Lists the tests that failed and then passed on a retry, after Vitest's own summary. */
export class FlakyReporter implements Reporter {
  private readonly flaky: string[] = [];

  onTestCaseResult(testCase: TestCase): void {
    const diagnostic = testCase.diagnostic();
    if (diagnostic?.flaky === true) {
      this.flaky.push(`${testCase.module.moduleId} > ${testCase.fullName} (passed on retry ${diagnostic.retryCount})`);
    }
  }

  onTestRunEnd(): void {
    if (this.flaky.length === 0) return;
    process.stderr.write(`\nFLAKY: ${this.flaky.length} test(s) failed and then passed on a retry; each is a defect to fix:\n`);
    for (const line of this.flaky) process.stderr.write(`  FLAKY ${line}\n`);
  }
}
