import crypto from 'node:crypto';

/**
 * Encrypts upstream API keys at rest with AES-256-GCM. The 256-bit key is
 * derived from SECRETS_KEY with HKDF-SHA256 (SECRETS_KEY is already a long
 * random secret, so a slow KDF would add start-up cost and no strength).
 *
 * Sealed format: `v2:<key id>:<iv>:<tag>:<ciphertext>`, each part
 * base64url. The key id names the SECRETS_KEY that sealed the value, so
 * after a rotation (SECRETS_KEY_PREVIOUS) each value is opened with its own
 * key and `npm run rotate-secrets-key` knows which ones to re-encrypt.
 * `v1:<iv>:<tag>:<ciphertext>` (before key ids) is still read: with the
 * current key, then the previous one.
 */

const IV_BYTES = 12;
const TAG_BYTES = 16;
const HKDF_SALT = 'llmchat/secret-box';
const HKDF_INFO = 'upstream-api-keys/v1';
const HKDF_KEY_ID_INFO = 'upstream-api-keys/key-id';
const PART = /^[A-Za-z0-9_-]*$/;

export class SecretBoxError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'SecretBoxError';
  }
}

export interface SecretBox {
  /** Seals with the current key. */
  encrypt(plaintext: string): string;
  /** Throws SecretBoxError when the value is malformed or was sealed with a key this box does not hold. */
  decrypt(sealed: string): string;
  /** True when the value is not sealed with the current key (so a rotation must re-encrypt it). */
  needsReseal(sealed: string): boolean;
  /** The current key's id. */
  readonly keyId: string;
}

export function deriveKey(secretsKey: string): Buffer {
  if (secretsKey.length === 0) throw new SecretBoxError('The secrets key is empty');
  return Buffer.from(crypto.hkdfSync('sha256', secretsKey, HKDF_SALT, HKDF_INFO, 32));
}

/** A public name for a secrets key, derived apart from the encryption key so it reveals nothing of it. */
export function secretsKeyId(secretsKey: string): string {
  if (secretsKey.length === 0) throw new SecretBoxError('The secrets key is empty');
  return Buffer.from(crypto.hkdfSync('sha256', secretsKey, HKDF_SALT, HKDF_KEY_ID_INFO, 6)).toString('base64url');
}

interface Key {
  id: string;
  key: Buffer;
}

function open(key: Buffer, ivText: string, tagText: string, dataText: string): string {
  if (!PART.test(ivText) || !PART.test(tagText) || !PART.test(dataText)) throw new SecretBoxError('Sealed value is not base64url');
  const iv = Buffer.from(ivText, 'base64url');
  const tag = Buffer.from(tagText, 'base64url');
  if (iv.length !== IV_BYTES || tag.length !== TAG_BYTES) throw new SecretBoxError('Sealed value has a wrong IV or tag length');
  const decipher = crypto.createDecipheriv('aes-256-gcm', key, iv, { authTagLength: TAG_BYTES });
  decipher.setAuthTag(tag);
  try {
    return Buffer.concat([decipher.update(Buffer.from(dataText, 'base64url')), decipher.final()]).toString('utf8');
  } catch {
    // GCM authentication failed: a different SECRETS_KEY or a tampered value.
    throw new SecretBoxError('Sealed value cannot be decrypted with this secrets key');
  }
}

/**
 * A box that seals with `secretsKey` and opens values sealed with it or with
 * `previousKey` (the key before a rotation).
 */
export function createSecretBox(secretsKey: string, previousKey?: string): SecretBox {
  const current: Key = { id: secretsKeyId(secretsKey), key: deriveKey(secretsKey) };
  const keys: Key[] = [current];
  if (previousKey !== undefined && previousKey !== secretsKey) keys.push({ id: secretsKeyId(previousKey), key: deriveKey(previousKey) });

  function parse(sealed: string): { keyId: string | undefined; iv: string; tag: string; data: string } {
    const parts = sealed.split(':');
    if (parts[0] === 'v2' && parts.length === 5) {
      const [, keyId, iv, tag, data] = parts as [string, string, string, string, string];
      return { keyId, iv, tag, data };
    }
    if (parts[0] === 'v1' && parts.length === 4) {
      const [, iv, tag, data] = parts as [string, string, string, string];
      return { keyId: undefined, iv, tag, data };
    }
    if (parts.length > 1 && parts[0] !== 'v1' && parts[0] !== 'v2') throw new SecretBoxError(`Unsupported sealed value version "${(parts[0] ?? '').slice(0, 8)}"`);
    throw new SecretBoxError('Sealed value is not in the v2:keyId:iv:tag:data format');
  }

  return {
    keyId: current.id,
    encrypt(plaintext) {
      const iv = crypto.randomBytes(IV_BYTES);
      const cipher = crypto.createCipheriv('aes-256-gcm', current.key, iv, { authTagLength: TAG_BYTES });
      const data = Buffer.concat([cipher.update(plaintext, 'utf8'), cipher.final()]);
      const tag = cipher.getAuthTag();
      return ['v2', current.id, iv.toString('base64url'), tag.toString('base64url'), data.toString('base64url')].join(':');
    },
    decrypt(sealed) {
      const { keyId, iv, tag, data } = parse(sealed);
      if (keyId !== undefined) {
        const key = keys.find((k) => k.id === keyId);
        if (!key) throw new SecretBoxError('Sealed value was encrypted with a secrets key this server does not hold (set SECRETS_KEY_PREVIOUS?)');
        return open(key.key, iv, tag, data);
      }
      let last: unknown;
      for (const key of keys) {
        try {
          return open(key.key, iv, tag, data);
        } catch (err) {
          last = err;
        }
      }
      throw last instanceof SecretBoxError ? last : new SecretBoxError('Sealed value cannot be decrypted with this secrets key');
    },
    needsReseal(sealed) {
      return parse(sealed).keyId !== current.id;
    },
  };
}
