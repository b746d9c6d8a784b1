import { describe, expect, it } from 'vitest';
import { minimumPasswordLength, passwordStrength } from './password-strength';

describe('passwordStrength', () => {
  it('asks for the policy length by role: 8 for users, 12 for admins', () => {
    expect(minimumPasswordLength('user')).toBe(8);
    expect(minimumPasswordLength('admin')).toBe(12);
    expect(passwordStrength('Zq8#vN2k', 'someone', 'user')).toMatchObject({ tooShort: false });
    expect(passwordStrength('Zq8#vN2k', 'someone', 'admin')).toMatchObject({ tooShort: true, level: 'weak' });
  });

  it('calls the username and its trivial variants weak', () => {
    for (const p of ['someone', 'SomeOne2024!', '$0me0ne', 'enoemos']) expect(passwordStrength(p, 'someone', 'user'), p).toMatchObject({ likeUsername: true, level: 'weak' });
  });

  it('grades by length, variety and repeats', () => {
    expect(passwordStrength('aaaaaaaaaaaa', 'x', 'user').level).toBe('weak');
    expect(passwordStrength('abcdefgh', 'x', 'user').level).toBe('fair');
    expect(passwordStrength('kettle-drum-river', 'x', 'user').level).toBe('strong');
    expect(passwordStrength('Zq8#vN2kLp4!', 'x', 'admin').level).toBe('strong');
  });
});
