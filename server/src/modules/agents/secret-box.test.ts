import { describe, expect, it } from 'vitest';
import crypto from 'node:crypto';
import { createSecretBox, deriveKey, SecretBoxError, secretsKeyId } from './secret-box.js';

const KEY = 'unit-test-secrets-key-that-is-long-enough-0123456789';

describe('secret box', () => {
  it('round-trips a key, including non-ASCII and empty text', () => {
    const box = createSecretBox(KEY);
    for (const plain of ['sk-live-abc123', 'ключ-🔑', '', 'x'.repeat(4096)]) {
      expect(box.decrypt(box.encrypt(plain))).toBe(plain);
    }
  });

  it('writes the versioned v2:keyId:iv:tag:data format in base64url, without the plaintext', () => {
    const sealed = createSecretBox(KEY).encrypt('sk-visible-secret');
    const parts = sealed.split(':');
    expect(parts).toHaveLength(5);
    expect(parts[0]).toBe('v2');
    expect(parts[1]).toBe(secretsKeyId(KEY));
    for (const part of parts.slice(1)) expect(part).toMatch(/^[A-Za-z0-9_-]+$/);
    expect(Buffer.from(parts[2] ?? '', 'base64url')).toHaveLength(12);
    expect(Buffer.from(parts[3] ?? '', 'base64url')).toHaveLength(16);
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
    const [v, kid, iv, tag, data] = box.encrypt('sk-abc').split(':') as [string, string, string, string, string];
    const flip = (s: string) => {
      const b = Buffer.from(s, 'base64url');
      b[0] = (b[0] ?? 0) ^ 1;
      return b.toString('base64url');
    };
    expect(() => box.decrypt([v, kid, iv, tag, flip(data)].join(':'))).toThrow(SecretBoxError);
    expect(() => box.decrypt([v, kid, flip(iv), tag, data].join(':'))).toThrow(SecretBoxError);
    expect(() => box.decrypt([v, kid, iv, flip(tag), data].join(':'))).toThrow(SecretBoxError);
  });

  it('refuses malformed values with a clear error', () => {
    const box = createSecretBox(KEY);
    const good = box.encrypt('k').split(':');
    expect(() => box.decrypt('plain-text-key')).toThrow(/format/);
    expect(() => box.decrypt(['v3', ...good.slice(1)].join(':'))).toThrow(/version/);
    expect(() => box.decrypt(['v2', ...good.slice(2)].join(':'))).toThrow(/format/);
    expect(() => box.decrypt(['v2', good[1], 'not base64!', good[3], good[4]].join(':'))).toThrow(/base64url/);
    expect(() => box.decrypt(['v2', good[1], 'AAAA', good[3], good[4]].join(':'))).toThrow(/IV or tag length/);
  });

  it('derives a 32-byte key deterministically and refuses an empty secret', () => {
    expect(deriveKey(KEY)).toHaveLength(32);
    expect(deriveKey(KEY).equals(deriveKey(KEY))).toBe(true);
    expect(deriveKey(KEY).equals(deriveKey(`${KEY}x`))).toBe(false);
    expect(() => deriveKey('')).toThrow(SecretBoxError);
  });

  describe('rotation', () => {
    const NEW = 'unit-test-rotated-secrets-key-long-enough-9876543210';

    /** What the pre-key-id release wrote: v1:iv:tag:data under the derived key. */
    function sealV1(secretsKey: string, plain: string): string {
      const iv = crypto.randomBytes(12);
      const cipher = crypto.createCipheriv('aes-256-gcm', deriveKey(secretsKey), iv, { authTagLength: 16 });
      const data = Buffer.concat([cipher.update(plain, 'utf8'), cipher.final()]);
      return ['v1', iv.toString('base64url'), cipher.getAuthTag().toString('base64url'), data.toString('base64url')].join(':');
    }

    it('opens values sealed with the previous key (v1 and v2) and seals only with the current one', () => {
      const old = createSecretBox(KEY).encrypt('sk-old-v2');
      const legacy = sealV1(KEY, 'sk-old-v1');
      const rotated = createSecretBox(NEW, KEY);
      expect(rotated.decrypt(old)).toBe('sk-old-v2');
      expect(rotated.decrypt(legacy)).toBe('sk-old-v1');
      expect(rotated.needsReseal(old)).toBe(true);
      expect(rotated.needsReseal(legacy)).toBe(true);
      const fresh = rotated.encrypt('sk-new');
      expect(fresh.split(':')[1]).toBe(secretsKeyId(NEW));
      expect(rotated.needsReseal(fresh)).toBe(false);
      expect(createSecretBox(NEW).decrypt(fresh)).toBe('sk-new');
    });

    it('refuses a value of a key it no longer holds, naming the cure', () => {
      const old = createSecretBox(KEY).encrypt('sk-old');
      expect(() => createSecretBox(NEW).decrypt(old)).toThrow(/SECRETS_KEY_PREVIOUS/);
      expect(() => createSecretBox(NEW).decrypt(sealV1(KEY, 'sk-old'))).toThrow(SecretBoxError);
    });

    it('gives each key a stable id that is not derived like the encryption key', () => {
      expect(secretsKeyId(KEY)).toBe(secretsKeyId(KEY));
      expect(secretsKeyId(KEY)).not.toBe(secretsKeyId(NEW));
      expect(deriveKey(KEY).toString('base64url')).not.toContain(secretsKeyId(KEY));
    });
  });
});
