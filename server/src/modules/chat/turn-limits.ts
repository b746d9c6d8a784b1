import type { Logger } from 'pino';
import type { Config } from '../../config.js';
import type { AgentRateLimit } from '../../db/schema.js';
import { AppError } from '../../errors.js';
import { DegradedNotice } from '../../shared-state/degraded.js';
import type { SharedState, TurnCounter } from '../../shared-state/shared-state.js';
import type { ChatContentPart } from '../providers/types.js';
import { estimatePromptTokens, estimateTokens, limitHeaders, secondsUntil, turnBudgets, type Budget, type BudgetScope, type LimitStatus } from '../quotas/token-budgets.js';
import type { UserBudgetDirectory } from '../quotas/user-budgets.js';

/** A reservation outlives any answer; one left by a turn nobody settled (both instances gone) expires with it. */
const RESERVATION_TTL_SECONDS = 86_400;

export interface TurnLimitsDeps {
  state: SharedState;
  config: Pick<Config, 'chatRateLimitPerMinute' | 'dailyTokenQuota' | 'monthlyTokenQuota' | 'quotaReserveOutputTokens' | 'rateLimitsWithoutRedis'>;
  budgets: UserBudgetDirectory;
  logger: Logger;
  /** Told of each refusal (metrics): a rate limit or a token budget, and which. */
  onRefused?: ((kind: 'rate_limit' | 'quota', scope: string) => void) | undefined;
}

/** What admission asks of a turn. */
export interface TurnLimitsInput {
  turnId: string;
  userId: string;
  agent: { id: string; rateLimit?: AgentRateLimit | undefined; maxTokens?: number | null | undefined; systemPrompt?: string | null | undefined };
  messages: readonly { content: string | ChatContentPart[] }[];
  maxTokens?: number | undefined;
}

export interface TurnAdmitted {
  /** Tokens were reserved under the turn id: settle them when the turn ends. */
  reserved: boolean;
  /** For the X-RateLimit-* headers: the tightest limit that applied; none when no limit applied. */
  status: LimitStatus | undefined;
}

const BUDGET_NAMES: Record<BudgetScope, string> = {
  'user-day': 'Your daily token quota',
  'user-month': 'Your monthly token quota',
  'agent-minute': 'This agent\'s token limit per minute',
  'agent-day': 'This agent\'s daily token budget',
  'agent-month': 'This agent\'s monthly token budget',
  'agent-user-day': 'Your daily token budget for this agent',
  'agent-user-month': 'Your monthly token budget for this agent',
};

function minuteReset(now: number): Date {
  return new Date(Math.floor(now / 60_000) * 60_000 + 60_000);
}

/**
 * Admission of a chat turn against its rate limits (turns per minute, per
 * user and per agent) and token budgets (the user's daily and monthly
 * quota, the agent's budgets), with one shared-state round trip when any
 * applies and none when nothing does; and the settlement of the reserved
 * tokens to the real usage once the turn ends.
 */
