import pino from 'pino';
import { describe, expect, it } from 'vitest';
import { MemoryState } from '../../shared-state/memory-state.js';
import type { ResolvedEndpoint } from '../providers/types.js';
import { UpstreamError } from '../providers/upstream-error.js';
import { upstreamBusyError } from '../providers/upstream-slots.js';
import { runAttempts, type AttemptHost, type ResilienceDeps } from './attempt-loop.js';
import { createBreakerService } from './breakers.js';
import type { FailedAttempt, FailureLog } from './failure-log.js';

const logger = pino({ level: 'silent' });

function endpoint(position: number, model = `model-${position}`): ResolvedEndpoint {
  return { id: `00000000-0000-4000-8000-00000000000${position}`, agentId: 'a', position, provider: 'openai', url: `http://e${position}`, apiKey: 'k', appId: undefined, model, timeouts: {} };
}

/** One scripted call: fail before output, fail after output, or answer. */
type Step = { fail: UpstreamError; afterOutput?: boolean } | 'ok';

function setup(script: Step[], options: { maxAttempts?: number; retryAfterMaxMs?: number; threshold?: number } = {}) {
  let clock = 1_000_000;
  const sleeps: number[] = [];
  const failed: FailedAttempt[] = [];
  const calls: number[] = [];
  let resets = 0;
  let output = false;
  const state = new MemoryState();
  const breakers = createBreakerService({ state, settings: { threshold: options.threshold ?? 100, windowMs: 60_000, cooldownMs: 10_000 }, logger, now: () => clock, cacheMs: 0 });
  const failures: FailureLog = { record: (a) => failed.push(a), countsSince: () => Promise.resolve([]), deleteBefore: () => Promise.resolve(0), settled: () => Promise.resolve() };
  const deps: ResilienceDeps = {
    breakers,
    failures,
    defaultTimeouts: { connectMs: 1000, firstTokenMs: 1000, idleMs: 1000, totalMs: 10_000 },
    retry: { maxAttempts: options.maxAttempts ?? 3, baseDelayMs: 100, maxDelayMs: 1_000, retryAfterMaxMs: options.retryAfterMaxMs ?? 5_000 },
    random: () => 0.5,
    sleep: (ms) => {
      sleeps.push(ms);
      clock += ms;
      return Promise.resolve();
    },
    now: () => clock,
    logger,
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
    call(ep, onFirstOutput) {
      calls.push(ep.position);
      const step = script.shift();
      if (step === undefined) throw new Error('the script ran out');
      if (step === 'ok') {
        output = true;
        onFirstOutput();
        return Promise.resolve();
      }
      if (step.afterOutput) {
        output = true;
        onFirstOutput();
      }
      return Promise.reject(step.fail);
    },
  };
  return { deps, host, sleeps, failed, calls, resets: () => resets, state, breakers, advance: (ms: number) => (clock += ms), abort };
}

const http = (status: number, extra: { code?: string; retryAfter?: number } = {}) => new UpstreamError('http', `status ${status}`, { status, providerCode: extra.code, retryAfter: extra.retryAfter });
const cut = () => new UpstreamError('network', 'socket closed', { providerCode: 'UND_ERR_SOCKET' });

