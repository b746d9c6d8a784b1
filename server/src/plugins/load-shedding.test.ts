import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { bearer, buildTestApp, login, type TestApp } from '../test/app.js';
import { PressureMonitor, type PressureSample, type PressureSource } from './load-shedding.js';

/** A pressure source the test sets by hand: no timers, no real load. */
function fakePressure(): PressureSource & { now: PressureSample } {
  return {
    now: { eventLoopDelayMs: 0, heapUsedPercent: 10 },
    sample() {
      return this.now;
    },
    close() {},
  };
}

describe('load shedding', () => {
  let t: TestApp;
  const pressure = fakePressure();
  let token: string;
  beforeAll(async () => {
    t = await buildTestApp('pglite+memory', { SHED_EVENT_LOOP_DELAY_MS: '200', SHED_HEAP_USED_PERCENT: '90', SHED_RETRY_AFTER_SECONDS: '3' }, { pressureSource: pressure });
    token = await login(t.app);
  });
  afterAll(async () => {
    await t.close();
  });

  function under(sample: PressureSample): void {
    pressure.now = sample;
    t.app.deps.pressure.check();
  }

  it('serves normally below the limits', async () => {
    under({ eventLoopDelayMs: 150, heapUsedPercent: 80 });
    expect((await t.app.inject({ method: 'GET', url: '/api/agents', headers: bearer(token) })).statusCode).toBe(200);
  });

  it.each([
    ['event-loop lag', { eventLoopDelayMs: 250, heapUsedPercent: 10 }],
    ['heap pressure', { eventLoopDelayMs: 0, heapUsedPercent: 95 }],
  ])('under %s new requests get 503 OVERLOADED with Retry-After; health endpoints still answer', async (_name, sample) => {
    under(sample);
    const shed = await t.app.inject({ method: 'GET', url: '/api/agents', headers: bearer(token) });
    expect(shed.statusCode).toBe(503);
    expect(shed.headers['retry-after']).toBe('3');
    expect(shed.json<{ error: { code: string; requestId: string } }>().error).toMatchObject({ code: 'OVERLOADED' });
    const chat = await t.app.inject({ method: 'POST', url: '/api/chat/completions', headers: bearer(token), payload: { agentId: 'x', messages: [{ role: 'user', content: 'hi' }] } });
    expect(chat.statusCode).toBe(503);
    expect((await t.app.inject({ method: 'GET', url: '/health/live' })).statusCode).toBe(200);
    expect((await t.app.inject({ method: 'GET', url: '/health/ready' })).statusCode).toBe(200);
    under({ eventLoopDelayMs: 0, heapUsedPercent: 10 });
    expect((await t.app.inject({ method: 'GET', url: '/api/agents', headers: bearer(token) })).statusCode).toBe(200);
  });

  it('a limit of 0 turns its check off', async () => {
    const relaxed = await buildTestApp('pglite+memory', { SHED_EVENT_LOOP_DELAY_MS: '0', SHED_HEAP_USED_PERCENT: '0' }, { pressureSource: { sample: () => ({ eventLoopDelayMs: 99_999, heapUsedPercent: 100 }), close() {} } });
    try {
      relaxed.app.deps.pressure.check();
      expect(relaxed.app.deps.pressure.overloadedBecause).toBeUndefined();
      expect((await relaxed.app.inject({ method: 'GET', url: '/health/detailed' })).json<{ load: { eventLoopDelayMs: number } }>().load.eventLoopDelayMs).toBe(99_999);
    } finally {
      await relaxed.close();
    }
  });

  it('says once when shedding starts, with why, and once when it stops', () => {
    const source = fakePressure();
    const changes: Array<string | undefined> = [];
    const monitor = new PressureMonitor(source, { maxEventLoopDelayMs: 200, maxHeapUsedPercent: 90 }, (because) => changes.push(because));
    monitor.check();
    source.now = { eventLoopDelayMs: 300, heapUsedPercent: 10 };
    monitor.check();
    source.now = { eventLoopDelayMs: 0, heapUsedPercent: 97 };
    monitor.check();
    source.now = { eventLoopDelayMs: 0, heapUsedPercent: 10 };
    monitor.check();
    monitor.check();
    expect(changes).toEqual(['event-loop delay 300 ms over 200 ms', undefined]);
  });
});
