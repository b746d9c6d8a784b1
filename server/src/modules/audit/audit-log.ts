import { sql, type Kysely } from 'kysely';
import type { Logger } from 'pino';
import type { AuditLogRow, Database } from '../../db/schema.js';
import { appendEntry } from './audit-chain.js';

/** Who did something, as recorded in the audit log. */
export interface Actor {
  id: string;
  username: string;
  /** Client address as seen by the server (after trust-proxy). */
  ip?: string | undefined;
}

export interface AuditEntryInput {
  actorId?: string | null | undefined;
  actorUsername?: string | null | undefined;
  action: string;
  targetType?: string | null | undefined;
  targetId?: string | null | undefined;
  /** Defaults to true. */
  success?: boolean | undefined;
  ip?: string | null | undefined;
  /** Context for people reading the log. Keys that look like secrets are dropped before storing. */
  detail?: Record<string, unknown> | null | undefined;
}

export interface AuditEntry {
  id: number;
  at: string;
  actorId: string | null;
  actorUsername: string | null;
  action: string;
  targetType: string | null;
  targetId: string | null;
  success: boolean;
  ip: string | null;
  detail: Record<string, unknown> | null;
}

export interface AuditFilter {
  action?: string | undefined;
  /** Matches the actor's id (when a UUID) or username (case-insensitive). */
  actor?: string | undefined;
  actorId?: string | undefined;
  from?: Date | undefined;
  to?: Date | undefined;
  limit: number;
  /** Cursor: only entries with an id below this one. */
  before?: number | undefined;
}

export interface AuditPage {
  entries: AuditEntry[];
  /** Pass as `before` for the next (older) page; null when this is the last one. */
  nextCursor: number | null;
}

export interface AuditLog {
  /** Records one entry. Never throws: a failure is logged and the caller goes on. */
  record(entry: AuditEntryInput): Promise<void>;
  /** Newest first. */
  list(filter: AuditFilter): Promise<AuditPage>;
}

/** The action names this platform records, so readers can filter on them. */
export const AuditActions = {
  login: 'auth.login',
  loginRateLimited: 'auth.login_rate_limited',
  /** No longer written (sign-in is delayed, never locked); older entries carry it. */
  lockout: 'auth.lockout',
  signInDelayClear: 'auth.sign_in_delay_clear',
  logout: 'auth.logout',
  refreshReuse: 'auth.refresh_reuse',
  passwordChange: 'auth.password_change',
  register: 'auth.register',
  apiKeyCreate: 'api_key.create',
  apiKeyRevoke: 'api_key.revoke',
  shareCreate: 'share.create',
  shareRevoke: 'share.revoke',
  userCreate: 'user.create',
  userUpdate: 'user.update',
  userRole: 'user.role',
  userDisable: 'user.disable',
  userEnable: 'user.enable',
  userResetPassword: 'user.reset_password',
  firstAdmin: 'user.first_admin',
} as const;

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
const TEXT_LIMIT = 500;

/** Key names (lower-cased, without separators) whose values are never stored. */
function looksSecret(key: string): boolean {
  const k = key.toLowerCase().replace(/[^a-z0-9]/g, '');
  if (k === 'key' || k === 'apikey' || k === 'fullkey') return true;
  return ['password', 'secret', 'token', 'hash', 'authorization', 'cookie', 'credential'].some((word) => k.includes(word));
}

/** Drops secret-looking keys at any depth and bounds the size of what is kept. */
export function scrubDetail(value: unknown, depth = 0): unknown {
  if (value === null || typeof value === 'boolean' || typeof value === 'number') return value;
  if (typeof value === 'string') return value.length > TEXT_LIMIT ? `${value.slice(0, TEXT_LIMIT)}…` : value;
  if (value instanceof Date) return value.toISOString();
  if (depth >= 4) return '[nested]';
  if (Array.isArray(value)) return value.slice(0, 50).map((v) => scrubDetail(v, depth + 1));
  if (typeof value === 'object') {
    const out: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(value).slice(0, 50)) {
      if (v === undefined) continue;
      out[k] = looksSecret(k) ? '[redacted]' : scrubDetail(v, depth + 1);
    }
    return out;
  }
  return typeof value === 'bigint' ? value.toString() : null;
}

function clip(value: string | null | undefined, max = 200): string | null {
  if (value === null || value === undefined) return null;
  return value.length > max ? value.slice(0, max) : value;
}

function toEntry(row: AuditLogRow): AuditEntry {
  return {
    id: Number(row.id),
    at: new Date(row.at).toISOString(),
    actorId: row.actor_id,
    actorUsername: row.actor_username,
    action: row.action,
    targetType: row.target_type,
    targetId: row.target_id,
    success: row.success,
    ip: row.ip,
    detail: row.detail,
  };
}

export function createAuditLog({ db, logger }: { db: Kysely<Database>; logger: Logger }): AuditLog {
  return {
    async record(entry) {
      try {
        const detail = entry.detail ? (scrubDetail(entry.detail) as Record<string, unknown>) : null;
        // Appended to the hash chain, never inserted beside it (audit-chain.ts).
        await appendEntry(db, {
          actorId: entry.actorId && UUID.test(entry.actorId) ? entry.actorId : null,
          actorUsername: clip(entry.actorUsername),
          action: entry.action,
          targetType: clip(entry.targetType),
          targetId: clip(entry.targetId),
          success: entry.success ?? true,
          ip: clip(entry.ip, 100),
          detail: detail ? JSON.stringify(detail) : null,
        });
      } catch (err) {
        logger.warn({ err: err instanceof Error ? err.message : String(err), action: entry.action }, 'audit log write failed');
      }
    },

    async list(filter) {
      let query = db.selectFrom('audit_log').selectAll();
      if (filter.action) query = query.where('action', '=', filter.action);
      if (filter.actorId) query = query.where('actor_id', '=', filter.actorId);
      if (filter.actor) {
        const actor = filter.actor;
        query = UUID.test(actor)
          ? query.where('actor_id', '=', actor)
          : query.where(sql<string>`lower(actor_username)`, '=', actor.toLowerCase());
      }
      if (filter.from) query = query.where('at', '>=', filter.from);
      // Stored times have microseconds; `to` is inclusive to the end of its millisecond.
      if (filter.to) query = query.where('at', '<', new Date(filter.to.getTime() + 1));
      if (filter.before !== undefined) query = query.where('id', '<', filter.before);
      const rows = await query.orderBy('id', 'desc').limit(filter.limit + 1).execute();
      const entries = rows.slice(0, filter.limit).map(toEntry);
      const last = entries.at(-1);
      return { entries, nextCursor: rows.length > filter.limit && last ? last.id : null };
    },
  };
}
