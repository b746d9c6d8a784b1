import crypto from 'node:crypto';
import type { Kysely } from 'kysely';
import type { Database } from '../../db/schema.js';
import { AppError } from '../../errors.js';

/** `Idempotency-Key`: 1-255 visible ASCII characters (a UUID is the usual choice). */
const KEY_PATTERN = /^[\x21-\x7e]{1,255}$/;

/** The key of a request, or undefined when it sent none; a malformed key is refused before anything is written. */
export function idempotencyKeyOf(header: string | string[] | undefined): string | undefined {
  if (header === undefined) return undefined;
  const value = Array.isArray(header) ? header[0] : header;
  if (value === undefined || !KEY_PATTERN.test(value)) {
    throw new AppError('IDEMPOTENCY_KEY_INVALID', 'Idempotency-Key must be 1-255 visible ASCII characters (a UUID, for example)');
  }
  return value;
}

function canonical(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(canonical);
  if (value !== null && typeof value === 'object') {
    return Object.fromEntries(
      Object.keys(value)
        .sort()
        .map((k) => [k, canonical((value as Record<string, unknown>)[k])]),
    );
  }
  return value;
}

/** Body fields that choose how the answer is delivered, not which turn it is: a repeat may change them. */
const DELIVERY_FIELDS = new Set(['stream', 'stream_options']);

/** Fingerprint of a request: the route and its body (key order and delivery fields ignored). */
export function requestFingerprint(route: string, body: unknown): string {
  const turn = body !== null && typeof body === 'object' && !Array.isArray(body) ? Object.fromEntries(Object.entries(body).filter(([k]) => !DELIVERY_FIELDS.has(k))) : body;
  return crypto.createHash('sha256').update(route).update('\u0000').update(JSON.stringify(canonical(turn))).digest('base64url');
}

/** What a key already names. */
export type KeyLookup =
  /** The key is free (never used, or expired and now removed): a turn may start with it. */
  | { kind: 'free' }
  /** The key was used before with the same request: the turn to return. */
  | { kind: 'repeat'; turnId: string }
  /** The key was used before with a different request. */
  | { kind: 'conflict' };

/**
 * Idempotency keys in PostgreSQL (`idempotency_keys`, primary key
 * (user, key)), so a repeat reaching another instance finds the same turn.
 * A key is written in the turn's own acknowledgement statement
 * (chat-repository's CREATE_TURNS), never before it: a key always names a
 * turn that exists, and a request that fails before its turn is written
 * (the database going away, say) leaves the key free for the retry.
 */
export function createIdempotencyStore(db: Kysely<Database>, ttlSeconds: number) {
  return {
    async lookup(userId: string, key: string, fingerprint: string): Promise<KeyLookup> {
      const existing = await db.selectFrom('idempotency_keys').selectAll().where('user_id', '=', userId).where('key', '=', key).executeTakeFirst();
      if (!existing) return { kind: 'free' };
      if (Date.now() - existing.created_at.getTime() > ttlSeconds * 1000) {
        // Expired: the key names nothing any more and may start a new turn.
        await db.deleteFrom('idempotency_keys').where('user_id', '=', userId).where('key', '=', key).where('created_at', '=', existing.created_at).execute();
        return { kind: 'free' };
      }
      if (existing.request_hash !== fingerprint) return { kind: 'conflict' };
      return { kind: 'repeat', turnId: existing.message_id };
    },

    /**
     * Deletes at most `limit` keys that expired by `now` (the retention
     * sweep); resolves to how many. Keys another caller is deleting at the
     * same moment are skipped, not waited for, so instances may sweep at once.
     */
    async deleteExpired(now: Date, limit: number): Promise<number> {
      const cutoff = new Date(now.getTime() - ttlSeconds * 1000);
      const result = await db
        .deleteFrom('idempotency_keys')
        .where((eb) =>
          eb(
            eb.refTuple('user_id', 'key'),
            'in',
            eb
              .selectFrom('idempotency_keys as expired')
              .select(['expired.user_id', 'expired.key'])
              .where('expired.created_at', '<', cutoff)
              .limit(limit)
              .forUpdate()
              .skipLocked()
              .$asTuple('user_id', 'key'),
          ),
        )
        .executeTakeFirst();
      return Number(result.numDeletedRows);
    },
  };
}

export type IdempotencyStore = ReturnType<typeof createIdempotencyStore>;