export function createTurnLimits(deps: TurnLimitsDeps) {
  const { state, config, logger } = deps;
  const notice = new DegradedNotice(logger, `rate limits and quotas (failing ${config.rateLimitsWithoutRedis})`);
  const settleNotice = new DegradedNotice(logger, 'settling token reservations (budgets keep the reserved estimate)');

  /** Tokens a turn is taken for until it ends: the question, the system prompt and the longest answer it may get. */
  function estimate(input: TurnLimitsInput): number {
    const output = input.maxTokens ?? input.agent.maxTokens ?? config.quotaReserveOutputTokens;
    return estimatePromptTokens(input.messages) + (input.agent.systemPrompt ? estimateTokens(input.agent.systemPrompt) : 0) + output;
  }

  function refuseCounter(counter: TurnCounter & { scope: string }, now: number): AppError {
    const status: LimitStatus = { scope: counter.scope, limit: counter.limit, remaining: 0, resetAt: minuteReset(now) };
    const headers = { ...limitHeaders(status), 'retry-after': String(secondsUntil(status.resetAt, now)) };
    deps.onRefused?.('rate_limit', counter.scope);
    const message = counter.scope === 'requests-user-minute' ? `Too many chat requests: at most ${counter.limit} a minute` : `This agent takes at most ${counter.limit} requests a minute`;
    return new AppError('RATE_LIMITED', message, undefined, headers);
  }

  function refuseBudgets(exhausted: Budget[], now: number): AppError {
    // The turn may go again once every exhausted budget has reset: the latest reset is the one to wait for.
    const last = exhausted.reduce((a, b) => (b.resetAt > a.resetAt ? b : a));
    deps.onRefused?.('quota', last.scope);
    const status: LimitStatus = { scope: `tokens-${last.scope}`, limit: last.limit, remaining: 0, resetAt: last.resetAt };
    const headers = { ...limitHeaders(status), 'retry-after': String(secondsUntil(last.resetAt, now)) };
    return new AppError('QUOTA_EXCEEDED', `${BUDGET_NAMES[last.scope]} of ${last.limit} tokens is used up; it resets at ${last.resetAt.toISOString()}`, undefined, headers);
  }

  return {
    /**
     * Counts the turn and reserves its estimated tokens in every budget that
     * applies, or refuses it: 429 RATE_LIMITED / QUOTA_EXCEEDED with
     * Retry-After and X-RateLimit-*. With shared state away, lets it through
     * uncounted or refuses it with 503 (RATE_LIMITS_WITHOUT_REDIS).
     */
    async admit(input: TurnLimitsInput): Promise<TurnAdmitted> {
      const nowMs = Date.now();
      const minute = Math.floor(nowMs / 60_000);
      const counters: (TurnCounter & { scope: string })[] = [];
      if (config.chatRateLimitPerMinute > 0) counters.push({ scope: 'requests-user-minute', key: `rl:chat:${input.userId}:${minute}`, windowSeconds: 60, limit: config.chatRateLimitPerMinute });
      const perAgent = input.agent.rateLimit?.requestsPerMinute;
      if (perAgent && perAgent > 0) counters.push({ scope: 'requests-agent-minute', key: `rl:agent:${input.agent.id}:${minute}`, windowSeconds: 60, limit: perAgent });
      const buckets = turnBudgets(input.userId, input.agent.id, deps.budgets.of(input.userId), input.agent.rateLimit, config, new Date(nowMs));
      // Nothing to count: no round trip at all.
      if (counters.length === 0 && buckets.length === 0) return { reserved: false, status: undefined };
      let result: Awaited<ReturnType<SharedState['admitTurn']>>;
      try {
        result = await state.admitTurn({ counters, buckets, reserve: estimate(input), reservationId: input.turnId, reservationTtlSeconds: RESERVATION_TTL_SECONDS });
        notice.succeeded();
      } catch (err) {
        // Shared state unreachable: limits fail open (chat keeps working, uncounted) or closed, as configured.
        notice.failed(err);
        if (config.rateLimitsWithoutRedis === 'closed') {
          throw new AppError('SHARED_STATE_UNAVAILABLE', 'Rate limits cannot be checked right now; try again shortly', undefined, { 'retry-after': '5' });
        }
        return { reserved: false, status: undefined };
      }
      if (!result.admitted) {
        const over = counters.find((c, i) => (result.counts[i] ?? 0) > c.limit);
        if (over) throw refuseCounter(over, nowMs);
        throw refuseBudgets(buckets.filter((b, i) => (result.used[i] ?? 0) >= b.limit), nowMs);
      }
      // The headers show the limit with the least room: a token budget when one applies (tokens left before this turn), else the turn count.
      let status: LimitStatus | undefined;
      buckets.forEach((b, i) => {
        const remaining = b.limit - (result.used[i] ?? 0);
        if (!status || remaining < status.remaining) status = { scope: `tokens-${b.scope}`, limit: b.limit, remaining, resetAt: b.resetAt };
      });
      if (!status) {
        counters.forEach((c, i) => {
          const remaining = c.limit - (result.counts[i] ?? 0);
          if (!status || remaining < status.remaining) status = { scope: c.scope, limit: c.limit, remaining, resetAt: minuteReset(nowMs) };
        });
      }
      return { reserved: buckets.length > 0, status };
    },

    /** Replaces the turn's reservation with the tokens it used (0 releases it); best effort, off the turn's path. */
    settle(turnId: string, tokens: number): void {
      state.settleTurn(turnId, Math.max(0, Math.round(tokens))).then(
        () => settleNotice.succeeded(),
        (err: unknown) => settleNotice.failed(err),
      );
    },
  };
}

export type TurnLimits = ReturnType<typeof createTurnLimits>;

/** Tokens a finished turn counts for: the provider's figure, else (stopped before the provider said) an estimate of what was sent and received. */
export function tokensOfTurn(result: { usage: { totalTokens: number } | undefined; content: string; reasoning: string | null }, promptTokens: number): number {
  if (result.usage) return result.usage.totalTokens;
  const output = result.content + (result.reasoning ?? '');
  return output.length > 0 ? promptTokens + estimateTokens(output) : 0;
}