describe('the attempt loop', () => {
  it('retries a transient failure on the same endpoint with full-jitter backoff, then answers', async () => {
    const s = setup([{ fail: http(503) }, { fail: http(502) }, 'ok']);
    const outcome = await runAttempts([endpoint(0)], s.host, s.deps);
    expect(outcome).toEqual({ status: 'complete' });
    expect(s.calls).toEqual([0, 0, 0]);
    // random() = 0.5: half of base × 2^(retry-1).
    expect(s.sleeps).toEqual([50, 100]);
    expect(s.failed.map((f) => f.errorCode)).toEqual(['UPSTREAM_ERROR', 'UPSTREAM_ERROR']);
  });

  it('waits at least the Retry-After the provider asked for', async () => {
    const s = setup([{ fail: http(429, { retryAfter: 2 }) }, 'ok']);
    expect(await runAttempts([endpoint(0)], s.host, s.deps)).toEqual({ status: 'complete' });
    expect(s.sleeps).toEqual([2_000]);
  });

  it('does not wait for a Retry-After above the cap: the next endpoint takes over at once', async () => {
    const s = setup([{ fail: http(429, { retryAfter: 60 }) }, 'ok'], { retryAfterMaxMs: 5_000 });
    expect(await runAttempts([endpoint(0), endpoint(1)], s.host, s.deps)).toEqual({ status: 'complete' });
    expect(s.calls).toEqual([0, 1]);
    expect(s.sleeps).toEqual([]);
  });

  it('moves on at once from an endpoint that sent no headers in time when a fallback exists; retries it when it is the only one', async () => {
    const silence = () => new UpstreamError('timeout', 'upstream headers deadline of 1000 ms passed', { phase: 'headers' });
    const withFallback = setup([{ fail: silence() }, 'ok']);
    expect(await runAttempts([endpoint(0), endpoint(1)], withFallback.host, withFallback.deps)).toEqual({ status: 'complete' });
    expect(withFallback.calls).toEqual([0, 1]);
    expect(withFallback.sleeps).toEqual([]);
    // A slow first token is not silence: the same endpoint gets its retry.
    const slow = setup([{ fail: new UpstreamError('timeout', 'upstream first token deadline of 1000 ms passed', { phase: 'first token' }) }, 'ok']);
    expect(await runAttempts([endpoint(0), endpoint(1)], slow.host, slow.deps)).toEqual({ status: 'complete' });
    expect(slow.calls).toEqual([0, 0]);
    const alone = setup([{ fail: silence() }, 'ok']);
    expect(await runAttempts([endpoint(0)], alone.host, alone.deps)).toEqual({ status: 'complete' });
    expect(alone.calls).toEqual([0, 0]);
  });

  it('stops after maxAttempts on one endpoint and reports the last failure', async () => {
    const s = setup([{ fail: http(500) }, { fail: http(500) }], { maxAttempts: 2 });
    const outcome = await runAttempts([endpoint(0)], s.host, s.deps);
    expect(outcome).toMatchObject({ status: 'error', error: { code: 'UPSTREAM_ERROR' } });
    expect(s.calls).toEqual([0, 0]);
  });

  it('never retries a request the provider refused; moves only to an endpoint with another model', async () => {
    const s = setup([{ fail: http(400, { code: 'context_length_exceeded' }) }, 'ok']);
    const outcome = await runAttempts([endpoint(0, 'small'), endpoint(1, 'small'), endpoint(2, 'large')], s.host, s.deps);
    expect(outcome).toEqual({ status: 'complete' });
    expect(s.calls).toEqual([0, 2]);
    expect(s.sleeps).toEqual([]);
  });

  it('passes a content-policy refusal to the caller by default, even with another model left; an agent may opt in to trying it', async () => {
    const refused = () => setup([{ fail: http(400, { code: 'content_policy_violation' }) }, 'ok']);
    const byDefault = refused();
    expect(await runAttempts([endpoint(0, 'strict'), endpoint(1, 'lenient')], byDefault.host, byDefault.deps)).toMatchObject({ status: 'error', error: { code: 'UPSTREAM_CONTENT_POLICY' } });
    expect(byDefault.calls).toEqual([0]);
    const optedIn = refused();
    expect(await runAttempts([endpoint(0, 'strict'), endpoint(1, 'lenient')], optedIn.host, optedIn.deps, undefined, 'other-model')).toEqual({ status: 'complete' });
    expect(optedIn.calls).toEqual([0, 1]);
    // Either way the refusal is recorded as a failed attempt.
    expect([byDefault.failed[0]?.errorCode, optedIn.failed[0]?.errorCode]).toEqual(['UPSTREAM_CONTENT_POLICY', 'UPSTREAM_CONTENT_POLICY']);
  });

  it('ends with the provider reason when no other model is left', async () => {
    const s = setup([{ fail: http(400, { code: 'content_policy_violation' }) }]);
    const outcome = await runAttempts([endpoint(0, 'm'), endpoint(1, 'm')], s.host, s.deps);
    expect(outcome).toMatchObject({ status: 'error', error: { code: 'UPSTREAM_CONTENT_POLICY' } });
    expect(s.calls).toEqual([0]);
  });

  it('an authentication failure is not retried on its endpoint but another endpoint (another key) may answer', async () => {
    const s = setup([{ fail: http(401, { code: 'invalid_api_key' }) }, 'ok']);
    expect(await runAttempts([endpoint(0, 'm'), endpoint(1, 'm')], s.host, s.deps)).toEqual({ status: 'complete' });
    expect(s.calls).toEqual([0, 1]);
  });

  it('a failure after output moves to the next endpoint and resets the partial answer', async () => {
    const s = setup([{ fail: cut(), afterOutput: true }, 'ok']);
    expect(await runAttempts([endpoint(0), endpoint(1)], s.host, s.deps)).toEqual({ status: 'complete' });
    expect(s.calls).toEqual([0, 1]);
    expect(s.resets()).toBe(1);
    expect(s.failed[0]).toMatchObject({ midAnswer: true, errorCode: 'UPSTREAM_INTERRUPTED' });
  });

  it('a failure after output on the only endpoint retries it, with a reset', async () => {
    const s = setup([{ fail: cut(), afterOutput: true }, 'ok']);
    expect(await runAttempts([endpoint(0)], s.host, s.deps)).toEqual({ status: 'complete' });
    expect(s.calls).toEqual([0, 0]);
    expect(s.resets()).toBe(1);
  });

  it('a failure after output with nothing left to try ends as an interrupted answer, never complete', async () => {
    const s = setup([{ fail: cut(), afterOutput: true }], { maxAttempts: 1 });
    expect(await runAttempts([endpoint(0)], s.host, s.deps)).toMatchObject({ status: 'error', error: { code: 'UPSTREAM_INTERRUPTED' } });
    expect(s.resets()).toBe(0);
  });

  it('skips an endpoint whose breaker is open and fails fast when every breaker is open', async () => {
    const s = setup([{ fail: http(503) }, { fail: http(503) }, 'ok'], { maxAttempts: 1, threshold: 1 });
    // Both endpoints fail once: both breakers open (threshold 1).
    expect(await runAttempts([endpoint(0), endpoint(1)], s.host, s.deps)).toMatchObject({ status: 'error' });
    expect(s.calls).toEqual([0, 1]);
    const outcome = await runAttempts([endpoint(0), endpoint(1)], s.host, s.deps);
    expect(outcome).toMatchObject({ status: 'error', error: { code: 'UPSTREAM_CIRCUIT_OPEN' } });
    expect(s.calls).toEqual([0, 1]);
    // After the cool-down one probe goes to the primary; it answers and closes the breaker.
    s.advance(10_000);
    expect(await runAttempts([endpoint(0), endpoint(1)], s.host, s.deps)).toEqual({ status: 'complete' });
    expect(s.calls).toEqual([0, 1, 0]);
    expect((await s.breakers.snapshots([endpoint(0).id, endpoint(1).id])).map((b) => b.state)).toEqual(['closed', 'open']);
  });

  it('a stopped turn is not retried', async () => {
    const s = setup([{ fail: new UpstreamError('aborted', 'aborted', { retryable: false }) }]);
    s.abort.abort();
    expect(await runAttempts([endpoint(0), endpoint(1)], s.host, s.deps)).toEqual({ status: 'stopped' });
    expect(s.calls).toEqual([]);
  });

  it('a call that found every slot to its upstream taken is no upstream failure: no failed attempt, no breaker count; the next endpoint answers', async () => {
    const s = setup([{ fail: upstreamBusyError('http://e0', 5_000) }, 'ok'], { threshold: 1 });
    expect(await runAttempts([endpoint(0), endpoint(1)], s.host, s.deps)).toEqual({ status: 'complete' });
    expect(s.calls).toEqual([0, 1]);
    expect(s.sleeps).toEqual([]);
    expect(s.failed).toEqual([]);
    expect((await s.breakers.snapshots([endpoint(0).id])).map((b) => b.state)).toEqual(['closed']);
  });

  it('a turn whose only endpoint stayed busy ends with UPSTREAM_BUSY, with nothing counted against the upstream', async () => {
    const s = setup([{ fail: upstreamBusyError('http://e0', 5_000) }], { threshold: 1 });
    expect(await runAttempts([endpoint(0)], s.host, s.deps)).toMatchObject({ status: 'error', error: { code: 'UPSTREAM_BUSY' } });
    expect(s.failed).toEqual([]);
    expect((await s.breakers.snapshots([endpoint(0).id])).map((b) => b.state)).toEqual(['closed']);
  });
});
