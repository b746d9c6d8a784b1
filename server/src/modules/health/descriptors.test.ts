import { describe, expect, it } from 'vitest';
import { descriptorLimit, descriptorWarning, descriptorsNeeded, readDescriptors } from './descriptors.js';

const limits = (soft: string, hard: string) => `Limit                     Soft Limit           Hard Limit           Units
Max cpu time              unlimited            unlimited            seconds
Max open files            ${soft.padEnd(20)} ${hard.padEnd(20)} files
Max locked memory         8388608              8388608              bytes
`;

describe('file descriptors', () => {
  it('reads the soft open-file limit, unlimited as null', () => {
    expect(descriptorLimit(limits('20000', '20000'))).toBe(20_000);
    expect(descriptorLimit(limits('1024', '524288'))).toBe(1024);
    expect(descriptorLimit(limits('unlimited', 'unlimited'))).toBeNull();
    expect(() => descriptorLimit('Limit Soft Hard\n')).toThrow();
  });

  it('warns when the limit is below two sockets per stream and the reserve, and not otherwise', () => {
    expect(descriptorsNeeded(10_000)).toBe(21_024);
    expect(descriptorWarning({ open: 50, limit: 20_000 }, 10_000)).toEqual({ limit: 20_000, needed: 21_024 });
    expect(descriptorWarning({ open: 50, limit: 65_536 }, 10_000)).toBeUndefined();
    expect(descriptorWarning({ open: 50, limit: null }, 10_000)).toBeUndefined();
    expect(descriptorWarning(undefined, 10_000)).toBeUndefined();
  });

  it.runIf(process.platform === 'linux')("counts this process's open descriptors against its limit", () => {
    const seen = readDescriptors();
    expect(seen?.open).toBeGreaterThan(2);
    expect(seen?.limit ?? Number.POSITIVE_INFINITY).toBeGreaterThanOrEqual(seen?.open ?? 0);
  });
});
