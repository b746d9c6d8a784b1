import crypto from 'node:crypto';
import fs from 'node:fs/promises';
import path from 'node:path';
import { sql, type Kysely, type Transaction } from 'kysely';
import type { Logger } from 'pino';
import type { Config } from '../../config.js';
import type { Database, Role, UserRow, UserStatus } from '../../db/schema.js';
import { AppError, notFound } from '../../errors.js';
import { Channels, type SharedState } from '../../shared-state/shared-state.js';
import { AuditActions, type Actor, type AuditLog } from '../audit/audit-log.js';
import { revokeCredentials } from '../auth/credential-revocation.js';
import { generatePassword, hashPassword } from '../auth/password.js';
import { assertPasswordPolicy } from '../auth/password-policy.js';
import { tokenUsageOf, type TokenUsage } from '../quotas/token-usage.js';

/** Letters, digits and `_ . @ -`, 3 to 64 characters (the same rule as ADMIN_USERNAME). */
export const USERNAME_PATTERN = '^[A-Za-z0-9_.@-]{3,64}$';
const USERNAME_RE = new RegExp(USERNAME_PATTERN);

/** A user as admins and the user themself see it: never the password hash. */
export interface UserView {
  id: string;
  username: string;
  displayName: string | null;
  email: string | null;
  role: Role;
  status: UserStatus;
  /** Tokens per UTC day; null means the platform default (DAILY_TOKEN_QUOTA). */
  dailyTokenQuota: number | null;
  /** Tokens per UTC calendar month; null means the platform default (MONTHLY_TOKEN_QUOTA). */
  monthlyTokenQuota: number | null;
  /** The day's and month's budgets with what is used of them (get and list only). */
  tokenUsage?: TokenUsage;
  lockedUntil: string | null;
  createdAt: string;
  updatedAt: string;
  lastLoginAt: string | null;
}

export interface UserListQuery {
  /** Matches username or display name, case-insensitive substring. */
  q?: string | undefined;
  role?: Role | undefined;
  status?: UserStatus | undefined;
  page: number;
  pageSize: number;
}

export interface UserPage {
  items: UserView[];
  total: number;
  page: number;
  pageSize: number;
}

export interface NewAccount {
  username: string;
  password: string;
  displayName?: string | null | undefined;
  email?: string | null | undefined;
  role?: Role | undefined;
  dailyTokenQuota?: number | null | undefined;
  monthlyTokenQuota?: number | null | undefined;
}

export interface UserChanges {
  displayName?: string | null | undefined;
  email?: string | null | undefined;
  role?: Role | undefined;
  dailyTokenQuota?: number | null | undefined;
  monthlyTokenQuota?: number | null | undefined;
}

export interface UsersService {
  /** Creates the configured first admin when no admin exists; safe when several instances start at once. */
  ensureFirstAdmin(): Promise<void>;
  list(query: UserListQuery): Promise<UserPage>;
  get(id: string): Promise<UserView>;
  /** Admin-created account (audited as user.create). */
  create(actor: Actor, input: NewAccount): Promise<UserView>;
  /** Creates an account without auditing it; the caller records why (self-registration). */
  createAccount(input: NewAccount): Promise<UserView>;
  update(actor: Actor, id: string, changes: UserChanges): Promise<UserView>;
  setRole(actor: Actor, id: string, role: Role): Promise<UserView>;
  /** Disables the account, signs it out everywhere and tells every instance. */
  disable(actor: Actor, id: string): Promise<UserView>;
  enable(actor: Actor, id: string): Promise<UserView>;
  /**
   * Sets a password the admin chose; signs the user out everywhere (refresh tokens and,
   * on every instance at once, access tokens) and, unless `revokeApiKeys` is false, revokes their API keys.
   */
  resetPassword(actor: Actor, id: string, password: string, options?: { revokeApiKeys?: boolean | undefined }): Promise<UserView>;
  /** Listens for changes to a user's status, role or credentials made by this instance. */
  onChanged(listener: (userId: string) => void): () => void;
}

export interface UsersServiceDeps {
  db: Kysely<Database>;
  state: SharedState;
  audit: AuditLog;
  config: Pick<Config, 'adminUsername' | 'adminPassword' | 'dataDir' | 'dailyTokenQuota' | 'monthlyTokenQuota'>;
  logger: Logger;
}

