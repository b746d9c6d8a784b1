import type { Kysely } from 'kysely';
import type { Logger } from 'pino';
import type { Database } from '../../db/schema.js';
import { Channels, type SharedState, type Unsubscribe } from '../../shared-state/shared-state.js';
import type { OwnBudgets } from './token-budgets.js';

/** Every instance reloads the whole directory this often, in case a users-changed notice was lost (Redis away). */
export const USER_BUDGETS_RELOAD_MS = 60_000;

/**
 * The users who have token budgets of their own, held in memory on every
 * instance, so a chat turn never looks a budget up: loaded at start (one
 * query over a partial index), reloaded per user on `users-changed` from
 * any instance, and in full every USER_BUDGETS_RELOAD_MS.
 */
export interface UserBudgetDirectory {
  start(): Promise<void>;
  /** The user's own budgets, or undefined when both are the platform default. */
  of(userId: string): OwnBudgets | undefined;
  close(): Promise<void>;
}

export interface UserBudgetDirectoryDeps {
  db: Kysely<Database>;
  state: SharedState;
  logger: Logger;
  /** Changes made on this instance (UsersService.onChanged). */
  onLocalChange: (listener: (userId: string) => void) => () => void;
  reloadMs?: number;
}

export function createUserBudgetDirectory(deps: UserBudgetDirectoryDeps): UserBudgetDirectory {
  const { db, state, logger } = deps;
  let budgets = new Map<string, OwnBudgets>();
  let unsubscribe: Unsubscribe | undefined;
  let stopLocal: (() => void) | undefined;
  let timer: NodeJS.Timeout | undefined;

  async function loadAll(): Promise<void> {
    const rows = await db
      .selectFrom('users')
      .select(['id', 'daily_token_quota', 'monthly_token_quota'])
      .where((eb) => eb.or([eb('daily_token_quota', 'is not', null), eb('monthly_token_quota', 'is not', null)]))
      .execute();
    budgets = new Map(rows.map((r) => [r.id, { daily: r.daily_token_quota, monthly: r.monthly_token_quota }]));
  }

  async function reload(userId: string | undefined): Promise<void> {
    if (userId === undefined) return loadAll();
    const row = await db.selectFrom('users').select(['daily_token_quota', 'monthly_token_quota']).where('id', '=', userId).executeTakeFirst();
    if (row && (row.daily_token_quota !== null || row.monthly_token_quota !== null)) budgets.set(userId, { daily: row.daily_token_quota, monthly: row.monthly_token_quota });
    else budgets.delete(userId);
  }

  function reloadLogged(userId: string | undefined): void {
    reload(userId).catch((err: unknown) => logger.warn({ err: err instanceof Error ? err.message : String(err), userId }, 'could not reload token budgets; the periodic reload will'));
  }

  return {
    async start() {
      await loadAll();
      stopLocal = deps.onLocalChange((userId) => reloadLogged(userId));
      try {
        unsubscribe = await state.subscribe(Channels.usersChanged, (message) => {
          let userId: string | undefined;
          try {
            const parsed = JSON.parse(message) as { userId?: unknown };
            userId = typeof parsed.userId === 'string' ? parsed.userId : undefined;
          } catch {
            userId = undefined;
          }
          reloadLogged(userId);
        });
      } catch (err) {
        logger.warn({ err: err instanceof Error ? err.message : String(err) }, 'could not subscribe to users-changed: budget changes from other instances land with the periodic reload');
      }
      timer = setInterval(() => reloadLogged(undefined), deps.reloadMs ?? USER_BUDGETS_RELOAD_MS);
      timer.unref();
    },

    of(userId) {
      return budgets.get(userId);
    },

    async close() {
      clearInterval(timer);
      stopLocal?.();
      await unsubscribe?.();
    },
  };
}
