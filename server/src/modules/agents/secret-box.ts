import crypto from 'node:crypto';

/**
 * Encrypts upstream API keys at rest with AES-256-GCM. The 256-bit key is
 * derived from SECRETS_KEY with HKDF-SHA256 (SECRETS_KEY is already a long
 * random secret, so a slow KDF would add start-up cost and no strength).
 *
 * Sealed format: `v1:<iv>:<tag>:<ciphertext>`, each part base64url. The
 * version lets a later key or algorithm change read old values.
 */

const VERSION = 'v1';
const IV_BYTES = 12;
const TAG_BYTES = 16;
const HKDF_SALT = 'llmchat/secret-box';
const HKDF_INFO = 'upstream-api-keys/v1';
const PART = /^[A-Za-z0-9_-]*$/;

export class SecretBoxError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'SecretBoxError';
  }
}

export interface SecretBox {
  encrypt(plaintext: string): string;
  /** Throws SecretBoxError when the value is malformed or was sealed with another key. */
  decrypt(sealed: string): string;
}

export function deriveKey(secretsKey: string): Buffer {
  if (secretsKey.length === 0) throw new SecretBoxError('The secrets key is empty');
  return Buffer.from(crypto.hkdfSync('sha256', secretsKey, HKDF_SALT, HKDF_INFO, 32));
}

export function createSecretBox(secretsKey: string): SecretBox {
  const key = deriveKey(secretsKey);
  return {
    encrypt(plaintext) {
      const iv = crypto.randomBytes(IV_BYTES);
      const cipher = crypto.createCipheriv('aes-256-gcm', key, iv, { authTagLength: TAG_BYTES });
      const data = Buffer.concat([cipher.update(plaintext, 'utf8'), cipher.final()]);
      const tag = cipher.getAuthTag();
      return [VERSION, iv.toString('base64url'), tag.toString('base64url'), data.toString('base64url')].join(':');
    },
    decrypt(sealed) {
      const parts = sealed.split(':');
      if (parts.length !== 4) throw new SecretBoxError('Sealed value is not in the v1:iv:tag:data format');
      const [version, ivText, tagText, dataText] = parts as [string, string, string, string];
      if (version !== VERSION) throw new SecretBoxError(`Unsupported sealed value version "${version.slice(0, 8)}"`);
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
    },
  };
}