export const INITIAL_ADMIN_PASSWORD_FILE = 'initial-admin-password';
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

function iso(value: Date | string | null): string | null {
  return value === null ? null : new Date(value).toISOString();
}

export function toUserView(row: UserRow): UserView {
  return {
    id: row.id,
    username: row.username,
    displayName: row.display_name,
    email: row.email,
    role: row.role,
    status: row.status,
    dailyTokenQuota: row.daily_token_quota,
    monthlyTokenQuota: row.monthly_token_quota,
    // Sign-in is delayed, never locked (GET /api/admin/users/:id/sign-in-delay); kept for API compatibility.
    lockedUntil: null,
    createdAt: new Date(row.created_at).toISOString(),
    updatedAt: new Date(row.updated_at).toISOString(),
    lastLoginAt: iso(row.last_login_at),
  };
}

/** PostgreSQL unique_violation, from pg and PGlite alike. */
export function isUniqueViolation(err: unknown): boolean {
  return typeof err === 'object' && err !== null && (err as { code?: unknown }).code === '23505';
}

function escapeLike(text: string): string {
  return text.replace(/[\\%_]/g, (c) => `\\${c}`);
}

function assertUsername(username: string): void {
  if (!USERNAME_RE.test(username)) {
    throw new AppError('VALIDATION_FAILED', 'The username must be 3-64 characters of letters, digits, _ . @ -');
  }
}

