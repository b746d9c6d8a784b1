import type { Logger } from 'pino';
import type { Config } from '../../config.js';
import { MemoryState } from '../../shared-state/memory-state.js';
import type { SharedState } from '../../shared-state/shared-state.js';
import { AuditActions, type Actor, type AuditLog } from '../audit/audit-log.js';
import type { UsersService } from '../users/users-service.js';

/**
 * Sign-in throttling: progressive delays instead of a lockout.
 *
 * - Per account name and client address (the pair): the first PAIR_FREE_FAILURES
 *   wrong passwords cost nothing, then each one doubles the wait before that
 *   address may try that name again (1 s, 2 s, 4 s, … up to LOGIN_BACKOFF_MAX_SECONDS).
 *   A success from the address clears its pair.
 * - Per client address, whatever the name (password spraying): the same, after
 *   ADDRESS_FREE_FAILURES failures within an hour.
 * - Per account name, from every address together: at most
 *   LOGIN_FAILURES_PER_ACCOUNT_PER_HOUR failed attempts in any 60 minutes
 *   (ASVS 2.2.1). Each attempt reserves its slot before the password is checked,
 *   so parallel attempts on several instances cannot overshoot.
 *
 * An attacker's failures delay the attacker's own address; the account's owner,
 * from another address, is refused only once the hourly cap is spent. Everything
 * is keyed on the name as typed (lower-cased), never on whether the account
 * exists, so an unknown name is throttled exactly like a real one. The counters
 * live in shared state (Redis across instances); while it is unreachable the
 * instance counts in its own memory instead of letting guesses through unthrottled.
 */

/** Wrong passwords from one address for one name before the first delay. */
export const PAIR_FREE_FAILURES = 3;
/** Wrong passwords from one address within an hour, whatever the names, before the first delay. */
export const ADDRESS_FREE_FAILURES = 20;
const HOUR_MS = 3_600_000;
const PAIR_WINDOW_SECONDS = 24 * 3600;
const ADDRESS_WINDOW_SECONDS = 3600;
/** Account buckets are hourly; each is kept for two hours so the previous one can be summed. */
const BUCKET_TTL_SECONDS = 2 * 3600;
/** A clear (new generation) outlives every key it orphans. */
const GENERATION_TTL_SECONDS = PAIR_WINDOW_SECONDS + 3600;
const NAME_MAX = 128;

export type ThrottleReason = 'pair' | 'address' | 'account';

/** One sign-in attempt's place in the throttle, from before the password is checked until its outcome. */
export interface SignInAttempt {
  /** 0 when the attempt may go ahead; otherwise how long this address must wait for this name. */
  readonly refusedForSeconds: number;
  readonly reason: ThrottleReason | undefined;
  /** The password was wrong (or the name unknown): counts it; returns the wait now due before the next try (0 for none). */
  failed(): Promise<number>;
  /** The password was right: frees the attempt's slot and clears this address's delay for the name. */
  succeeded(): Promise<void>;
  /** The attempt was refused or not counted: frees its slot. */
  release(): Promise<void>;
}

export interface AccountThrottleStatus {
  /** Failed attempts counted against the account's hourly cap (this hour and the last). */
  recentFailures: number;
  limitPerHour: number;
  /** Seconds until the hourly cap lets attempts through again (0: it does now). */
  refusedForSeconds: number;
}

export interface SignInThrottle {
  begin(username: string, address: string | undefined): Promise<SignInAttempt>;
  /** Ends every delay on the account name, from every address, and resets its hourly cap (an admin's action). */
  clearAccount(username: string): Promise<void>;
  status(username: string): Promise<AccountThrottleStatus>;
}

export interface SignInThrottleDeps {
  state: SharedState;
  config: Pick<Config, 'loginFailuresPerAccountPerHour' | 'loginBackoffMaxSeconds'>;
  logger: Logger;
  /** Milliseconds since the epoch (tests hand in a fake clock). */
  now?: () => number;
}

/** The wait, in seconds, after the n-th failure when the first `free` cost nothing: 1, 2, 4, … up to `max`. */
export function backoffSeconds(failures: number, free: number, max: number): number {
  if (failures <= free) return 0;
  return Math.min(max, 2 ** Math.min(failures - free - 1, 30));
}

export function accountName(username: string): string {
  return username.trim().toLowerCase().slice(0, NAME_MAX);
}

