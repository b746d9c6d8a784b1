import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import type { Config } from './config.js';

export interface Secrets {
  jwtSecret: string;
  secretsKey: string;
  /** Set during a rotation (JWT_SECRET_PREVIOUS with JWT_SECRET_PREVIOUS_UNTIL). */
  jwtSecretPrevious?: string | undefined;
  jwtSecretPreviousUntil?: Date | undefined;
  /** Set during a rotation (SECRETS_KEY_PREVIOUS): still decrypts, never encrypts. */
  secretsKeyPrevious?: string | undefined;
}

/**
 * Token and encryption secrets. In production they come from the
 * environment (config refuses to start without them when DATABASE_URL is
 * set). On the embedded default they are generated once into DATA_DIR, so a
 * restart keeps people signed in and stored API keys readable.
 */
export function resolveSecrets(config: Config): Secrets {
  const previous = {
    jwtSecretPrevious: config.jwtSecretPrevious,
    jwtSecretPreviousUntil: config.jwtSecretPreviousUntil,
    secretsKeyPrevious: config.secretsKeyPrevious,
  };
  return { ...currentSecrets(config), ...previous };
}

function currentSecrets(config: Config): Pick<Secrets, 'jwtSecret' | 'secretsKey'> {
  if (config.jwtSecret && config.secretsKey) return { jwtSecret: config.jwtSecret, secretsKey: config.secretsKey };
  const file = path.join(config.dataDir, 'secrets.json');
  let stored: Partial<Secrets> = {};
  if (fs.existsSync(file)) stored = JSON.parse(fs.readFileSync(file, 'utf8')) as Partial<Secrets>;
  const secrets = {
    jwtSecret: config.jwtSecret ?? stored.jwtSecret ?? crypto.randomBytes(48).toString('base64url'),
    secretsKey: config.secretsKey ?? stored.secretsKey ?? crypto.randomBytes(48).toString('base64url'),
  };
  if (stored.jwtSecret !== secrets.jwtSecret || stored.secretsKey !== secrets.secretsKey) {
    fs.mkdirSync(config.dataDir, { recursive: true });
    fs.writeFileSync(file, JSON.stringify(secrets), { mode: 0o600 });
  }
  return secrets;
}