export function createUsersService({ db, state, audit, config, logger }: UsersServiceDeps): UsersService {
  const listeners = new Set<(userId: string) => void>();

  async function announce(userId: string): Promise<void> {
    for (const listener of listeners) listener(userId);
    try {
      await state.publish(Channels.usersChanged, JSON.stringify({ userId }));
    } catch (err) {
      // The change is in the database; other instances still see it when their short cache expires.
      logger.warn({ err: err instanceof Error ? err.message : String(err), userId }, 'could not publish users-changed');
    }
  }

  async function findRow(id: string, trx: Kysely<Database> = db): Promise<UserRow> {
    const row = UUID.test(id) ? await trx.selectFrom('users').selectAll().where('id', '=', id).executeTakeFirst() : undefined;
    if (!row) throw notFound('USER_NOT_FOUND', 'The user');
    return row;
  }

  /** Locks the active admins so two admins cannot demote each other at once, then refuses to lose the last one. */
  async function guardLastAdmin(trx: Transaction<Database>, userId: string): Promise<void> {
    const admins = await trx.selectFrom('users').select('id').where('role', '=', 'admin').where('status', '=', 'active').forUpdate().execute();
    if (admins.length <= 1 && admins.some((a) => a.id === userId)) {
      throw new AppError('LAST_ADMIN', 'This is the last active admin: make another user an admin first');
    }
  }

  async function insertAccount(input: NewAccount): Promise<UserRow> {
    assertUsername(input.username);
    assertPasswordPolicy(input.password, { username: input.username, role: input.role ?? 'user' });
    const passwordHash = await hashPassword(input.password);
    try {
      return await db
        .insertInto('users')
        .values({
          username: input.username,
          display_name: input.displayName ?? null,
          email: input.email ?? null,
          password_hash: passwordHash,
          role: input.role ?? 'user',
          daily_token_quota: input.dailyTokenQuota ?? null,
          monthly_token_quota: input.monthlyTokenQuota ?? null,
          updated_at: new Date(),
          password_changed_at: new Date(),
        })
        .returningAll()
        .executeTakeFirstOrThrow();
    } catch (err) {
      if (isUniqueViolation(err)) throw new AppError('USERNAME_TAKEN', `The username "${input.username}" is already taken`);
      throw err;
    }
  }

  /** Views with their token usage: one shared-state round trip for the whole list. */
  async function withUsage(views: UserView[]): Promise<UserView[]> {
    const usage = await tokenUsageOf(state, config, views.map((v) => ({ id: v.id, own: { daily: v.dailyTokenQuota, monthly: v.monthlyTokenQuota } })));
    return views.map((v) => ({ ...v, tokenUsage: usage.get(v.id) }));
  }

  async function writeSecretFile(file: string, content: string): Promise<void> {
    await fs.mkdir(path.dirname(file), { recursive: true });
    await fs.writeFile(file, content, { mode: 0o600, flag: 'wx' });
  }

  const service: UsersService = {
    async ensureFirstAdmin() {
      const anyAdmin = await db.selectFrom('users').select('id').where('role', '=', 'admin').limit(1).executeTakeFirst();
      if (anyAdmin) return;
      const username = config.adminUsername ?? 'admin';
      const generated = config.adminPassword === undefined;
      const password = config.adminPassword ?? generatePassword();
      // Config refuses a weak ADMIN_PASSWORD at start already; this also holds the generated one to the policy.
      assertPasswordPolicy(password, { username, role: 'admin' });
      // A generated password goes to a file of this instance's own first, so it is never lost
      // between the insert and the write; only the instance whose insert wins keeps it.
      const finalFile = path.join(config.dataDir, INITIAL_ADMIN_PASSWORD_FILE);
      const pendingFile = `${finalFile}.${crypto.randomBytes(6).toString('hex')}.pending`;
      if (generated) await writeSecretFile(pendingFile, `${password}\n`);
      let created: UserRow | undefined;
      try {
        created = await db
          .insertInto('users')
          .values({ username, password_hash: await hashPassword(password), role: 'admin', updated_at: new Date(), password_changed_at: new Date() })
          .returningAll()
          .executeTakeFirstOrThrow();
      } catch (err) {
        if (generated) await fs.rm(pendingFile, { force: true });
        if (!isUniqueViolation(err)) throw err;
        // Another instance created it at the same moment, or a non-admin holds the name.
        const holder = await db.selectFrom('users').select('role').where(sql<string>`lower(username)`, '=', username.toLowerCase()).executeTakeFirst();
        if (holder?.role !== 'admin') logger.warn({ username }, 'no admin exists and the ADMIN_USERNAME is taken by a non-admin user; set ADMIN_USERNAME to a free name');
        return;
      }
      if (generated) {
        try {
          await fs.rename(pendingFile, finalFile);
          await fs.chmod(finalFile, 0o600);
          logger.warn({ username, file: finalFile }, 'created the first admin with a generated password; read it from the file, sign in and change it, then delete the file');
        } catch (err) {
          logger.error({ err: err instanceof Error ? err.message : String(err), username, file: pendingFile }, 'created the first admin; its generated password is in the pending file');
        }
      } else {
        logger.info({ username }, 'created the first admin from ADMIN_USERNAME / ADMIN_PASSWORD');
      }
      await audit.record({ action: AuditActions.firstAdmin, targetType: 'user', targetId: created.id, detail: { username, passwordSource: generated ? 'generated file' : 'ADMIN_PASSWORD' } });
    },

    async list(query) {
      let base = db.selectFrom('users');
      if (query.q) {
        const pattern = `%${escapeLike(query.q)}%`;
        base = base.where((eb) => eb.or([eb('username', 'ilike', pattern), eb('display_name', 'ilike', pattern)]));
      }
      if (query.role) base = base.where('role', '=', query.role);
      if (query.status) base = base.where('status', '=', query.status);
      const [rows, count] = await Promise.all([
        base
          .selectAll()
          .orderBy('created_at', 'desc')
          .orderBy('id', 'desc')
          .limit(query.pageSize)
          .offset((query.page - 1) * query.pageSize)
          .execute(),
        base.select((eb) => eb.fn.countAll<number>().as('n')).executeTakeFirstOrThrow(),
      ]);
      return { items: await withUsage(rows.map(toUserView)), total: Number(count.n), page: query.page, pageSize: query.pageSize };
    },

    async get(id) {
      const [view] = await withUsage([toUserView(await findRow(id))]);
      if (!view) throw notFound('USER_NOT_FOUND', 'The user');
      return view;
    },

    async create(actor, input) {
      const row = await insertAccount(input);
      // Every instance holds the users with budgets of their own in memory (quotas/user-budgets.ts).
      if (row.daily_token_quota !== null || row.monthly_token_quota !== null) await announce(row.id);
      await audit.record({
        actorId: actor.id,
        actorUsername: actor.username,
        ip: actor.ip,
        action: AuditActions.userCreate,
        targetType: 'user',
        targetId: row.id,
        detail: { username: row.username, role: row.role },
      });
      return toUserView(row);
    },

    async createAccount(input) {
      return toUserView(await insertAccount(input));
    },

    async update(actor, id, changes) {
      const before = await findRow(id);
      const row = await db.transaction().execute(async (trx) => {
        if (changes.role === 'user' && before.role === 'admin') await guardLastAdmin(trx, id);
        const values: Record<string, unknown> = {};
        if (changes.displayName !== undefined) values.display_name = changes.displayName;
        if (changes.email !== undefined) values.email = changes.email;
        if (changes.role !== undefined) values.role = changes.role;
        if (changes.dailyTokenQuota !== undefined) values.daily_token_quota = changes.dailyTokenQuota;
        if (changes.monthlyTokenQuota !== undefined) values.monthly_token_quota = changes.monthlyTokenQuota;
        return trx
          .updateTable('users')
          .set({ ...values, updated_at: new Date() })
          .where('id', '=', id)
          .returningAll()
          .executeTakeFirst();
      });
      if (!row) throw notFound('USER_NOT_FOUND', 'The user');
      const changed = Object.keys(changes).filter((k) => changes[k as keyof UserChanges] !== undefined);
      await audit.record({
        actorId: actor.id,
        actorUsername: actor.username,
        ip: actor.ip,
        action: changes.role !== undefined && changes.role !== before.role ? AuditActions.userRole : AuditActions.userUpdate,
        targetType: 'user',
        targetId: id,
        detail: { username: row.username, changed, ...(changes.role !== undefined ? { fromRole: before.role, toRole: row.role } : {}) },
      });
      const budgetChanged = before.daily_token_quota !== row.daily_token_quota || before.monthly_token_quota !== row.monthly_token_quota;
      if (before.role !== row.role || budgetChanged) await announce(id);
      return toUserView(row);
    },

    async setRole(actor, id, role) {
      return service.update(actor, id, { role });
    },

    async disable(actor, id) {
      await findRow(id);
      const row = await db.transaction().execute(async (trx) => {
        await guardLastAdmin(trx, id);
        const updated = await trx
          .updateTable('users')
          .set({ status: 'disabled', updated_at: new Date() })
          .where('id', '=', id)
          .returningAll()
          .executeTakeFirst();
        await trx.updateTable('refresh_tokens').set({ revoked_at: new Date() }).where('user_id', '=', id).where('revoked_at', 'is', null).execute();
        return updated;
      });
      if (!row) throw notFound('USER_NOT_FOUND', 'The user');
      await announce(id);
      await audit.record({ actorId: actor.id, actorUsername: actor.username, ip: actor.ip, action: AuditActions.userDisable, targetType: 'user', targetId: id, detail: { username: row.username } });
      return toUserView(row);
    },

    async enable(actor, id) {
      await findRow(id);
      const row = await db.updateTable('users').set({ status: 'active', updated_at: new Date() }).where('id', '=', id).returningAll().executeTakeFirst();
      if (!row) throw notFound('USER_NOT_FOUND', 'The user');
      await announce(id);
      await audit.record({ actorId: actor.id, actorUsername: actor.username, ip: actor.ip, action: AuditActions.userEnable, targetType: 'user', targetId: id, detail: { username: row.username } });
      return toUserView(row);
    },

    async resetPassword(actor, id, password, options = {}) {
      const before = await findRow(id);
      assertPasswordPolicy(password, before);
      const passwordHash = await hashPassword(password);
      const at = new Date();
      const revokeApiKeys = options.revokeApiKeys ?? true;
      const { row, apiKeysRevoked } = await db.transaction().execute(async (trx) => {
        const updated = await trx
          .updateTable('users')
          .set({ password_hash: passwordHash, password_changed_at: at, failed_logins: 0, locked_until: null, updated_at: at })
          .where('id', '=', id)
          .returningAll()
          .executeTakeFirst();
        if (!updated) return { row: undefined, apiKeysRevoked: 0 };
        return { row: updated, ...(await revokeCredentials(trx, id, { at, apiKeys: revokeApiKeys })) };
      });
      if (!row) throw notFound('USER_NOT_FOUND', 'The user');
      await announce(id);
      await audit.record({ actorId: actor.id, actorUsername: actor.username, ip: actor.ip, action: AuditActions.userResetPassword, targetType: 'user', targetId: id, detail: { username: row.username, accessTokensRevoked: true, apiKeysRevoked } });
      return toUserView(row);
    },

    onChanged(listener) {
      listeners.add(listener);
      return () => listeners.delete(listener);
    },
  };
  return service;
}
