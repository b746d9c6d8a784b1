import crypto from 'node:crypto';
import pino from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { SharedStateUnavailable, type SharedState } from '../../shared-state/shared-state.js';
import { backendNames, createBackend, type Backend } from '../../test/backends.js';
import { createBreakerService } from './breakers.js';

interface LogLine {
  level: number;
  msg: string;
  degradedMs?: number;
  failuresSinceFirst?: number;
}

/** The backend's shared state with a switch that makes every command fail as RedisState does while Redis is down. */
function withOutage(state: SharedState): { state: SharedState; setDown(down: boolean): void } {
  let down = false;
  const proxy = new Proxy(state, {
    get(target, prop, receiver) {
      const value: unknown = Reflect.get(target, prop, receiver);
      if (typeof value !== 'function' || prop === 'close') return value;
      return (...args: unknown[]): unknown => {
        if (down) return Promise.reject(new SharedStateUnavailable('shared state unreachable (test outage)'));
        return (value as (...a: unknown[]) => unknown).apply(target, args);
      };
    },
  });
  return {
    state: proxy,
    setDown(d) {
      down = d;
    },
  };
}

describe.each(await backendNames())('breaker service while shared state is down on %s', (name) => {
  let backend: Backend;
  beforeAll(async () => {
    backend = await createBackend(name);
  });
  afterAll(async () => {
    await backend.dispose();
  });

  it('lets calls through, warns once per outage however many calls fail, and logs once when shared state is back', async () => {
    const lines: LogLine[] = [];
    const logger = pino({ level: 'info' }, { write: (line: string) => void lines.push(JSON.parse(line) as LogLine) });
    let clock = 10_000_000;
    const outage = withOutage(backend.state);
    const breakers = createBreakerService({ state: outage.state, settings: { threshold: 3, windowMs: 60_000, cooldownMs: 60_000 }, logger, now: () => clock, cacheMs: 0 });
    await breakers.start();
    const endpoint = crypto.randomUUID();
    const warnings = () => lines.filter((l) => l.level >= 40);
    try {
      outage.setDown(true);
      // Five failed turns, each asking the breaker and recording its failure, plus an admin reading the states.
      for (let i = 0; i < 5; i++) {
        expect(await breakers.acquire(endpoint, 1_000)).toBe('allow');
        await breakers.record(endpoint, 'failure', false);
        clock += 1_000;
      }
      await expect(breakers.snapshots([endpoint])).rejects.toBeInstanceOf(SharedStateUnavailable);
      expect(warnings().map((l) => l.msg)).toEqual(['shared state unavailable: circuit breakers (failing open: calls go through) degraded until it returns']);

      outage.setDown(false);
      expect(await breakers.acquire(endpoint, 1_000)).toBe('allow');
      await breakers.record(endpoint, 'failure', false);
      const back = lines.filter((l) => l.msg === 'shared state back: circuit breakers (failing open: calls go through) restored');
      // Ten failures after the first were counted but not logged; the outage lasted five fake seconds.
      expect(back).toEqual([expect.objectContaining({ level: 30, failuresSinceFirst: 10, degradedMs: 5_000 })]);
      expect((await breakers.snapshots([endpoint]))[0]).toMatchObject({ state: 'closed', failures: 1 });

      // A second outage is a second warning, again only one.
      outage.setDown(true);
      for (let i = 0; i < 3; i++) await breakers.record(endpoint, 'failure', false);
      expect(warnings()).toHaveLength(2);
    } finally {
      outage.setDown(false);
      await breakers.stop();
    }
  });
});
