import { describe, expect, it } from 'vitest';
import { parseRecoveryTarget } from './recovery-target.js';

describe('the --to of a restore', () => {
  it('takes ISO 8601 and PostgreSQL times with a zone and writes them as pgBackRest reads them', () => {
    expect(parseRecoveryTarget('2026-12-04T12:30:00.250Z')).toEqual({ type: 'time', time: '2026-12-04 12:30:00.250+00' });
    expect(parseRecoveryTarget('2026-12-04 12:30:00.123456+01:00')).toEqual({ type: 'time', time: '2026-12-04 12:30:00.123456+01:00' });
    expect(parseRecoveryTarget('2026-12-04 12:30-0530')).toEqual({ type: 'time', time: '2026-12-04 12:30:00-0530' });
    expect(parseRecoveryTarget(' latest ')).toEqual({ type: 'latest' });
  });

  it('refuses a time without a zone, a malformed one and an impossible date', () => {
    expect(() => parseRecoveryTarget('2026-12-04 12:30:00')).toThrow(/with a zone/);
    expect(() => parseRecoveryTarget('yesterday')).toThrow(/with a zone/);
    expect(() => parseRecoveryTarget('2026-13-04T12:30:00Z')).toThrow(/not a valid time/);
    expect(() => parseRecoveryTarget('2026-12-04T25:30:00Z')).toThrow(/not a valid time/);
    expect(() => parseRecoveryTarget('2026-02-30T12:30:00Z')).toThrow(/not a valid time/);
    expect(() => parseRecoveryTarget('2026-12-04T12:30:00+15:00')).toThrow(/not a valid time/);
  });
});
