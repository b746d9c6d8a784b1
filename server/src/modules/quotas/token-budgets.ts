import type { AgentRateLimit } from '../../db/schema.js';
import type { ChatContentPart } from '../providers/types.js';
import type { TokenBucket } from '../../shared-state/shared-state.js';

/**
 * Token budgets: which ones apply to a turn, their shared-state keys and
 * windows, and how a turn's tokens are estimated before it runs. Windows are
 * fixed and in UTC: a minute, a day (00:00 UTC) and a calendar month.
 */

/** Which budget a bucket is: whose tokens it counts and over what window. */
export type BudgetScope = 'user-day' | 'user-month' | 'agent-minute' | 'agent-day' | 'agent-month' | 'agent-user-day' | 'agent-user-month';

export interface Budget extends TokenBucket {
  scope: BudgetScope;
  /** When the window ends and the budget is full again. */
  resetAt: Date;
}

/** A user's own budgets as stored: null means the platform default, 0 unlimited. */
export interface OwnBudgets {
  daily: number | null;
  monthly: number | null;
}

export interface PlatformBudgets {
  dailyTokenQuota: number;
  monthlyTokenQuota: number;
}

/** Late settlements (an answer that ends after its window) still land for this long past the window. */
const SETTLE_GRACE_SECONDS = 86_400;

type Window = 'minute' | 'day' | 'month';

function windowOf(window: Window, now: Date): { id: string; resetAt: Date } {
  const iso = now.toISOString();
  switch (window) {
    case 'minute':
      return { id: iso.slice(0, 16), resetAt: new Date(Math.floor(now.getTime() / 60_000) * 60_000 + 60_000) };
    case 'day':
      return { id: iso.slice(0, 10), resetAt: new Date(Date.UTC(now.getUTCFullYear(), now.getUTCMonth(), now.getUTCDate() + 1)) };
    case 'month':
      return { id: iso.slice(0, 7), resetAt: new Date(Date.UTC(now.getUTCFullYear(), now.getUTCMonth() + 1, 1)) };
  }
}

function budget(scope: BudgetScope, owner: string, window: Window, limit: number, now: Date): Budget {
  const w = windowOf(window, now);
  const ttlSeconds = Math.ceil((w.resetAt.getTime() - now.getTime()) / 1000) + (window === 'minute' ? 60 : SETTLE_GRACE_SECONDS);
  return { scope, key: `tokens:${owner}:${w.id}`, limit, ttlSeconds, resetAt: w.resetAt };
}

/** The effective per-user limits: the user's own, else the platform's; 0 is unlimited. */
export function userLimits(own: OwnBudgets | undefined, platform: PlatformBudgets): { daily: number; monthly: number } {
  return { daily: own?.daily ?? platform.dailyTokenQuota, monthly: own?.monthly ?? platform.monthlyTokenQuota };
}

/** The user's own budgets (their quota, else the platform's): what the profile page shows. */
export function userBudgets(userId: string, own: OwnBudgets | undefined, platform: PlatformBudgets, now = new Date()): Budget[] {
  const limits = userLimits(own, platform);
  const out: Budget[] = [];
  if (limits.daily > 0) out.push(budget('user-day', `u:${userId}`, 'day', limits.daily, now));
  if (limits.monthly > 0) out.push(budget('user-month', `u:${userId}`, 'month', limits.monthly, now));
  return out;
}

/** Every budget a turn of this user through this agent counts against; empty when none applies. */
export function turnBudgets(userId: string, agentId: string, own: OwnBudgets | undefined, rateLimit: AgentRateLimit | undefined, platform: PlatformBudgets, now = new Date()): Budget[] {
  const out = userBudgets(userId, own, platform, now);
  if (!rateLimit) return out;
  const agent = `a:${agentId}`;
  if (rateLimit.tokensPerMinute) out.push(budget('agent-minute', agent, 'minute', rateLimit.tokensPerMinute, now));
  if (rateLimit.tokensPerDay) out.push(budget('agent-day', agent, 'day', rateLimit.tokensPerDay, now));
  if (rateLimit.tokensPerMonth) out.push(budget('agent-month', agent, 'month', rateLimit.tokensPerMonth, now));
  if (rateLimit.tokensPerUserPerDay) out.push(budget('agent-user-day', `${agent}:u:${userId}`, 'day', rateLimit.tokensPerUserPerDay, now));
  if (rateLimit.tokensPerUserPerMonth) out.push(budget('agent-user-month', `${agent}:u:${userId}`, 'month', rateLimit.tokensPerUserPerMonth, now));
  return out;
}

/**
 * Tokens a text is taken for before a provider counts it: one per three
 * UTF-8 bytes, so about one per CJK character and more than one per four
 * Latin letters. It errs high, as a reservation should.
 */
export function estimateTokens(text: string): number {
  return Math.ceil(Buffer.byteLength(text, 'utf8') / 3);
}

/** The question's estimated tokens: every message's text and a few tokens of framing each. */
export function estimatePromptTokens(messages: readonly { content: string | ChatContentPart[] }[]): number {
  let tokens = 0;
  for (const m of messages) {
    tokens += 4;
    if (typeof m.content === 'string') tokens += estimateTokens(m.content);
    else for (const part of m.content) tokens += part.type === 'text' ? estimateTokens(part.text) : 1_000;
  }
  return tokens;
}

/** What a budget or rate limit tells a client in the X-RateLimit-* headers. */
export interface LimitStatus {
  /** `tokens-<scope>` for a token budget, `requests-user-minute` / `requests-agent-minute` for a turn count. */
  scope: string;
  limit: number;
  remaining: number;
  resetAt: Date;
}

/** The X-RateLimit-* headers of a limit status (Reset in Unix seconds). */
export function limitHeaders(status: LimitStatus): Record<string, string> {
  return {
    'x-ratelimit-limit': String(status.limit),
    'x-ratelimit-remaining': String(Math.max(0, status.remaining)),
    'x-ratelimit-reset': String(Math.ceil(status.resetAt.getTime() / 1000)),
    'x-ratelimit-scope': status.scope,
  };
}

/** Whole seconds from now until `at`, at least 1 (a Retry-After value). */
export function secondsUntil(at: Date, now = Date.now()): number {
  return Math.max(1, Math.ceil((at.getTime() - now) / 1000));
}
