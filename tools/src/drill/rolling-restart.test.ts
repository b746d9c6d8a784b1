import { existsSync } from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startLocalCluster, type LocalCluster } from '../local-cluster/cluster.js';
import { SERVER_MAIN } from '../local-cluster/instance.js';
import { nginxPath } from '../local-cluster/nginx.js';
import { postgresBinDir, redisServerPath } from '../local-cluster/services.js';
import { startLoad } from './load.js';
import { storedTurns, streamingLeft, verify } from './verify.js';

/**
 * Issue 4, point 18c: three real server processes behind Debian's nginx
 * (the shipped config), under chat load; each in turn gets SIGTERM, drains
 * for a short deadline, hands the rest over, exits and is started again.
 * Runs the built server (npm test builds first).
 */
const available = nginxPath() !== undefined && postgresBinDir() !== undefined && redisServerPath() !== undefined && existsSync(SERVER_MAIN);
const required = process.env.LLMCHAT_REQUIRE_SERVICES === '1';
/** Answers of 40 chunks 50 ms apart (2 s): longer than the drain deadline, so some are handed over. */
const CHUNKS = 40;

async function until(what: string, condition: () => boolean | Promise<boolean>, timeoutMs = 60_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await condition())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(100);
  }
}

describe('rolling restart behind nginx', () => {
  it.runIf(required)('has nginx, PostgreSQL, Redis and the built server (LLMCHAT_REQUIRE_SERVICES=1)', () => {
    expect({ nginx: nginxPath() !== undefined, postgres: postgresBinDir() !== undefined, redis: redisServerPath() !== undefined, server: existsSync(SERVER_MAIN) }).toEqual({
      nginx: true,
      postgres: true,
      redis: true,
      server: true,
    });
  });
});

describe.skipIf(!available)('rolling restart behind nginx', () => {
  let cluster: LocalCluster;

  beforeAll(async () => {
    cluster = await startLocalCluster({
      instances: 3,
      chunks: CHUNKS,
      intervalMs: 50,
      env: { DRAIN_TIMEOUT_MS: '500', INSTANCE_HEARTBEAT_TTL_SECONDS: '2', TAKEOVER_SCAN_INTERVAL_MS: '300' },
    });
  }, 120_000);
  afterAll(async () => {
    await cluster?.dispose();
  }, 60_000);

  it('SIGTERM to each instance in turn under load: no 5xx, no error, no lost answer or event; handed-over answers end complete, stored once', async () => {
    const tag = `rolling-${Date.now().toString(36)}`;
    const load = startLoad({ origin: cluster.nginx.url, token: cluster.token, agentId: 'steady', concurrency: 12, maxTurns: 1_000, maxMs: 120_000, turnDeadlineMs: 60_000, tag });
    await until('the first answers', () => load.traces.length >= 12);
    for (const instance of cluster.instances) {
      const exit = await instance.terminate();
      expect(exit, instance.tail().join('\n')).toEqual({ code: 0, signal: null });
      await instance.start();
    }
    const afterRestart = load.traces.length;
    await until('answers after the restart', () => load.traces.length >= afterRestart + 12);
    const traces = await load.stop();

    // Each client has its `end`; the rows are final once the last group-committed writes land.
    await until('no answer left streaming', async () => (await streamingLeft(cluster.postgres.url, tag)) === 0);

    const verdict = verify(traces, await storedTurns(cluster.postgres.url, tag), CHUNKS);
    expect(verdict.lostDetails).toEqual([]);
    expect({ errors: verdict.errors, refusals: verdict.refusals, lost: verdict.lost, lostEvents: verdict.lostEvents, duplicateEvents: verdict.duplicateEvents }).toEqual({
      errors: 0,
      refusals: 0,
      lost: 0,
      lostEvents: 0,
      duplicateEvents: 0,
    });
    expect(verdict.complete).toBe(traces.length);
    // The drain deadline (0.5 s) is shorter than an answer (2 s): some answers moved to another instance mid-way.
    expect(traces.filter((t) => t.resets.some((r) => r.reason === 'takeover')).length).toBeGreaterThan(0);
    // nginx never passed a 5xx on, and it did move requests away from instances that were going or gone.
    const log = cluster.nginx.accessLog();
    expect(log.filter((e) => e.status >= 500)).toEqual([]);
    expect(log.filter((e) => e.upstreamStatuses.length > 1).length).toBeGreaterThan(0);
  }, 240_000);
});
