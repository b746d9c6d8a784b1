import crypto from 'node:crypto';
import type { Kysely, Selectable } from 'kysely';
import type { ApiKeysTable, Database, Role, UserStatus } from '../../db/schema.js';
import { AppError, notFound } from '../../errors.js';
import { AuditActions, type Actor, type AuditLog } from '../audit/audit-log.js';
import { sha256 } from './tokens.js';

/** Every personal API key starts with this, so the authenticator can tell it from a JWT. */
export const API_KEY_PREFIX = 'llmc_';
/** Characters of the key kept in clear to help people recognise it. */
const DISPLAY_PREFIX_LENGTH = 12;
/** Active (unrevoked, unexpired) keys one user may hold. */
export const MAX_ACTIVE_KEYS_PER_USER = 50;
const LAST_USED_RESOLUTION_MS = 60_000;

/** What anyone ever sees of a key after it was created: never the key or its hash. */
export interface ApiKeyView {
  id: string;
  name: string;
  prefix: string;
  createdAt: string;
  lastUsedAt: string | null;
  expiresAt: string | null;
  revokedAt: string | null;
}

export interface CreatedApiKey {
  /** The full key. Shown once; only its hash is stored. */
  key: string;
  apiKey: ApiKeyView;
}

export interface NewApiKey {
  name: string;
  /** Days until the key stops working; absent means it never expires. */
  expiresInDays?: number | undefined;
}

/** The owner of a valid key, as the authenticator needs it. */
export interface ApiKeyOwner {
  apiKeyId: string;
  userId: string;
  username: string;
  role: Role;
  status: UserStatus;
}

export interface ApiKeysService {
  list(userId: string): Promise<ApiKeyView[]>;
  create(actor: Actor, input: NewApiKey): Promise<CreatedApiKey>;
  /** Revokes one of the actor's own keys; anyone else's is API_KEY_NOT_FOUND. */
  revoke(actor: Actor, keyId: string): Promise<ApiKeyView>;
  /** The owner of an active key, or null for an unknown, revoked or expired one. */
  verify(key: string): Promise<ApiKeyOwner | null>;
}

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

function iso(value: Date | string | null): string | null {
  return value === null ? null : new Date(value).toISOString();
}

function toView(row: Selectable<ApiKeysTable>): ApiKeyView {
  return {
    id: row.id,
    name: row.name,
    prefix: row.prefix,
    createdAt: new Date(row.created_at).toISOString(),
    lastUsedAt: iso(row.last_used_at),
    expiresAt: iso(row.expires_at),
    revokedAt: iso(row.revoked_at),
  };
}

export function generateApiKey(): string {
  return API_KEY_PREFIX + crypto.randomBytes(32).toString('base64url');
}

export function createApiKeysService({ db, audit }: { db: Kysely<Database>; audit: AuditLog }): ApiKeysService {
  return {
    async list(userId) {
      const rows = await db.selectFrom('api_keys').selectAll().where('user_id', '=', userId).orderBy('created_at', 'desc').orderBy('id', 'desc').execute();
      return rows.map(toView);
    },

    async create(actor, input) {
      const now = new Date();
      const active = await db
        .selectFrom('api_keys')
        .select((eb) => eb.fn.countAll<number>().as('n'))
        .where('user_id', '=', actor.id)
        .where('revoked_at', 'is', null)
        .where((eb) => eb.or([eb('expires_at', 'is', null), eb('expires_at', '>', now)]))
        .executeTakeFirstOrThrow();
      if (Number(active.n) >= MAX_ACTIVE_KEYS_PER_USER) {
        throw new AppError('API_KEY_LIMIT_REACHED', `You already have ${MAX_ACTIVE_KEYS_PER_USER} active API keys: revoke one first`);
      }
      const key = generateApiKey();
      const row = await db
        .insertInto('api_keys')
        .values({
          user_id: actor.id,
          name: input.name,
          prefix: key.slice(0, DISPLAY_PREFIX_LENGTH),
          key_hash: sha256(key),
          expires_at: input.expiresInDays === undefined ? null : new Date(now.getTime() + input.expiresInDays * 86_400_000),
        })
        .returningAll()
        .executeTakeFirstOrThrow();
      await audit.record({ actorId: actor.id, actorUsername: actor.username, ip: actor.ip, action: AuditActions.apiKeyCreate, targetType: 'api_key', targetId: row.id, detail: { name: row.name, prefix: row.prefix } });
      return { key, apiKey: toView(row) };
    },

    async revoke(actor, keyId) {
      if (!UUID.test(keyId)) throw notFound('API_KEY_NOT_FOUND', 'The API key');
      const revoked = await db
        .updateTable('api_keys')
        .set({ revoked_at: new Date() })
        .where('id', '=', keyId)
        .where('user_id', '=', actor.id)
        .where('revoked_at', 'is', null)
        .returningAll()
        .executeTakeFirst();
      if (revoked) {
        await audit.record({ actorId: actor.id, actorUsername: actor.username, ip: actor.ip, action: AuditActions.apiKeyRevoke, targetType: 'api_key', targetId: keyId, detail: { name: revoked.name, prefix: revoked.prefix } });
        return toView(revoked);
      }
      // Already revoked is fine (idempotent); someone else's key is indistinguishable from a missing one.
      const existing = await db.selectFrom('api_keys').selectAll().where('id', '=', keyId).where('user_id', '=', actor.id).executeTakeFirst();
      if (!existing) throw notFound('API_KEY_NOT_FOUND', 'The API key');
      return toView(existing);
    },

    async verify(key) {
      if (!key.startsWith(API_KEY_PREFIX) || key.length > 200) return null;
      const now = new Date();
      const row = await db
        .selectFrom('api_keys')
        .innerJoin('users', 'users.id', 'api_keys.user_id')
        .select(['api_keys.id as apiKeyId', 'api_keys.last_used_at as lastUsedAt', 'users.id as userId', 'users.username', 'users.role', 'users.status'])
        .where('api_keys.key_hash', '=', sha256(key))
        .where('api_keys.revoked_at', 'is', null)
        .where((eb) => eb.or([eb('api_keys.expires_at', 'is', null), eb('api_keys.expires_at', '>', now)]))
        .executeTakeFirst();
      if (!row) return null;
      if (!row.lastUsedAt || now.getTime() - new Date(row.lastUsedAt).getTime() >= LAST_USED_RESOLUTION_MS) {
        try {
          await db
            .updateTable('api_keys')
            .set({ last_used_at: now })
            .where('id', '=', row.apiKeyId)
            .where((eb) => eb.or([eb('last_used_at', 'is', null), eb('last_used_at', '<', new Date(now.getTime() - LAST_USED_RESOLUTION_MS))]))
            .execute();
        } catch {
          // Bookkeeping only: a failed write must not fail the caller's request.
        }
      }
      return { apiKeyId: row.apiKeyId, userId: row.userId, username: row.username, role: row.role, status: row.status };
    },
  };
}
