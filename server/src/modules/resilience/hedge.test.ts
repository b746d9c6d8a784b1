import pino from 'pino';
import { describe, expect, it } from 'vitest';
import { MemoryState } from '../../shared-state/memory-state.js';
import type { ResolvedEndpoint } from '../providers/types.js';
import { UpstreamError } from '../providers/upstream-error.js';
import { runAttempts, type AttemptHost, type ResilienceDeps } from './attempt-loop.js';
import { createBreakerService } from './breakers.js';
import type { FailedAttempt } from './failure-log.js';
import type { FirstTokenStats } from './first-token-stats.js';
import type { HedgeSettings } from './hedge.js';

/**
 * The hedged race inside the attempt loop, with calls that run on real
 * (short) timers and honour their lane: what is called, who serves, what is
 * recorded. Ordering only (a call that never answers by itself, one that
 * answers in a millisecond), never durations.
 */

const logger = pino({ level: 'silent' });

/** One call: its first output after `outputAfterMs` (never without), then success or `fail`; or `fail` at once. */
interface Step {
  outputAfterMs?: number;
  fail?: UpstreamError;
}

const cut = () => new UpstreamError('network', 'socket closed', { providerCode: 'UND_ERR_SOCKET' });
const aborted = () => new UpstreamError('aborted', 'upstream request aborted', { retryable: false });

function endpoint(position: number): ResolvedEndpoint {
  return { id: `00000000-0000-4000-8000-00000000010${position}`, agentId: 'a', position, provider: 'openai', url: `http://e${position}`, apiKey: 'k', appId: undefined, model: `model-${position}`, timeouts: {} };
}

function raceSetup(steps: Record<number, Step[]>, firstTokens?: FirstTokenStats) {
  const failed: FailedAttempt[] = [];
  const calls: number[] = [];
  let output = false;
  let resets = 0;
  const breakers = createBreakerService({ state: new MemoryState(), settings: { threshold: 1, windowMs: 60_000, cooldownMs: 60_000 }, logger, cacheMs: 0 });
  const deps: ResilienceDeps = {
    breakers,
    failures: { record: (a) => failed.push(a), countsSince: () => Promise.resolve([]), deleteBefore: () => Promise.resolve(0), settled: () => Promise.resolve() },
    defaultTimeouts: { connectMs: 1000, firstTokenMs: 1000, idleMs: 1000, totalMs: 10_000 },
    retry: { maxAttempts: 1, baseDelayMs: 0, maxDelayMs: 0, retryAfterMaxMs: 0 },
    random: () => 0.5,
    sleep: () => Promise.resolve(),
    now: Date.now,
    logger,
    firstTokens,
  };
  const abort = new AbortController();
  const host: AttemptHost = {
    turnId: 't',
    agentId: 'a',
    log: logger,
    signal: abort.signal,
    get outputSent() {
      return output;
    },
    attemptUsage: undefined,
    beginAttempt() {
      if (output) resets++;
      output = false;
    },
    call(ep, onFirstOutput, lane) {
      calls.push(ep.position);
      const step = steps[ep.position]?.shift();
      if (step === undefined) return Promise.reject(new Error(`no step left for endpoint ${ep.position}`));
      const signal = lane?.signal ?? abort.signal;
      return new Promise<void>((resolve, reject) => {
        const { outputAfterMs, fail } = step;
        const timer =
          outputAfterMs === undefined
            ? undefined
            : setTimeout(() => {
                if (lane && !lane.claim()) return reject(aborted());
                output = true;
                onFirstOutput();
                if (fail) reject(fail);
                else resolve();
              }, outputAfterMs);
        signal.addEventListener('abort', () => (clearTimeout(timer), reject(aborted())), { once: true });
        if (timer === undefined && fail) reject(fail);
      });
    },
  };
  return { deps, host, failed, calls, abort, breakers, resets: () => resets };
}

const hedge = (afterMs: HedgeSettings['afterMs']): HedgeSettings => ({ afterMs });

