import crypto from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { backendNames, createBackend, type Backend } from '../test/backends.js';
import type { BreakerSettings } from './breaker.js';

const settings: BreakerSettings = { threshold: 3, windowMs: 10_000, cooldownMs: 5_000 };
const LEASE = 2_000;

describe.each(await backendNames())('circuit breakers in shared state on %s', (name) => {
  let backend: Backend;
  beforeAll(async () => {
    backend = await createBackend(name);
  });
  afterAll(async () => {
    await backend.dispose();
  });
  const fresh = () => crypto.randomUUID();

  it('an unknown endpoint is closed and lets calls through without writing anything', async () => {
    const id = fresh();
    expect((await backend.state.breakerAcquire(id, 1_000, LEASE)).decision).toBe('allow');
    expect((await backend.state.breakerRead([id]))[0]).toMatchObject({ state: 'closed', failures: 0, opens: 0 });
  });

  it('opens after threshold failures within the window, then rejects until the cool-down is over', async () => {
    const id = fresh();
    const t0 = 1_000_000;
    expect((await backend.state.breakerRecord(id, 'failure', t0, settings)).state).toBe('closed');
    expect((await backend.state.breakerRecord(id, 'failure', t0 + 10, settings)).failures).toBe(2);
    const opened = await backend.state.breakerRecord(id, 'failure', t0 + 20, settings);
    expect(opened).toMatchObject({ state: 'open', openUntilMs: t0 + 20 + settings.cooldownMs, opens: 1 });
    expect((await backend.state.breakerAcquire(id, t0 + 21, LEASE)).decision).toBe('reject');
    expect((await backend.state.breakerAcquire(id, t0 + 20 + settings.cooldownMs - 1, LEASE)).decision).toBe('reject');
  });

  it('failures spread over more than a window do not open it; a success clears the count', async () => {
    const id = fresh();
    const t0 = 2_000_000;
    await backend.state.breakerRecord(id, 'failure', t0, settings);
    await backend.state.breakerRecord(id, 'failure', t0 + 1, settings);
    // The window is over: the count starts again.
    expect((await backend.state.breakerRecord(id, 'failure', t0 + settings.windowMs + 5, settings))).toMatchObject({ state: 'closed', failures: 1 });
    await backend.state.breakerRecord(id, 'failure', t0 + settings.windowMs + 6, settings);
    expect((await backend.state.breakerRecord(id, 'success', t0 + settings.windowMs + 7, settings))).toMatchObject({ state: 'closed', failures: 0 });
    expect((await backend.state.breakerRecord(id, 'failure', t0 + settings.windowMs + 8, settings)).state).toBe('closed');
  });

  it('after the cool-down exactly one caller gets the probe; its success closes the breaker', async () => {
    const id = fresh();
    const t0 = 3_000_000;
    for (let i = 0; i < settings.threshold; i++) await backend.state.breakerRecord(id, 'failure', t0 + i, settings);
    const after = t0 + settings.threshold + settings.cooldownMs;
    const decisions = await Promise.all([1, 2, 3, 4].map(() => backend.state.breakerAcquire(id, after, LEASE)));
    expect(decisions.map((d) => d.decision).sort()).toEqual(['probe', 'reject', 'reject', 'reject']);
    expect((await backend.state.breakerRead([id]))[0]?.state).toBe('half_open');
    expect((await backend.state.breakerRecord(id, 'success', after + 10, settings)).state).toBe('closed');
    expect((await backend.state.breakerAcquire(id, after + 11, LEASE)).decision).toBe('allow');
  });

  it('a failed probe opens it again for a new cool-down; a lost probe lease lets the next caller probe', async () => {
    const id = fresh();
    const t0 = 4_000_000;
    for (let i = 0; i < settings.threshold; i++) await backend.state.breakerRecord(id, 'failure', t0, settings);
    const after = t0 + settings.cooldownMs;
    expect((await backend.state.breakerAcquire(id, after, LEASE)).decision).toBe('probe');
    const reopened = await backend.state.breakerRecord(id, 'failure', after + 100, settings);
    expect(reopened).toMatchObject({ state: 'open', openUntilMs: after + 100 + settings.cooldownMs, opens: 2 });
    const later = after + 100 + settings.cooldownMs;
    expect((await backend.state.breakerAcquire(id, later, LEASE)).decision).toBe('probe');
    // The probing caller vanished: within its lease nobody else probes, after it the next one does.
    expect((await backend.state.breakerAcquire(id, later + LEASE - 1, LEASE)).decision).toBe('reject');
    expect((await backend.state.breakerAcquire(id, later + LEASE, LEASE)).decision).toBe('probe');
    // A probe released without a verdict (the caller's own error) frees the slot at once.
    await backend.state.breakerRecord(id, 'release', later + LEASE + 1, settings);
    expect((await backend.state.breakerAcquire(id, later + LEASE + 2, LEASE)).decision).toBe('probe');
  });

  it('reads several breakers in the order asked', async () => {
    const a = fresh();
    const b = fresh();
    for (let i = 0; i < settings.threshold; i++) await backend.state.breakerRecord(b, 'failure', 5_000_000, settings);
    const states = await backend.state.breakerRead([a, b, fresh()]);
    expect(states.map((s) => s.state)).toEqual(['closed', 'open', 'closed']);
  });
});
