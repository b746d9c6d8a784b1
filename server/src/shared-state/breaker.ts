/**
 * Circuit-breaker state of one upstream endpoint, as kept in shared state
 * so every instance sees the same breaker. The transitions live here once
 * (the in-process backend runs them; the Redis backend runs the same rules
 * as Lua, see redis-breaker.ts) and take the time as an argument, so tests
 * drive them with a fake clock.
 *
 *   closed --(threshold failures within the window)--> open
 *   open --(cool-down over; one caller takes the probe lease)--> half_open
 *   half_open --(probe succeeds)--> closed
 *   half_open --(probe fails)--> open (a new cool-down)
 *   half_open --(probe lease expires: its caller died)--> the next caller probes
 */

export type BreakerState = 'closed' | 'open' | 'half_open';

export interface BreakerSnapshot {
  state: BreakerState;
  /** Failures counted in the current window (closed state). */
  failures: number;
  windowStartMs: number;
  /** While open: when a probe may go. */
  openUntilMs: number;
  /** While half-open: the probe lease; another caller may probe after it. */
  probeUntilMs: number;
  /** Times the breaker opened, ever (while the key lives). */
  opens: number;
  lastFailureMs: number;
}

export interface BreakerSettings {
  threshold: number;
  windowMs: number;
  cooldownMs: number;
}

/** allow: closed, go ahead. probe: the one trial call after a cool-down. reject: open, use a fallback. */
export type BreakerDecision = 'allow' | 'probe' | 'reject';

/**
 * success: the call worked (closes a half-open breaker; clears the count).
 * failure: the call failed in a way that says the endpoint is unwell.
 * release: the probe ended without a verdict (the caller's own error, a stop): the next caller may probe.
 */
export type BreakerOutcome = 'success' | 'failure' | 'release';

/** Breaker keys outlive their last change by this much, then vanish (a deleted endpoint leaves nothing behind). */
export const BREAKER_TTL_MS = 24 * 3_600_000;

export function closedBreaker(): BreakerSnapshot {
  return { state: 'closed', failures: 0, windowStartMs: 0, openUntilMs: 0, probeUntilMs: 0, opens: 0, lastFailureMs: 0 };
}

/** May a call go to the endpoint now? Mutates `s` when the caller takes the probe lease. */
export function acquireBreaker(s: BreakerSnapshot, nowMs: number, probeLeaseMs: number): BreakerDecision {
  switch (s.state) {
    case 'closed':
      return 'allow';
    case 'open':
      if (nowMs < s.openUntilMs) return 'reject';
      s.state = 'half_open';
      s.probeUntilMs = nowMs + probeLeaseMs;
      return 'probe';
    case 'half_open':
      if (nowMs < s.probeUntilMs) return 'reject';
      s.probeUntilMs = nowMs + probeLeaseMs;
      return 'probe';
  }
}

/** Applies a call's outcome to `s` (mutated). */
export function recordBreaker(s: BreakerSnapshot, outcome: BreakerOutcome, nowMs: number, settings: BreakerSettings): void {
  switch (outcome) {
    case 'success':
      if (s.state === 'open') return; // a call that started before the breaker opened proves little
      s.state = 'closed';
      s.failures = 0;
      s.windowStartMs = nowMs;
      s.probeUntilMs = 0;
      return;
    case 'release':
      if (s.state === 'half_open') s.probeUntilMs = 0;
      return;
    case 'failure':
      s.lastFailureMs = nowMs;
      if (s.state === 'open') return;
      if (s.state === 'half_open') {
        s.state = 'open';
        s.openUntilMs = nowMs + settings.cooldownMs;
        s.probeUntilMs = 0;
        s.opens += 1;
        return;
      }
      if (nowMs - s.windowStartMs >= settings.windowMs) {
        s.failures = 0;
        s.windowStartMs = nowMs;
      }
      s.failures += 1;
      if (s.failures >= settings.threshold) {
        s.state = 'open';
        s.openUntilMs = nowMs + settings.cooldownMs;
        s.failures = 0;
        s.opens += 1;
      }
      return;
  }
}
