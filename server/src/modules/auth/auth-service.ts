import crypto from 'node:crypto';
import { sql, type Kysely } from 'kysely';
import type { Logger } from 'pino';
import type { Config } from '../../config.js';
import type { Database, Role, UserRow, UserStatus } from '../../db/schema.js';
import { AppError } from '../../errors.js';
import type { Authenticator, Principal } from '../../plugins/authenticate.js';
import type { Secrets } from '../../secrets.js';
import { Channels, type SharedState, type Unsubscribe } from '../../shared-state/shared-state.js';
import { AuditActions, type AuditLog } from '../audit/audit-log.js';
import type { UsersService, UserView } from '../users/users-service.js';
import { API_KEY_PREFIX, createApiKeysService, type ApiKeysService } from './api-keys-service.js';
import { revokeCredentials } from './credential-revocation.js';
import { dummyPasswordHash, hashPassword, needsRehash, verifyPassword } from './password.js';
import { assertPasswordPolicy } from './password-policy.js';
import { ALL_SCOPES } from './scopes.js';
import { createSignInThrottle, type SignInThrottle } from './sign-in-throttle.js';
import { createAccessTokens, newRefreshToken, sha256 } from './tokens.js';

/** How long an instance trusts its cached view of a user's status and role. */
export const USER_STATUS_TTL_MS = 5_000;
const USER_STATUS_CACHE_MAX = 50_000;
const RATE_WINDOW_SECONDS = 60;

/** Where a request came from, for rate limits, refresh-token records and the audit log. */
export interface ClientInfo {
  ip?: string | undefined;
  userAgent?: string | undefined;
}

export interface SessionUser {
  id: string;
  username: string;
  displayName: string | null;
  role: Role;
}

/** What a sign-in (login, refresh, registration) hands back. */
export interface Session {
  accessToken: string;
  /** Seconds until the access token expires. */
  expiresIn: number;
  /** Opaque; the routes put it in an httpOnly cookie. */
  refreshToken: string;
  refreshExpiresAt: Date;
  user: SessionUser;
}

export interface Registration {
  username: string;
  password: string;
  displayName?: string | null | undefined;
  email?: string | null | undefined;
}

export interface PasswordChange {
  currentPassword: string;
  newPassword: string;
  /** Also revoke the user's personal API keys. */
  revokeApiKeys: boolean;
}

/** After a password change: this session's new access token (the old one is revoked like every other). */
export interface PasswordChanged {
  accessToken: string;
  expiresIn: number;
  apiKeysRevoked: number;
}

export interface AuthService extends Authenticator {
  login(credentials: { username: string; password: string }, client: ClientInfo): Promise<Session>;
  /** Rotates a refresh token: each one works once; a second use revokes its whole family. */
  refresh(refreshToken: string, client: ClientInfo): Promise<Session>;
  /** Revokes the refresh token's family (this sign-in on every tab). Unknown tokens are ignored. */
  logout(refreshToken: string | undefined, client: ClientInfo): Promise<void>;
  profile(userId: string): Promise<UserView>;
  /**
   * Needs the current password; signs out every other session of the user, revokes every access token
   * issued before it (on every instance) and, if asked, the user's API keys.
   */
  changePassword(principal: Principal, change: PasswordChange, currentRefreshToken: string | undefined, client: ClientInfo): Promise<PasswordChanged>;
  /** Self-service sign-up, only with OPEN_REGISTRATION. */
  register(input: Registration, client: ClientInfo): Promise<Session>;
  close(): Promise<void>;
}

export interface AuthServiceDeps {
  db: Kysely<Database>;
  state: SharedState;
  audit: AuditLog;
  users: UsersService;
  config: Pick<Config, 'accessTokenTtlSeconds' | 'refreshTokenTtlSeconds' | 'loginRateLimitPerMinute' | 'openRegistration' | 'loginFailuresPerAccountPerHour' | 'loginBackoffMaxSeconds'> &
    Partial<Pick<Config, 'accessTokenMaxAgeSeconds' | 'authCacheTtlMs'>>;
  secrets: Pick<Secrets, 'jwtSecret' | 'jwtSecretPrevious' | 'jwtSecretPreviousUntil'>;
  logger: Logger;
  /** Verifies personal API keys; built from `db` and `audit` when absent. */
  apiKeys?: ApiKeysService;
  /** How long a user's status stays cached (default: config.authCacheTtlMs, else USER_STATUS_TTL_MS). */
  statusCacheTtlMs?: number;
  /** Progressive sign-in delays; built from `state` and `config` when absent. */
  signInThrottle?: SignInThrottle;
}