describe('hedged first token in the attempt loop', () => {
  it('the partner serves when the primary has no token; the primary is cancelled, recorded as hedge_lost, and its breaker stays closed', async () => {
    const s = raceSetup({ 0: [{}], 1: [{ outputAfterMs: 1 }] });
    expect(await runAttempts([endpoint(0), endpoint(1)], s.host, s.deps, hedge(5))).toEqual({ status: 'complete' });
    expect(s.calls).toEqual([0, 1]);
    expect(s.failed.map((f) => [f.position, f.kind, f.errorCode])).toEqual([[0, 'hedge_lost', 'HEDGE_LOST']]);
    // Threshold 1: a single counted failure would have opened it.
    expect((await s.breakers.snapshots([endpoint(0).id]))[0]?.state).toBe('closed');
  });

  it('a partner that serves and then breaks off: the loop goes on after it, and the client is told to drop its text', async () => {
    const s = raceSetup({ 0: [{}], 1: [{ outputAfterMs: 1, fail: cut() }], 2: [{ outputAfterMs: 1 }] });
    expect(await runAttempts([endpoint(0), endpoint(1), endpoint(2)], s.host, s.deps, hedge(5))).toEqual({ status: 'complete' });
    expect(s.calls).toEqual([0, 1, 2]);
    expect(s.failed.map((f) => [f.position, f.kind, f.midAnswer])).toEqual([
      [0, 'hedge_lost', false],
      [1, 'network', true],
    ]);
    expect(s.resets()).toBe(1);
  });

  it('a partner that fails before any token leaves the primary to answer, and is not called again', async () => {
    const s = raceSetup({ 0: [{ outputAfterMs: 30, fail: cut() }], 1: [{ fail: cut() }], 2: [{ outputAfterMs: 1 }] });
    expect(await runAttempts([endpoint(0), endpoint(1), endpoint(2)], s.host, s.deps, hedge(5))).toEqual({ status: 'complete' });
    // 0 raced 1 (which failed), then broke off mid-answer: 1 is skipped, 2 serves.
    expect(s.calls).toEqual([0, 1, 2]);
    expect(s.failed.map((f) => [f.position, f.kind, f.midAnswer])).toEqual([
      [1, 'network', false],
      [0, 'network', true],
    ]);
  });

  it('a stop during the race ends the turn as stopped, with nothing recorded as failed or lost', async () => {
    const s = raceSetup({ 0: [{}], 1: [{}] });
    const outcome = runAttempts([endpoint(0), endpoint(1)], s.host, s.deps, hedge(1));
    setTimeout(() => s.abort.abort(), 20);
    expect(await outcome).toEqual({ status: 'stopped' });
    expect(s.calls).toEqual([0, 1]);
    expect(s.failed).toEqual([]);
  });

  it("'p95' waits for observations: no estimate, no partner; the primary's first token is observed", async () => {
    const observed: [string, boolean | undefined][] = [];
    const stats = (p95: number | undefined): FirstTokenStats => ({ observe: (id, _ms, censored) => observed.push([id, censored]), p95: () => Promise.resolve(p95) });
    const cold = raceSetup({ 0: [{ outputAfterMs: 20 }] }, stats(undefined));
    expect(await runAttempts([endpoint(0), endpoint(1)], cold.host, cold.deps, hedge('p95'))).toEqual({ status: 'complete' });
    expect(cold.calls).toEqual([0]);
    expect(observed).toEqual([[endpoint(0).id, false]]);
    observed.length = 0;
    const warm = raceSetup({ 0: [{}], 1: [{ outputAfterMs: 1 }] }, stats(5));
    expect(await runAttempts([endpoint(0), endpoint(1)], warm.host, warm.deps, hedge('p95'))).toEqual({ status: 'complete' });
    expect(warm.calls).toEqual([0, 1]);
    // The winner's time, and the loser's as a lower bound.
    expect(observed).toEqual([
      [endpoint(1).id, false],
      [endpoint(0).id, true],
    ]);
  });

  it('without a hedge setting there is no race and no lane', async () => {
    const s = raceSetup({ 0: [{ outputAfterMs: 20 }] });
    const lanes: unknown[] = [];
    const call = s.host.call.bind(s.host);
    s.host.call = (ep, onFirstOutput, lane) => (lanes.push(lane), call(ep, onFirstOutput, lane));
    expect(await runAttempts([endpoint(0), endpoint(1)], s.host, s.deps)).toEqual({ status: 'complete' });
    expect(s.calls).toEqual([0]);
    expect(lanes).toEqual([undefined]);
  });
});
