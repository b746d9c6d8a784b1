import { describe, expect, it } from 'vitest';
import { estimatePromptTokens, estimateTokens, turnBudgets, userLimits } from './token-budgets.js';

const platform = { dailyTokenQuota: 1000, monthlyTokenQuota: 0 };

describe('token budgets', () => {
  it('takes the user\'s own quota over the platform\'s; null is the default and 0 unlimited', () => {
    expect(userLimits(undefined, platform)).toEqual({ daily: 1000, monthly: 0 });
    expect(userLimits({ daily: null, monthly: 5 }, platform)).toEqual({ daily: 1000, monthly: 5 });
    expect(userLimits({ daily: 0, monthly: null }, platform)).toEqual({ daily: 0, monthly: 0 });
  });

  it('lists every budget that applies, with windows that end at 00:00 UTC, the 1st of the month and the next minute', () => {
    const now = new Date('2026-12-31T23:59:30.500Z');
    const budgets = turnBudgets('u1', 'a1', { daily: 10, monthly: 20 }, { tokensPerMinute: 1, tokensPerDay: 2, tokensPerMonth: 3, tokensPerUserPerDay: 4, tokensPerUserPerMonth: 5 }, platform, now);
    expect(budgets.map((b) => [b.scope, b.key, b.limit, b.resetAt.toISOString()])).toEqual([
      ['user-day', 'tokens:u:u1:2026-12-31', 10, '2027-01-01T00:00:00.000Z'],
      ['user-month', 'tokens:u:u1:2026-12', 20, '2027-01-01T00:00:00.000Z'],
      ['agent-minute', 'tokens:a:a1:2026-12-31T23:59', 1, '2027-01-01T00:00:00.000Z'],
      ['agent-day', 'tokens:a:a1:2026-12-31', 2, '2027-01-01T00:00:00.000Z'],
      ['agent-month', 'tokens:a:a1:2026-12', 3, '2027-01-01T00:00:00.000Z'],
      ['agent-user-day', 'tokens:a:a1:u:u1:2026-12-31', 4, '2027-01-01T00:00:00.000Z'],
      ['agent-user-month', 'tokens:a:a1:u:u1:2026-12', 5, '2027-01-01T00:00:00.000Z'],
    ]);
    // Keys outlive their window, so an answer that ends after it still settles.
    for (const b of budgets) expect(b.ttlSeconds * 1000).toBeGreaterThan(b.resetAt.getTime() - now.getTime());
  });

  it('applies nothing when no budget is set: no round trip for such a turn', () => {
    expect(turnBudgets('u1', 'a1', undefined, { requestsPerMinute: 5 }, { dailyTokenQuota: 0, monthlyTokenQuota: 0 })).toEqual([]);
  });

  it('estimates high rather than low, for Latin and CJK text alike', () => {
    expect(estimateTokens('hello world, hello')).toBeGreaterThanOrEqual(18 / 4);
    expect(estimateTokens('你好世界')).toBeGreaterThanOrEqual(4);
    expect(estimatePromptTokens([{ content: 'abc' }, { content: [{ type: 'text', text: 'abcdef' }] }])).toBe(4 + 1 + 4 + 2);
  });
});
