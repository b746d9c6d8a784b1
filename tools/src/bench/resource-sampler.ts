/**
 * Watches the server while a level runs: its resident memory and open
 * descriptors from /proc once a second (summed over its worker processes),
 * and what its `/health/detailed` says of its heap and event loop every few
 * seconds. Peaks are what the level report needs; every sample is kept for
 * the results file (a level of a few minutes gives a few hundred).
 */

import { performance } from 'node:perf_hooks';
import { setTimeout as sleep } from 'node:timers/promises';
import { request } from 'undici';
import { openFiles, rssMiB, sumOverChildren } from './processes.js';

export interface ResourceSample {
  /** ms after the sampler started */
  atMs: number;
  rssMiB: number | undefined;
  openFiles: number | undefined;
  /** The load generator's turns in flight at that moment. */
  inFlight: number;
}

export interface HealthSample {
  atMs: number;
  heapUsedPercent: number | undefined;
  /** V8 heap in use, V8 heap in all, and memory outside the heap, from servers that report them. */
  heapUsedMiB: number | undefined;
  heapTotalMiB: number | undefined;
  externalMiB: number | undefined;
  eventLoopDelayMs: number | undefined;
  runningGenerations: number | undefined;
  shedding: string | undefined;
  /** Upstream calls holding a slot and waiting for one, summed over origins (servers that report `load.upstreamSlots`). */
  upstreamSlotsUsed: number | undefined;
  upstreamSlotsWaiting: number | undefined;
}

export interface ResourcePeaks {
  samples: ResourceSample[];
  health: HealthSample[];
  rssPeakMiB: number | undefined;
  openFilesPeak: number | undefined;
  inFlightPeak: number;
  heapUsedPercentPeak: number | undefined;
  heapTotalPeakMiB: number | undefined;
  externalPeakMiB: number | undefined;
  eventLoopDelayPeakMs: number | undefined;
  runningGenerationsPeak: number | undefined;
  upstreamSlotsUsedPeak: number | undefined;
  upstreamSlotsWaitingPeak: number | undefined;
  /** Health polls that failed or timed out (a server too busy to answer is worth knowing). */
  healthFailures: number;
}

export interface ResourceSamplerOptions {
  pid: number | undefined;
  /** `http://127.0.0.1:PORT`; without it only /proc is read. */
  base: string | undefined;
  inFlight: () => number;
  intervalMs?: number;
  healthEveryMs?: number;
  /** Stop by itself after this long whatever happens (a bound on the loop). */
  maxMs: number;
}

const HEALTH_TIMEOUT_MS = 5_000;

function numberAt(value: unknown, key: string): number | undefined {
  if (typeof value !== 'object' || value === null) return undefined;
  const field = (value as Record<string, unknown>)[key];
  return typeof field === 'number' && Number.isFinite(field) ? field : undefined;
}

function mib(bytes: number | undefined): number | undefined {
  return bytes === undefined ? undefined : Math.round((bytes / 1048576) * 10) / 10;
}

/** Sum of one field over the origins of `load.upstreamSlots`; undefined when the server does not report them. */
function slotSum(load: unknown, key: 'used' | 'waiting'): number | undefined {
  const slots = typeof load === 'object' && load !== null ? (load as Record<string, unknown>).upstreamSlots : undefined;
  if (!Array.isArray(slots)) return undefined;
  return slots.reduce((sum: number, origin: unknown) => sum + (numberAt(origin, key) ?? 0), 0);
}

async function pollHealth(base: string, atMs: number): Promise<HealthSample | undefined> {
  try {
    const response = await request(`${base}/health/detailed`, { headersTimeout: HEALTH_TIMEOUT_MS, bodyTimeout: HEALTH_TIMEOUT_MS });
    const text = await response.body.text();
    if (response.statusCode !== 200 && response.statusCode !== 503) return undefined;
    const body = JSON.parse(text) as unknown;
    const load = typeof body === 'object' && body !== null ? (body as Record<string, unknown>).load : undefined;
    const shedding = typeof load === 'object' && load !== null ? (load as Record<string, unknown>).shedding : undefined;
    return {
      atMs,
      heapUsedPercent: numberAt(load, 'heapUsedPercent'),
      heapUsedMiB: mib(numberAt(load, 'heapUsedBytes')),
      heapTotalMiB: mib(numberAt(load, 'heapTotalBytes')),
      externalMiB: mib(numberAt(load, 'externalBytes')),
      eventLoopDelayMs: numberAt(load, 'eventLoopDelayMs'),
      runningGenerations: numberAt(load, 'runningGenerations'),
      shedding: typeof shedding === 'string' ? shedding : undefined,
      upstreamSlotsUsed: slotSum(load, 'used'),
      upstreamSlotsWaiting: slotSum(load, 'waiting'),
    };
  } catch {
    return undefined;
  }
}

function peak(values: (number | undefined)[]): number | undefined {
  let best: number | undefined;
  for (const v of values) if (v !== undefined && (best === undefined || v > best)) best = v;
  return best;
}

/** Starts sampling at once; `stop()` ends it and resolves with the peaks. */
export function startResourceSampler(options: ResourceSamplerOptions): { stop(): Promise<ResourcePeaks> } {
  const intervalMs = options.intervalMs ?? 1_000;
  const healthEveryMs = options.healthEveryMs ?? 3_000;
  const samples: ResourceSample[] = [];
  const health: HealthSample[] = [];
  let healthFailures = 0;
  let stopped = false;
  const origin = performance.now();
  const wake = new AbortController();

  const procLoop = (async () => {
    while (!stopped && performance.now() - origin < options.maxMs) {
      samples.push({
        atMs: performance.now() - origin,
        rssMiB: sumOverChildren(options.pid, rssMiB),
        openFiles: sumOverChildren(options.pid, openFiles),
        inFlight: options.inFlight(),
      });
      await sleep(intervalMs, undefined, { signal: wake.signal }).catch(() => undefined);
    }
  })();
  const healthLoop = (async () => {
    const base = options.base;
    if (base === undefined) return;
    while (!stopped && performance.now() - origin < options.maxMs) {
      // One poll at a time: a slow answer delays the next poll rather than piling requests on a busy server.
      const sample = await pollHealth(base, performance.now() - origin);
      if (sample === undefined) healthFailures++;
      else health.push(sample);
      await sleep(healthEveryMs, undefined, { signal: wake.signal }).catch(() => undefined);
    }
  })();

  return {
    async stop() {
      stopped = true;
      wake.abort();
      await Promise.all([procLoop, healthLoop]);
      return {
        samples,
        health,
        rssPeakMiB: peak(samples.map((s) => s.rssMiB)),
        openFilesPeak: peak(samples.map((s) => s.openFiles)),
        inFlightPeak: peak(samples.map((s) => s.inFlight)) ?? 0,
        heapUsedPercentPeak: peak(health.map((h) => h.heapUsedPercent)),
        heapTotalPeakMiB: peak(health.map((h) => h.heapTotalMiB)),
        externalPeakMiB: peak(health.map((h) => h.externalMiB)),
        eventLoopDelayPeakMs: peak(health.map((h) => h.eventLoopDelayMs)),
        runningGenerationsPeak: peak(health.map((h) => h.runningGenerations)),
        upstreamSlotsUsedPeak: peak(health.map((h) => h.upstreamSlotsUsed)),
        upstreamSlotsWaitingPeak: peak(health.map((h) => h.upstreamSlotsWaiting)),
        healthFailures,
      };
    },
  };
}
