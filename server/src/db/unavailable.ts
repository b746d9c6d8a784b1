/**
 * Whether an error means the database cannot be reached right now (down,
 * restarting, failing over, connection dropped) rather than that the
 * statement was wrong. Such errors become 503 DATABASE_UNAVAILABLE: the
 * request may succeed if tried again shortly.
 */

/** Socket-level failures node-postgres passes through. */
const NETWORK_CODES = new Set(['ECONNREFUSED', 'ECONNRESET', 'ETIMEDOUT', 'EPIPE', 'EHOSTUNREACH', 'ENETUNREACH', 'ENOTFOUND', 'EAI_AGAIN']);

/**
 * PostgreSQL SQLSTATEs: class 08 (connection exception), 57P01-57P03
 * (admin/crash shutdown, cannot connect now), 53300 (too many connections),
 * 25006 (read-only transaction: a writer that is now a replica, mid-failover).
 */
function unavailableSqlState(code: string): boolean {
  return code.startsWith('08') || code === '57P01' || code === '57P02' || code === '57P03' || code === '53300' || code === '25006';
}

/** Messages node-postgres and pg-pool use for a dropped or refused connection (they carry no code). */
const MESSAGES = [/^Connection terminated/i, /timeout exceeded when trying to connect/i, /Client has encountered a connection error/i, /connection is closed/i, /Client was closed and is not queryable/i];

/** commit-guard.ts's UnconfirmedCommitError: a commit the synchronous standby did not confirm. */
const UNCONFIRMED_COMMIT = 'LLMCHAT_UNCONFIRMED_COMMIT';

export function isDatabaseUnavailable(err: unknown): boolean {
  for (let cur: unknown = err, depth = 0; cur instanceof Error && depth < 4; cur = cur.cause, depth++) {
    const code = (cur as { code?: unknown }).code;
    if (code === UNCONFIRMED_COMMIT) return true;
    if (typeof code === 'string' && (NETWORK_CODES.has(code) || (/^[0-9A-Z]{5}$/.test(code) && unavailableSqlState(code)))) return true;
    if (MESSAGES.some((re) => re.test(cur instanceof Error ? cur.message : ''))) return true;
    // AggregateError from a connect attempt to several addresses.
    if (cur instanceof AggregateError && cur.errors.some((e) => isDatabaseUnavailable(e))) return true;
  }
  return false;
}
