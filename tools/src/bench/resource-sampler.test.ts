import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startResourceSampler } from './resource-sampler.js';

describe('startResourceSampler', () => {
  let server: Server;
  let base = '';
  let polls = 0;
  beforeAll(async () => {
    server = createServer((_req, res) => {
      polls++;
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(
        JSON.stringify({
          load: {
            runningGenerations: 10 * polls,
            eventLoopDelayMs: 12.5,
            heapUsedPercent: 3.4,
            heapUsedBytes: 50 * 1048576,
            heapTotalBytes: 80 * 1048576,
            externalBytes: 12.25 * 1048576,
            shedding: null,
            upstreamSlots: [
              { origin: 'http://a', capacity: 100, used: 40, waiting: 2 },
              { origin: 'http://b', capacity: 100, used: 5, waiting: 1 },
            ],
          },
        }),
      );
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });
  afterAll(async () => {
    await new Promise<void>((resolve) => server.close(() => resolve()));
  });

  it('reads RSS and descriptors from /proc and the heap, generations and upstream slots from /health/detailed', async () => {
    const sampler = startResourceSampler({ pid: process.pid, base, inFlight: () => 7, intervalMs: 50, healthEveryMs: 50, maxMs: 10_000 });
    await new Promise((resolve) => setTimeout(resolve, 300));
    const peaks = await sampler.stop();
    expect(peaks.samples.length).toBeGreaterThan(0);
    expect(peaks.rssPeakMiB).toBeGreaterThan(0);
    expect(peaks.openFilesPeak).toBeGreaterThan(0);
    expect(peaks.inFlightPeak).toBe(7);
    expect(peaks.heapUsedPercentPeak).toBe(3.4);
    expect(peaks.health[0]?.heapUsedMiB).toBe(50);
    expect(peaks.heapTotalPeakMiB).toBe(80);
    expect(peaks.externalPeakMiB).toBe(12.3);
    expect(peaks.eventLoopDelayPeakMs).toBe(12.5);
    expect(peaks.runningGenerationsPeak).toBe(10 * peaks.health.length);
    // Summed over origins.
    expect(peaks.upstreamSlotsUsedPeak).toBe(45);
    expect(peaks.upstreamSlotsWaitingPeak).toBe(3);
    expect(peaks.healthFailures).toBe(0);
  });

  it('a server that does not answer counts as failed polls, not as figures', async () => {
    const sampler = startResourceSampler({ pid: process.pid, base: 'http://127.0.0.1:1', inFlight: () => 0, intervalMs: 50, healthEveryMs: 50, maxMs: 10_000 });
    await new Promise((resolve) => setTimeout(resolve, 200));
    const peaks = await sampler.stop();
    expect(peaks.healthFailures).toBeGreaterThan(0);
    expect(peaks.heapUsedPercentPeak).toBeUndefined();
    expect(peaks.heapTotalPeakMiB).toBeUndefined();
    expect(peaks.upstreamSlotsUsedPeak).toBeUndefined();
  });
});
