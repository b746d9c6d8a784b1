import pino from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { backendNames, createBackend, type Backend } from '../../test/backends.js';
import { SharedStateUnavailable } from '../../shared-state/shared-state.js';
import { MemoryState } from '../../shared-state/memory-state.js';
import { ADDRESS_FREE_FAILURES, backoffSeconds, createSignInThrottle, PAIR_FREE_FAILURES, type SignInThrottle } from './sign-in-throttle.js';

const logger = pino({ level: 'silent' });
const HOUR = 3_600_000;

describe('backoffSeconds', () => {
  it('is free for the first failures, then doubles from 1 s up to the maximum', () => {
    expect([1, 2, 3, 4, 5, 6, 7, 8].map((n) => backoffSeconds(n, 3, 10))).toEqual([0, 0, 0, 1, 2, 4, 8, 10]);
    expect(backoffSeconds(10_000, 3, 900)).toBe(900);
  });
});

describe.each(await backendNames())('sign-in throttle on %s', (backendName) => {
  let backend: Backend;
  let clock = Date.UTC(2026, 0, 1, 10, 0, 0);
  let seq = 0;
  const fresh = (prefix: string) => `${prefix}-${++seq}-${backendName}`;

  function throttle(limit = 100, max = 900): SignInThrottle {
    return createSignInThrottle({ state: backend.state, config: { loginFailuresPerAccountPerHour: limit, loginBackoffMaxSeconds: max }, logger, now: () => clock });
  }

  async function fail(t: SignInThrottle, name: string, address: string): Promise<{ refused: number; retryAfter: number }> {
    const attempt = await t.begin(name, address);
    if (attempt.refusedForSeconds > 0) {
      await attempt.release();
      return { refused: attempt.refusedForSeconds, retryAfter: attempt.refusedForSeconds };
    }
    return { refused: 0, retryAfter: await attempt.failed() };
  }

  beforeAll(async () => {
    backend = await createBackend(backendName);
  });
  afterAll(async () => {
    await backend.dispose();
  });

  it('delays one address for one name progressively, and only that pair', async () => {
    const t = throttle();
    const name = fresh('victim');
    const waits: number[] = [];
    for (let i = 0; i < PAIR_FREE_FAILURES + 4; i++) {
      const r = await fail(t, name, '10.0.0.1');
      expect(r.refused, `failure ${i + 1} was refused`).toBe(0);
      waits.push(r.retryAfter);
      if (i < PAIR_FREE_FAILURES + 3) clock += r.retryAfter * 1000;
    }
    expect(waits).toEqual([0, 0, 0, 1, 2, 4, 8]);
    // Within the wait the attacker's address is refused…
    clock += 3_000;
    const early = await t.begin(name, '10.0.0.1');
    expect(early.refusedForSeconds).toBe(5);
    expect(early.reason).toBe('pair');
    await early.release();
    // …while the owner's address is not.
    const owner = await t.begin(name, '10.0.0.2');
    expect(owner.refusedForSeconds).toBe(0);
    await owner.succeeded();
  });

  it('caps the wait at LOGIN_BACKOFF_MAX_SECONDS', async () => {
    const t = throttle(100, 5);
    const name = fresh('capped-wait');
    let last = 0;
    for (let i = 0; i < PAIR_FREE_FAILURES + 6; i++) {
      last = (await fail(t, name, '10.0.1.1')).retryAfter;
      clock += last * 1000;
    }
    expect(last).toBe(5);
  });

  it('a success clears the pair', async () => {
    const t = throttle();
    const name = fresh('forgetful');
    for (let i = 0; i < PAIR_FREE_FAILURES + 1; i++) clock += (await fail(t, name, '10.0.2.1')).retryAfter * 1000;
    const ok = await t.begin(name, '10.0.2.1');
    expect(ok.refusedForSeconds).toBe(0);
    await ok.succeeded();
    expect((await fail(t, name, '10.0.2.1')).retryAfter).toBe(0);
  });

  it('delays an address that sprays many names', async () => {
    const t = throttle();
    const address = `10.1.${seq % 250}.${(seq * 7) % 250}`;
    let retryAfter = 0;
    for (let i = 0; i < ADDRESS_FREE_FAILURES + 1; i++) retryAfter = (await fail(t, fresh('spray'), address)).retryAfter;
    expect(retryAfter).toBe(1);
    const next = await t.begin(fresh('spray'), address);
    expect(next.reason).toBe('address');
    await next.release();
  });

  it('allows at most the cap of failed attempts per account in any 60 minutes, from all addresses together', async () => {
    const t = throttle(5);
    const name = fresh('cap');
    clock = Math.floor(clock / HOUR) * HOUR + HOUR - 60_000; // a minute before an hour boundary
    let failures = 0;
    for (let i = 0; i < 3; i++) if ((await fail(t, name, `10.2.0.${i}`)).refused === 0) failures++;
    clock += 120_000; // across the boundary
    for (let i = 3; i < 12; i++) if ((await fail(t, name, `10.2.0.${i}`)).refused === 0) failures++;
    expect(failures).toBe(5);
    const refused = await t.begin(name, '10.2.1.1');
    expect(refused.reason).toBe('account');
    expect(refused.refusedForSeconds).toBeGreaterThan(0);
    await refused.release();
    expect((await t.status(name)).recentFailures).toBe(5);
  });

  it('keeps the cap exact when attempts run in parallel', async () => {
    const t = throttle(5);
    const name = fresh('parallel');
    const attempts = await Promise.all(Array.from({ length: 20 }, (_, i) => t.begin(name, `10.3.0.${i}`)));
    const admitted = attempts.filter((a) => a.refusedForSeconds === 0);
    expect(admitted).toHaveLength(5);
    await Promise.all(attempts.map((a) => (a.refusedForSeconds === 0 ? a.failed() : a.release())));
    expect((await t.status(name)).recentFailures).toBe(5);
  });

  it('an admin clear ends every delay on the name and resets its cap, on every instance', async () => {
    const one = throttle(3);
    const other = throttle(3);
    const name = fresh('cleared');
    for (let i = 0; i < 6; i++) await fail(one, name, '10.4.0.1');
    expect((await other.begin(name, '10.4.0.2')).reason).toBe('account');
    await one.clearAccount(name);
    const attacker = await other.begin(name, '10.4.0.1');
    expect(attacker.refusedForSeconds).toBe(0);
    await attacker.release();
    expect((await other.status(name)).recentFailures).toBe(0);
  });

  it('treats names case-insensitively', async () => {
    const t = throttle(2);
    const name = fresh('CaseName');
    await fail(t, name.toUpperCase(), '10.5.0.1');
    await fail(t, name.toLowerCase(), '10.5.0.2');
    expect((await t.begin(`  ${name}  `, '10.5.0.3')).reason).toBe('account');
  });
});

describe('sign-in throttle without shared state', () => {
  it('counts on the instance instead of letting guesses through', async () => {
    const down = new MemoryState();
    const fail = (): Promise<never> => Promise.reject(new SharedStateUnavailable('redis is reconnecting'));
    Object.assign(down, { get: fail, hit: fail, set: fail, del: fail });
    const t = createSignInThrottle({ state: down, config: { loginFailuresPerAccountPerHour: 2, loginBackoffMaxSeconds: 900 }, logger });
    for (let i = 0; i < 2; i++) {
      const a = await t.begin('offline', `10.6.0.${i}`);
      expect(a.refusedForSeconds).toBe(0);
      await a.failed();
    }
    expect((await t.begin('offline', '10.6.0.9')).reason).toBe('account');
    await down.close();
  });
});
