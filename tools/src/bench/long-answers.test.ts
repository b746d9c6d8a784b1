import { existsSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { LevelPlan } from './long-answers.js';
import { runLevel } from './long-answers.js';
import type { ManagedProcess } from './processes.js';
import { servicesReachable, startMock } from './stack.js';
import { rampedArrivals } from './turn-schedule.js';

/**
 * Issue 13, the short version of `npm run bench -- --long` for CI: 2000
 * turns held open at once on one real server on PostgreSQL and Redis, each
 * a 20 s answer (10 chunks 2 s apart), arrivals ramped over 10 s. What is
 * checked is what was stored, never how fast: every turn `complete` in the
 * database with the mock's whole answer, and no request refused. Runs the
 * built server and mock (npm test builds first), on its own after the rest
 * of the tools suite (package.json's `test`): its load would starve the
 * topology tests' one-second Sentinel and Patroni timeouts running beside it.
 */
const ROOT = fileURLToPath(new URL('../../../', import.meta.url));
const built = existsSync(path.join(ROOT, 'server/dist/main.js')) && existsSync(path.join(ROOT, 'tools/dist/mock-upstream/cli.js'));
const services = await servicesReachable();
const available = services.postgres && services.redis && built;
const required = process.env.LLMCHAT_REQUIRE_SERVICES === '1';

const STREAMS = 2000;
const ANSWER = { chunks: 10, firstTokenMs: 2000, intervalMs: 2000 };
const RAMP_MS = 10_000;

describe('long answers at scale', () => {
  it.runIf(required)('has PostgreSQL, Redis and the built server and mock (LLMCHAT_REQUIRE_SERVICES=1)', () => {
    expect({ ...services, built }).toEqual({ postgres: true, redis: true, built: true });
  });
});

describe.skipIf(!available)('long answers at scale', () => {
  let mock: ManagedProcess | undefined;
  let mockUrl = '';

  beforeAll(async () => {
    const started = await startMock(ROOT, { chunks: 20, intervalMs: 5 });
    mock = started.mock;
    mockUrl = started.url;
  }, 30_000);
  afterAll(async () => {
    await mock?.stop(10_000);
  }, 15_000);

  it(`${STREAMS} concurrent 20 s answers on one server: every turn stored complete with the whole answer, no request refused`, async () => {
    const log: string[] = [];
    const plan: LevelPlan = {
      name: `${STREAMS} ramped`,
      arrival: 'ramped',
      description: 'CI short version',
      turns: rampedArrivals(STREAMS, RAMP_MS, ANSWER),
      drainMs: 60_000,
    };
    const report = await runLevel(
      {
        root: ROOT,
        mockUrl,
        embedded: false,
        workers: 1,
        // Sized here rather than left to the default (256 before issue 13's slots, 10000 after): the test is about carrying and storing 2000 streams.
        serverEnv: { UPSTREAM_CONNECTIONS: String(STREAMS + 500) },
        log: (line) => log.push(line),
      },
      plan,
    );
    const context = [...log, ...report.client.examples, ...report.notes].join('\n');

    expect(report.backends, context).toBe('postgres+redis');
    expect(report.client.httpErrors, context).toEqual({});
    expect(report.stored, context).toEqual({
      questions: STREAMS,
      byStatus: { complete: STREAMS },
      completeWithFullText: STREAMS,
      duplicates: 0,
      wrongTextExamples: [],
    });
    expect(report.client.byReason, context).toEqual({});
    // The turns were open at the same time: the level measured what it claims to.
    expect(report.resources.peakInFlight, context).toBe(STREAMS);
    expect(report.server.exit, context).toBe('code 0');
  }, 180_000);
});
