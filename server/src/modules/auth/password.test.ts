import { hash } from '@node-rs/argon2';
import { describe, expect, it } from 'vitest';
import { dummyPasswordHash, generatePassword, hashPassword, needsRehash, verifyPassword } from './password.js';

describe('password hashing', () => {
  it('uses argon2id with the OWASP baseline parameters', async () => {
    const stored = await hashPassword('correct horse battery staple');
    expect(stored).toMatch(/^\$argon2id\$v=19\$m=19456,t=2,p=1\$/);
    expect(needsRehash(stored)).toBe(false);
  });

  it('verifies the right password and rejects a wrong one', async () => {
    const stored = await hashPassword('correct horse battery staple');
    expect(await verifyPassword(stored, 'correct horse battery staple')).toBe(true);
    expect(await verifyPassword(stored, 'correct horse battery stapler')).toBe(false);
  });

  it('salts: the same password hashes differently each time', async () => {
    expect(await hashPassword('same-password')).not.toBe(await hashPassword('same-password'));
  });

  it('treats a malformed stored hash as a mismatch instead of throwing', async () => {
    expect(await verifyPassword('not-a-hash', 'anything')).toBe(false);
    expect(needsRehash('not-a-hash')).toBe(true);
  });

  it('asks for a rehash of weaker or other-algorithm hashes', async () => {
    expect(needsRehash(await hash('pw', { memoryCost: 4096, timeCost: 3 }))).toBe(true);
    expect(needsRehash(await hash('pw', { algorithm: 1 as never, memoryCost: 19_456, timeCost: 2 }))).toBe(true);
  });

  it('has a dummy hash that matches no ordinary password', async () => {
    const dummy = await dummyPasswordHash();
    expect(dummy).toBe(await dummyPasswordHash());
    expect(await verifyPassword(dummy, 'password')).toBe(false);
  });

  it('generates long random passwords', () => {
    const a = generatePassword();
    expect(a.length).toBeGreaterThanOrEqual(20);
    expect(a).not.toBe(generatePassword());
  });
});