interface UserStatusEntry {
  username: string;
  role: Role;
  status: UserStatus;
  /** Access tokens issued before this (ms) are revoked; 0 when none is. */
  validAfterMs: number;
}

/**
 * The one answer to every refused sign-in before the password is known to be right: an unknown
 * name, a wrong password and a delayed attempt are told apart by nothing (status, body or timing).
 */
const INVALID_CREDENTIALS = 'Wrong username or password, or too many failed attempts: check them and try again later';

function invalidCredentials(retryAfterSeconds: number): AppError {
  return new AppError('INVALID_CREDENTIALS', INVALID_CREDENTIALS, undefined, retryAfterSeconds > 0 ? { 'retry-after': String(retryAfterSeconds) } : undefined);
}

function clip(value: string | undefined, max: number): string | null {
  return value === undefined ? null : value.slice(0, max);
}

export function createAuthService(deps: AuthServiceDeps): AuthService {
  const { db, state, audit, users, config, logger } = deps;
  const tokens = createAccessTokens({
    keys: { current: deps.secrets.jwtSecret, previous: deps.secrets.jwtSecretPrevious, previousUntil: deps.secrets.jwtSecretPreviousUntil },
    ttlSeconds: config.accessTokenTtlSeconds,
    maxAgeSeconds: config.accessTokenMaxAgeSeconds,
  });
  const apiKeys = deps.apiKeys ?? createApiKeysService({ db, audit });
  const statusTtlMs = deps.statusCacheTtlMs ?? config.authCacheTtlMs ?? USER_STATUS_TTL_MS;
  const throttle = deps.signInThrottle ?? createSignInThrottle({ state, config, logger });

  // Status cache: the hot path authenticates every request, so a user's status, role and token
  // "valid after" time are read at most once per TTL per instance; changes (disable, role, password
  // change or reset) evict entries here and, through users-changed, on every other instance at once.
  // A missed notice (Redis down) is bounded by the TTL: the next read after it comes from the database.
  const statusCache = new Map<string, { value: Promise<UserStatusEntry | null>; expiresAt: number }>();

  function evict(userId: string | undefined): void {
    if (userId === undefined) statusCache.clear();
    else statusCache.delete(userId);
  }

  function userStatus(userId: string): Promise<UserStatusEntry | null> {
    const now = Date.now();
    const cached = statusCache.get(userId);
    if (cached && cached.expiresAt > now) return cached.value;
    const value = db
      .selectFrom('users')
      .select(['username', 'role', 'status', 'tokens_valid_after'])
      .where('id', '=', userId)
      .executeTakeFirst()
      .then((row) =>
        row ? { username: row.username, role: row.role, status: row.status, validAfterMs: row.tokens_valid_after ? new Date(row.tokens_valid_after).getTime() : 0 } : null,
      );
    const entry = { value, expiresAt: now + statusTtlMs };
    statusCache.delete(userId);
    statusCache.set(userId, entry);
    if (statusCache.size > USER_STATUS_CACHE_MAX) {
      const oldest = statusCache.keys().next();
      if (!oldest.done) statusCache.delete(oldest.value);
    }
    value.catch(() => {
      if (statusCache.get(userId) === entry) statusCache.delete(userId);
    });
    return value;
  }

  const stopLocal = users.onChanged((userId) => evict(userId));
  let unsubscribe: Unsubscribe | undefined;
  const subscribed = state
    .subscribe(Channels.usersChanged, (message) => {
      try {
        const parsed = JSON.parse(message) as { userId?: unknown };
        evict(typeof parsed.userId === 'string' ? parsed.userId : undefined);
      } catch {
        evict(undefined);
      }
    })
    .then((stop) => {
      unsubscribe = stop;
    })
    .catch((err: unknown) => {
      // Without the channel, changes made elsewhere still land once the short cache expires.
      logger.warn({ err: err instanceof Error ? err.message : String(err) }, 'could not subscribe to users-changed');
    });

  /** Drops the user's cached status here and tells every other instance to do the same. */
  async function announceChanged(userId: string): Promise<void> {
    evict(userId);
    try {
      await state.publish(Channels.usersChanged, JSON.stringify({ userId }));
    } catch (err) {
      // The change is in the database; other instances see it when their cached entry expires (AUTH_CACHE_TTL_MS).
      logger.warn({ err: err instanceof Error ? err.message : String(err), userId }, 'could not publish users-changed');
    }
  }

  function assertActive<T extends Pick<UserStatusEntry, 'status'>>(entry: T | null): asserts entry is T {
    if (!entry) throw new AppError('TOKEN_INVALID', 'This account no longer exists');
    if (entry.status !== 'active') throw new AppError('ACCOUNT_DISABLED', 'This account is disabled: ask an administrator');
  }

  async function rateLimit(kind: 'login' | 'register', keys: string[], username: string | undefined, client: ClientInfo): Promise<void> {
    const limit = config.loginRateLimitPerMinute;
    if (limit <= 0) return;
    let worst: number;
    try {
      const counts = await Promise.all(keys.map((key) => state.hit(`rl:${kind}:${key}`, RATE_WINDOW_SECONDS)));
      worst = Math.max(...counts);
    } catch (err) {
      // Fail open: the sign-in throttle counts on this instance while Redis is away.
      logger.warn({ err: err instanceof Error ? err.message : String(err) }, 'rate-limit counter unavailable');
      return;
    }
    if (worst <= limit) return;
    if (worst === limit + 1) {
      // Once per window, so a flood of attempts does not flood the audit log.
      await audit.record({ action: AuditActions.loginRateLimited, actorUsername: username, ip: client.ip, success: false, detail: { kind } });
    }
    throw new AppError('RATE_LIMITED', 'Too many attempts: wait a minute and try again', undefined, { 'retry-after': String(RATE_WINDOW_SECONDS) });
  }

  async function findByUsername(username: string): Promise<UserRow | undefined> {
    return db.selectFrom('users').selectAll().where(sql<string>`lower(username)`, '=', username.toLowerCase()).executeTakeFirst();
  }

  async function issueSession(user: UserRow, familyId: string, client: ClientInfo, executor: Kysely<Database> = db): Promise<Session> {
    const refreshToken = newRefreshToken();
    const refreshExpiresAt = new Date(Date.now() + config.refreshTokenTtlSeconds * 1000);
    await executor
      .insertInto('refresh_tokens')
      .values({
        user_id: user.id,
        family_id: familyId,
        token_hash: sha256(refreshToken),
        expires_at: refreshExpiresAt,
        user_agent: clip(client.userAgent, 300),
        ip: clip(client.ip, 100),
      })
      .execute();
    const signed = await tokens.sign({ sub: user.id, username: user.username, role: user.role });
    return {
      accessToken: signed.token,
      expiresIn: signed.expiresIn,
      refreshToken,
      refreshExpiresAt,
      user: { id: user.id, username: user.username, displayName: user.display_name, role: user.role },
    };
  }

  async function revokeFamily(familyId: string): Promise<void> {
    await db.updateTable('refresh_tokens').set({ revoked_at: new Date() }).where('family_id', '=', familyId).where('revoked_at', 'is', null).execute();
  }

  return {
    async authenticate(bearer) {
      if (bearer.startsWith(API_KEY_PREFIX)) {
        const owner = await apiKeys.verify(bearer);
        if (!owner) throw new AppError('API_KEY_INVALID', 'The API key is unknown, revoked or expired');
        assertActive(owner);
        return { userId: owner.userId, username: owner.username, role: owner.role, via: 'api-key', scopes: owner.scopes };
      }
      const claims = await tokens.verify(bearer);
      const entry = await userStatus(claims.sub);
      assertActive(entry);
      // Issued before the account's last password change or reset: a stolen token dies with the password.
      if (claims.issuedAtMs < entry.validAfterMs) throw new AppError('TOKEN_REVOKED', 'This access token was revoked (the password changed): sign in again');
      // Role and name come from the account, not the token, so a demotion applies within moments.
      return { userId: claims.sub, username: entry.username, role: entry.role, via: 'token', scopes: ALL_SCOPES };
    },

    async login({ username, password }, client) {
      const name = username.trim();
      // Per address only: a per-name limit would let anyone keep another person from signing in.
      await rateLimit('login', [`ip:${client.ip ?? 'unknown'}`], name, client);
      const attempt = await throttle.begin(name, client.ip);
      const user = await findByUsername(name);
      // The hash runs on every path, on a dummy for unknown names and for delayed attempts too, so the
      // answer takes as long whether the name exists, the password is wrong or the attempt is delayed.
      const passwordOk = await verifyPassword(user?.password_hash ?? (await dummyPasswordHash()), password);
      const actor = user ? { actorId: user.id, actorUsername: user.username, targetType: 'user', targetId: user.id } : { actorUsername: name };
      if (attempt.refusedForSeconds > 0) {
        // Refused whatever the password: a right one must not be told apart while the delay runs.
        await attempt.release();
        await audit.record({ ...actor, ip: client.ip, action: AuditActions.login, success: false, detail: { reason: 'delayed', by: attempt.reason, seconds: attempt.refusedForSeconds } });
        throw invalidCredentials(attempt.refusedForSeconds);
      }
      if (!user || !passwordOk) {
        const retryAfter = await attempt.failed();
        await audit.record({ ...actor, ip: client.ip, action: AuditActions.login, success: false, detail: { reason: user ? 'wrong_password' : 'unknown_user' } });
        throw invalidCredentials(retryAfter);
      }
      await attempt.succeeded();
      const userActor = { ...actor, ip: client.ip };
      // Only someone who knows the password learns that the account is disabled.
      if (user.status !== 'active') {
        await audit.record({ ...userActor, action: AuditActions.login, success: false, detail: { reason: 'disabled' } });
        throw new AppError('ACCOUNT_DISABLED', 'This account is disabled: ask an administrator');
      }
      const rehash = needsRehash(user.password_hash) ? await hashPassword(password) : undefined;
      await db
        .updateTable('users')
        .set({ last_login_at: new Date(), ...(rehash ? { password_hash: rehash } : {}) })
        .where('id', '=', user.id)
        .execute();
      const session = await issueSession(user, crypto.randomUUID(), client);
      await audit.record({ ...userActor, action: AuditActions.login, success: true });
      return session;
    },

    async refresh(refreshToken, client) {
      const invalid = () => new AppError('REFRESH_TOKEN_INVALID', 'The session has ended: sign in again');
      if (refreshToken.length === 0 || refreshToken.length > 200) throw invalid();
      const row = await db.selectFrom('refresh_tokens').selectAll().where('token_hash', '=', sha256(refreshToken)).executeTakeFirst();
      if (!row) throw invalid();
      const reused = async () => {
        await revokeFamily(row.family_id);
        evict(row.user_id);
        await audit.record({ actorId: row.user_id, ip: client.ip, action: AuditActions.refreshReuse, success: false, targetType: 'user', targetId: row.user_id, detail: { familyId: row.family_id } });
        return new AppError('REFRESH_TOKEN_REUSED', 'This session was used twice, so it has been ended everywhere: sign in again');
      };
      if (row.rotated_at) throw await reused();
      if (row.revoked_at || new Date(row.expires_at).getTime() <= Date.now()) throw invalid();
      const user = await db.selectFrom('users').selectAll().where('id', '=', row.user_id).executeTakeFirst();
      if (!user) throw invalid();
      if (user.status !== 'active') throw new AppError('ACCOUNT_DISABLED', 'This account is disabled: ask an administrator');
      // Claim the token and store its successor in one transaction: a concurrent second use waits
      // on the row lock, then finds the token rotated and revokes the family including the successor.
      const session = await db.transaction().execute(async (trx) => {
        const claimed = await trx
          .updateTable('refresh_tokens')
          .set({ rotated_at: new Date() })
          .where('id', '=', row.id)
          .where('rotated_at', 'is', null)
          .where('revoked_at', 'is', null)
          .returning('id')
          .executeTakeFirst();
        return claimed ? issueSession(user, row.family_id, client, trx) : undefined;
      });
      if (session) return session;
      const now = await db.selectFrom('refresh_tokens').select(['rotated_at']).where('id', '=', row.id).executeTakeFirst();
      if (now?.rotated_at) throw await reused();
      throw invalid();
    },

    async logout(refreshToken, client) {
      if (!refreshToken || refreshToken.length > 200) return;
      const row = await db.selectFrom('refresh_tokens').select(['family_id', 'user_id']).where('token_hash', '=', sha256(refreshToken)).executeTakeFirst();
      if (!row) return;
      await revokeFamily(row.family_id);
      await audit.record({ actorId: row.user_id, ip: client.ip, action: AuditActions.logout, targetType: 'user', targetId: row.user_id });
    },

    async profile(userId) {
      return users.get(userId);
    },

    async changePassword(principal, change, currentRefreshToken, client) {
      const user = await db.selectFrom('users').selectAll().where('id', '=', principal.userId).executeTakeFirst();
      if (!user) throw new AppError('TOKEN_INVALID', 'This account no longer exists');
      const actor = { actorId: user.id, actorUsername: user.username, ip: client.ip, targetType: 'user', targetId: user.id };
      // Throttled like a sign-in, so a stolen access token cannot be used to guess the password.
      const attempt = await throttle.begin(user.username, client.ip);
      const currentOk = await verifyPassword(user.password_hash, change.currentPassword);
      if (attempt.refusedForSeconds > 0) {
        await attempt.release();
        await audit.record({ ...actor, action: AuditActions.passwordChange, success: false, detail: { reason: 'delayed', by: attempt.reason } });
        throw new AppError('RATE_LIMITED', `Too many wrong passwords: wait ${attempt.refusedForSeconds} s and try again`, undefined, { 'retry-after': String(attempt.refusedForSeconds) });
      }
      if (!currentOk) {
        await attempt.failed();
        await audit.record({ ...actor, action: AuditActions.passwordChange, success: false, detail: { reason: 'wrong_current_password' } });
        throw new AppError('CURRENT_PASSWORD_INCORRECT', 'The current password is wrong');
      }
      await attempt.succeeded();
      assertPasswordPolicy(change.newPassword, user);
      if (change.newPassword === change.currentPassword) throw new AppError('PASSWORD_TOO_WEAK', 'The new password must differ from the current one');
      const passwordHash = await hashPassword(change.newPassword);
      let keepFamily: string | undefined;
      if (currentRefreshToken && currentRefreshToken.length <= 200) {
        const current = await db.selectFrom('refresh_tokens').select(['family_id', 'user_id']).where('token_hash', '=', sha256(currentRefreshToken)).executeTakeFirst();
        if (current?.user_id === user.id) keepFamily = current.family_id;
      }
      const at = new Date();
      const { apiKeysRevoked } = await db.transaction().execute(async (trx) => {
        await trx.updateTable('users').set({ password_hash: passwordHash, password_changed_at: at, updated_at: at }).where('id', '=', user.id).execute();
        return revokeCredentials(trx, user.id, { at, keepFamily, apiKeys: change.revokeApiKeys });
      });
      await announceChanged(user.id);
      await audit.record({ ...actor, action: AuditActions.passwordChange, success: true, detail: { otherSessionsEnded: true, accessTokensRevoked: true, apiKeysRevoked } });
      // Signed after `at`, so it outlives the revocation the old token of this very session fell to.
      const signed = await tokens.sign({ sub: user.id, username: user.username, role: user.role });
      return { accessToken: signed.token, expiresIn: signed.expiresIn, apiKeysRevoked };
    },

    async register(input, client) {
      if (!config.openRegistration) throw new AppError('REGISTRATION_CLOSED', 'Registration is closed: ask an administrator for an account');
      await rateLimit('register', [`ip:${client.ip ?? 'unknown'}`], input.username, client);
      const view = await users.createAccount({ username: input.username.trim(), password: input.password, displayName: input.displayName, email: input.email, role: 'user' });
      const user = await db.selectFrom('users').selectAll().where('id', '=', view.id).executeTakeFirstOrThrow();
      await audit.record({ actorId: user.id, actorUsername: user.username, ip: client.ip, action: AuditActions.register, targetType: 'user', targetId: user.id });
      return issueSession(user, crypto.randomUUID(), client);
    },

    async close() {
      stopLocal();
      await subscribed;
      await unsubscribe?.();
      statusCache.clear();
    },
  };
}