export function createSignInThrottle({ state, config, logger, now = Date.now }: SignInThrottleDeps): SignInThrottle {
  const cap = config.loginFailuresPerAccountPerHour;
  const maxWait = config.loginBackoffMaxSeconds;
  // Used only while shared state is unreachable: this instance's own count is better than none.
  const local = new MemoryState();
  let lastWarning = 0;

  async function withStore<T>(work: (store: SharedState) => Promise<T>): Promise<{ store: SharedState; value: T }> {
    try {
      return { store: state, value: await work(state) };
    } catch (err) {
      if (now() - lastWarning > 60_000) {
        lastWarning = now();
        logger.warn({ err: err instanceof Error ? err.message : String(err) }, 'sign-in throttle: shared state unavailable, counting on this instance only');
      }
      return { store: local, value: await work(local) };
    }
  }

  const keys = (name: string, generation: string, address: string) => ({
    pairFailures: `signin:pf:${generation}:${address}:${name}`,
    pairWait: `signin:pw:${generation}:${address}:${name}`,
    addressFailures: `signin:af:${address}`,
    addressWait: `signin:aw:${address}`,
    bucket: (hour: number) => `signin:acct:${generation}:${hour}:${name}`,
  });

  const generationKey = (name: string) => `signin:gen:${name}`;
  const secondsUntil = (untilMs: number) => Math.max(0, Math.ceil((untilMs - now()) / 1000));
  const waitOf = (value: string | null) => (value === null ? 0 : secondsUntil(Number(value)));

  async function setWait(store: SharedState, key: string, seconds: number): Promise<void> {
    if (seconds > 0) await store.set(key, String(now() + seconds * 1000), seconds);
  }

  return {
    async begin(username, address) {
      const name = accountName(username);
      const addr = address ?? 'unknown';
      const hour = Math.floor(now() / HOUR_MS);
      const { store, value } = await withStore(async (s) => {
        const generation = (await s.get(generationKey(name))) ?? '0';
        const k = keys(name, generation, addr);
        // Reserve this attempt's slot in the hourly cap first: a check-then-count would let parallel attempts through together.
        const [current, previous, pairWait, addressWait] = await Promise.all([
          s.hit(k.bucket(hour), BUCKET_TTL_SECONDS, 1),
          s.hit(k.bucket(hour - 1), BUCKET_TTL_SECONDS, 0),
          s.get(k.pairWait),
          s.get(k.addressWait),
        ]);
        return { k, current, previous, pairWait: waitOf(pairWait), addressWait: waitOf(addressWait) };
      });
      const { k } = value;
      // Any 60 minutes overlap at most this bucket and the last, so their sum bounds every hour.
      const capWait = value.previous + value.current > cap ? secondsUntil((hour + 1) * HOUR_MS) : 0;
      const waits: [ThrottleReason, number][] = [['account', capWait], ['address', value.addressWait], ['pair', value.pairWait]];
      const worst = waits.reduce((a, b) => (b[1] > a[1] ? b : a));
      let settled = false;
      const release = async () => {
        if (settled) return;
        settled = true;
        await store.hit(k.bucket(hour), BUCKET_TTL_SECONDS, -1).catch(() => undefined);
      };
      return {
        refusedForSeconds: worst[1],
        reason: worst[1] > 0 ? worst[0] : undefined,
        async failed() {
          settled = true;
          const spent = value.previous + value.current >= cap ? secondsUntil((hour + 1) * HOUR_MS) : 0;
          try {
            // The reserved slot stays: it is this failure in the hourly cap.
            const [pair, addr] = await Promise.all([store.hit(k.pairFailures, PAIR_WINDOW_SECONDS, 1), store.hit(k.addressFailures, ADDRESS_WINDOW_SECONDS, 1)]);
            const pairWait = backoffSeconds(pair, PAIR_FREE_FAILURES, maxWait);
            const addressWait = backoffSeconds(addr, ADDRESS_FREE_FAILURES, maxWait);
            await Promise.all([setWait(store, k.pairWait, pairWait), setWait(store, k.addressWait, addressWait)]);
            return Math.max(pairWait, addressWait, spent);
          } catch (err) {
            // Shared state went away since begin(): the slot in the hourly cap is counted already.
            logger.warn({ err: err instanceof Error ? err.message : String(err) }, 'sign-in throttle: could not count a failure');
            return spent;
          }
        },
        async succeeded() {
          await release();
          await Promise.all([store.del(k.pairFailures), store.del(k.pairWait)]).catch(() => undefined);
        },
        release,
      };
    },

    async clearAccount(username) {
      const name = accountName(username);
      // A new generation orphans every key of the name (each address's pair and the hourly buckets) in one write.
      const generation = String(now());
      await Promise.all([
        state.set(generationKey(name), generation, GENERATION_TTL_SECONDS),
        local.set(generationKey(name), generation, GENERATION_TTL_SECONDS),
      ]);
    },

    async status(username) {
      const name = accountName(username);
      const hour = Math.floor(now() / HOUR_MS);
      const { value } = await withStore(async (s) => {
        const generation = (await s.get(generationKey(name))) ?? '0';
        const k = keys(name, generation, 'unknown');
        return Promise.all([s.hit(k.bucket(hour), BUCKET_TTL_SECONDS, 0), s.hit(k.bucket(hour - 1), BUCKET_TTL_SECONDS, 0)]);
      });
      const recentFailures = value[0] + value[1];
      return { recentFailures, limitPerHour: cap, refusedForSeconds: recentFailures >= cap ? secondsUntil((hour + 1) * HOUR_MS) : 0 };
    },
  };
}

export interface SignInDelayView extends AccountThrottleStatus {
  userId: string;
  username: string;
}

/** What the admin API does with an account's sign-in delays. */
export interface SignInDelayAdmin {
  status(userId: string): Promise<SignInDelayView>;
  /** Clears every delay on the account and its hourly cap (audited as auth.sign_in_delay_clear). */
  clear(actor: Actor, userId: string): Promise<SignInDelayView>;
}

export function createSignInDelayAdmin({ users, throttle, audit }: { users: Pick<UsersService, 'get'>; throttle: SignInThrottle; audit: AuditLog }): SignInDelayAdmin {
  async function view(userId: string, username: string): Promise<SignInDelayView> {
    return { userId, username, ...(await throttle.status(username)) };
  }
  return {
    async status(userId) {
      const user = await users.get(userId);
      return view(user.id, user.username);
    },
    async clear(actor, userId) {
      const user = await users.get(userId);
      const before = await throttle.status(user.username);
      await throttle.clearAccount(user.username);
      await audit.record({
        actorId: actor.id,
        actorUsername: actor.username,
        ip: actor.ip,
        action: AuditActions.signInDelayClear,
        targetType: 'user',
        targetId: user.id,
        detail: { username: user.username, recentFailures: before.recentFailures },
      });
      return view(user.id, user.username);
    },
  };
}
