import fs from 'node:fs';
import { describe, expect, it } from 'vitest';
import type { Role } from '../../db/schema.js';
import { AppError } from '../../errors.js';
import { generatePassword } from './password.js';
import { assertPasswordPolicy, COMMON_PASSWORDS_FILE, commonPasswordCount, isCommonPassword, isUsernameVariant, onList, sortedList } from './password-policy.js';

function policyError(password: string, username = 'someone', role: Role = 'user'): string | undefined {
  try {
    assertPasswordPolicy(password, { username, role });
    return undefined;
  } catch (err) {
    return err instanceof AppError ? `${err.code} ${err.statusCode}` : 'unexpected error';
  }
}

describe('the shipped list of common passwords', () => {
  it('holds the 100,000 most common, lower-cased, unique and sorted, so it is read without sorting', () => {
    const text = fs.readFileSync(COMMON_PASSWORDS_FILE, 'utf8');
    const lines = text.split('\n').filter((l) => l.length > 0);
    expect(lines).toHaveLength(96_518);
    expect(lines).toEqual([...lines].sort((x, y) => (x < y ? -1 : x > y ? 1 : 0)));
    expect(new Set(lines).size).toBe(lines.length);
    for (const top of ['123456', 'password', '12345678', 'qwerty']) expect(lines).toContain(top);
    // Read as it is: the same string, not a sorted copy.
    expect(sortedList(text).text).toBe(text);
    expect(commonPasswordCount()).toBe(96_518);
  });

  it('sorts a list in any order and case, and finds exactly its entries', () => {
    const list = sortedList('Dragon\r\nabc123\n\nzz\nABC123\nmonkey');
    expect(list.text).toBe('abc123\ndragon\nmonkey\nzz\n');
    for (const entry of ['abc123', 'dragon', 'monkey', 'zz']) expect(onList(list, entry)).toBe(true);
    for (const other of ['', 'a', 'abc12', 'abc1234', 'dragons', 'z', 'zzz', 'Dragon', '~']) expect(onList(list, other)).toBe(false);
  });
});

describe('password policy', () => {
  it.each([
    ['7 characters for a user', 'Zq8#vN2', 'user', 'PASSWORD_TOO_WEAK 422'],
    ['8 characters for a user', 'Zq8#vN2k', 'user', undefined],
    ['11 characters for an admin', 'Zq8#vN2kLp4', 'admin', 'PASSWORD_TOO_WEAK 422'],
    ['12 characters for an admin', 'Zq8#vN2kLp4!', 'admin', undefined],
    ['256 characters', 'Zq8#'.repeat(64), 'user', undefined],
    ['257 characters', `${'Zq8#'.repeat(64)}x`, 'user', 'PASSWORD_TOO_WEAK 422'],
    ['8 emoji (counted as characters, not UTF-16 units)', '🔑🌲🐙🎲🚲🧭🪁🎻', 'user', undefined],
    ['7 emoji', '🔑🌲🐙🎲🚲🧭🪁', 'user', 'PASSWORD_TOO_WEAK 422'],
  ] as const)('%s', (_label, password, role, expected) => {
    expect(policyError(password, 'someone', role)).toBe(expected);
  });

  it.each([
    ['the username', 'someone12'],
    ['the username in another case', 'SomeOne12'],
    ['the username with digits and symbols', 'Someone2024!'],
    ['the username reversed', 'enoemos99'],
    ['the username with look-alikes', '$0me0ne-2024'],
    ['the username twice', 'someonesomeone'],
  ])('refuses %s', (_label, password) => {
    expect(isUsernameVariant(password, 'someone12')).toBe(true);
    expect(policyError(password, 'someone12')).toBe('PASSWORD_TOO_WEAK 422');
  });

  it('compares with the username, not a fixed word', () => {
    expect(policyError('kettle-drum-river', 'kettledrumriver')).toBe('PASSWORD_TOO_WEAK 422');
    expect(policyError('kettle-drum-river', 'someone-else')).toBeUndefined();
  });

  it.each(['password', 'Password123!', 'p@ssw0rd', 'iloveyou2024', 'qwertyuiop', '1q2w3e4r5t', 'sunshine!!'])('refuses the common password %s', (password) => {
    expect(isCommonPassword(password)).toBe(true);
    expect(policyError(password)).toBe('PASSWORD_TOO_WEAK 422');
  });

  it('accepts passwords that are not on the list', () => {
    expect(isCommonPassword('kettle-drum-river')).toBe(false);
    expect(policyError('kettle-drum-river')).toBeUndefined();
  });

  it('passes every generated first-admin password', () => {
    for (let i = 0; i < 200; i++) expect(policyError(generatePassword(), 'admin', 'admin')).toBeUndefined();
  });

  it('says what to fix', () => {
    expect(() => assertPasswordPolicy('Zq8#vN2kLp4', { username: 'root', role: 'admin' })).toThrow(/at least 12 characters long for an admin/);
    expect(() => assertPasswordPolicy('root-2024!', { username: 'root', role: 'user' })).toThrow(/username/);
    expect(() => assertPasswordPolicy('football1', { username: 'root', role: 'user' })).toThrow(/most commonly used/);
  });
});
