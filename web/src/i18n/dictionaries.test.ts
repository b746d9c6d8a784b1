import { describe, expect, it } from 'vitest';
import { en } from './en';
import { zhCN } from './zh-CN';

const placeholders = (s: string) => [...s.matchAll(/\{(\w+)\}/g)].map((m) => m[1]).sort();

describe('the dictionaries', () => {
  it('have exactly the same keys', () => {
    expect(Object.keys(zhCN).sort()).toEqual(Object.keys(en).sort());
  });

  it('use the same placeholders in each string', () => {
    for (const key of Object.keys(en) as (keyof typeof en)[]) {
      expect(placeholders(zhCN[key]), key).toEqual(placeholders(en[key]));
    }
  });

  it('leave no string empty or untranslated (the Chinese differs from the English except for names)', () => {
    // Names, and `2 / 3` (a version's position), which both languages write the same.
    const sameOnPurpose = new Set(['app.name', 'admin.nodeVersion', 'chat.versionPosition']);
    for (const key of Object.keys(en) as (keyof typeof en)[]) {
      expect(zhCN[key].trim(), key).not.toBe('');
      if (!sameOnPurpose.has(key)) expect(zhCN[key], key).not.toBe(en[key]);
    }
  });
});
