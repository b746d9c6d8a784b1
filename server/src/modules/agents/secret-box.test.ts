import { describe, expect, it } from 'vitest';
import { createSecretBox, deriveKey, SecretBoxError } from './secret-box.js';

const KEY = 'unit-test-secrets-key-that-is-long-enough-0123456789';

describe('secret box', () => {
  it('round-trips a key, including non-ASCII and empty text', () => {
    const box = createSecretBox(KEY);
    for (const plain of ['sk-live-abc123', 'ключ-🔑', '', 'x'.repeat(4096)]) {
      expect(box.decrypt(box.encrypt(plain))).toBe(plain);
    }
  });

  it('writes the versioned v1:iv:tag:data format in base64url, without the plaintext', () => {
    const sealed = createSecretBox(KEY).encrypt('sk-visible-secret');
    const parts = sealed.split(':');
    expect(parts).toHaveLength(4);
    expect(parts[0]).toBe('v1');
    for (const part of parts.slice(1)) expect(part).toMatch(/^[A-Za-z0-9_-]+$/);
    expect(Buffer.from(parts[1] ?? '', 'base64url')).toHaveLength(12);
    expect(Buffer.from(parts[2] ?? '', 'base64url')).toHaveLength(16);
    expect(sealed).not.toContain('sk-visible-secret');
  });

  it('uses a fresh IV each time', () => {
    const box = createSecretBox(KEY);
    expect(box.encrypt('same')).not.toBe(box.encrypt('same'));
  });

  it('refuses a value sealed with another secrets key', () => {
    const sealed = createSecretBox(KEY).encrypt('sk-abc');
    expect(() => createSecretBox(`${KEY}-other`).decrypt(sealed)).toThrow(SecretBoxError);
  });

  it('refuses tampered data, IV or tag', () => {
    const box = createSecretBox(KEY);
    const [v, iv, tag, data] = box.encrypt('sk-abc').split(':') as [string, string, string, string];
    const flip = (s: string) => {
      const b = Buffer.from(s, 'base64url');
      b[0] = (b[0] ?? 0) ^ 1;
      return b.toString('base64url');
    };
    expect(() => box.decrypt([v, iv, tag, flip(data)].join(':'))).toThrow(SecretBoxError);
    expect(() => box.decrypt([v, flip(iv), tag, data].join(':'))).toThrow(SecretBoxError);
    expect(() => box.decrypt([v, iv, flip(tag), data].join(':'))).toThrow(SecretBoxError);
  });

  it('refuses malformed values with a clear error', () => {
    const box = createSecretBox(KEY);
    const good = box.encrypt('k').split(':');
    expect(() => box.decrypt('plain-text-key')).toThrow(/format/);
    expect(() => box.decrypt(['v2', ...good.slice(1)].join(':'))).toThrow(/version/);
    expect(() => box.decrypt(['v1', 'not base64!', good[2], good[3]].join(':'))).toThrow(/base64url/);
    expect(() => box.decrypt(['v1', 'AAAA', good[2], good[3]].join(':'))).toThrow(/IV or tag length/);
  });

  it('derives a 32-byte key deterministically and refuses an empty secret', () => {
    expect(deriveKey(KEY)).toHaveLength(32);
    expect(deriveKey(KEY).equals(deriveKey(KEY))).toBe(true);
    expect(deriveKey(KEY).equals(deriveKey(`${KEY}x`))).toBe(false);
    expect(() => deriveKey('')).toThrow(SecretBoxError);
  });
});
