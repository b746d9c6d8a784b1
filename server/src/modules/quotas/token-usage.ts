import type { SharedState } from '../../shared-state/shared-state.js';
import { userBudgets, userLimits, type BudgetScope, type OwnBudgets, type PlatformBudgets } from './token-budgets.js';

/** One of a user's budgets as they and admins see it. */
export interface BudgetUsage {
  /** Tokens allowed in the window; null: unlimited. */
  limit: number | null;
  /** The limit is the user's own (else the platform default). */
  own: boolean;
  /** Tokens counted in the window (finished answers and the reservations of running ones); null when unlimited (not counted) or unknown (shared state away). */
  used: number | null;
  remaining: number | null;
  /** When the window starts again (00:00 UTC, the 1st of the month). */
  resetAt: string;
}

export interface TokenUsage {
  daily: BudgetUsage;
  monthly: BudgetUsage;
}

function nextReset(scope: 'user-day' | 'user-month', now: Date): Date {
  return scope === 'user-day'
    ? new Date(Date.UTC(now.getUTCFullYear(), now.getUTCMonth(), now.getUTCDate() + 1))
    : new Date(Date.UTC(now.getUTCFullYear(), now.getUTCMonth() + 1, 1));
}

/**
 * The daily and monthly budgets of each user with what the shared counters
 * hold for them: the same counters admission checks, read in one round
 * trip for the whole list. Only budgeted windows are counted (an unlimited
 * turn costs no round trip), so an unlimited window shows no figure.
 */
export async function tokenUsageOf(state: SharedState, platform: PlatformBudgets, users: readonly { id: string; own: OwnBudgets }[], now = new Date()): Promise<Map<string, TokenUsage>> {
  const budgets = users.map((u) => userBudgets(u.id, u.own, platform, now));
  const keys = budgets.flat().map((b) => b.key);
  let counts: number[] | undefined;
  try {
    counts = keys.length > 0 ? await state.readCounters(keys) : [];
  } catch {
    counts = undefined; // shared state away: limits are shown, figures are not
  }
  const out = new Map<string, TokenUsage>();
  let next = 0;
  users.forEach((u, i) => {
    const limits = userLimits(u.own, platform);
    const view = (scope: 'user-day' | 'user-month', own: number | null, limit: number): BudgetUsage => {
      const budget = budgets[i]?.find((b) => b.scope === (scope satisfies BudgetScope));
      if (!budget) return { limit: null, own: own !== null, used: null, remaining: null, resetAt: nextReset(scope, now).toISOString() };
      const used = counts ? (counts[next++] ?? 0) : null;
      return { limit, own: own !== null, used, remaining: used === null ? null : Math.max(0, limit - used), resetAt: budget.resetAt.toISOString() };
    };
    out.set(u.id, { daily: view('user-day', u.own.daily, limits.daily), monthly: view('user-month', u.own.monthly, limits.monthly) });
  });
  return out;
}
