import crypto from 'node:crypto';
import type { Kysely, Selectable } from 'kysely';
import type { ApiKeysTable, Database, Role, UserStatus } from '../../db/schema.js';
import { AppError, notFound } from '../../errors.js';
import { AuditActions, type Actor, type AuditLog } from '../audit/audit-log.js';
import { formatScopes, parseScopes, type ApiKeyScope } from './scopes.js';
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
  scopes: ApiKeyScope[];
}

export interface CreatedApiKey {
  /** The full key. Shown once; only its hash is stored. */
  key: string;
  apiKey: ApiKeyView;
}

export interface NewApiKey {
  name: string;
  /** Days until the key stops working; absent means API_KEY_DEFAULT_EXPIRY_DAYS. */
  expiresInDays?: number | undefined;
  /** What the key may do; absent means `chat` only. `chat` is always included. */
  scopes?: readonly ApiKeyScope[] | undefined;
}

/** Who is making a key, and with what credential: a key can only hand on scopes it holds itself. */
export interface KeyCreator {
  role: Role;
  scopes: readonly ApiKeyScope[];
}

/** The owner of a valid key, as the authenticator needs it. */
export interface ApiKeyOwner {
  apiKeyId: string;
  userId: string;
  username: string;
  role: Role;
  status: UserStatus;
  scopes: ApiKeyScope[];
}

export interface ApiKeysService {
  list(userId: string): Promise<ApiKeyView[]>;
  create(actor: Actor, creator: KeyCreator, input: NewApiKey): Promise<CreatedApiKey>;
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
    scopes: parseScopes(row.scopes),
  };
}

export function generateApiKey(): string {
  return API_KEY_PREFIX + crypto.randomBytes(32).toString('base64url');
}

export interface ApiKeysServiceDeps {
  db: Kysely<Database>;
  audit: AuditLog;
  /** Days a key lasts when its creator names none; 0 = no expiry. */
  defaultExpiryDays?: number | undefined;
}

export function createApiKeysService({ db, audit, defaultExpiryDays = 0 }: ApiKeysServiceDeps): ApiKeysService {
  return {
    async list(userId) {
      const rows = await db.selectFrom('api_keys').selectAll().where('user_id', '=', userId).orderBy('created_at', 'desc').orderBy('id', 'desc').execute();
      return rows.map(toView);
    },

    async create(actor, creator, input) {
      const scopes = parseScopes((input.scopes ?? ['chat']).join(' '));
      if (scopes.includes('admin') && creator.role !== 'admin') throw new AppError('FORBIDDEN', 'Only an admin can give a key the admin scope');
      const beyond = scopes.filter((s) => !creator.scopes.includes(s));
      if (beyond.length > 0) throw new AppError('INSUFFICIENT_SCOPE', `A key can only hand on scopes it holds itself; this one lacks ${beyond.join(', ')}`);
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
      const expiryDays = input.expiresInDays ?? defaultExpiryDays;
      const key = generateApiKey();
      const row = await db
        .insertInto('api_keys')
        .values({
          user_id: actor.id,
          name: input.name,
          prefix: key.slice(0, DISPLAY_PREFIX_LENGTH),
          key_hash: sha256(key),
          expires_at: expiryDays > 0 ? new Date(now.getTime() + expiryDays * 86_400_000) : null,
          scopes: formatScopes(scopes),
        })
        .returningAll()
        .executeTakeFirstOrThrow();
      await audit.record({ actorId: actor.id, actorUsername: actor.username, ip: actor.ip, action: AuditActions.apiKeyCreate, targetType: 'api_key', targetId: row.id, detail: { name: row.name, prefix: row.prefix, scopes: parseScopes(row.scopes) } });
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
        .select(['api_keys.id as apiKeyId', 'api_keys.last_used_at as lastUsedAt', 'api_keys.scopes', 'users.id as userId', 'users.username', 'users.role', 'users.status'])
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
      return { apiKeyId: row.apiKeyId, userId: row.userId, username: row.username, role: row.role, status: row.status, scopes: parseScopes(row.scopes) };
    },
  };
}
