import type { BudgetUsage, TokenUsage } from '../../api/types';
import { useI18n } from '../../i18n/i18n';

/** One budget in a line: used of limit and what is left, or unlimited. */
export function BudgetText({ budget }: { budget: BudgetUsage }) {
  const { t, language } = useI18n();
  const n = (v: number) => v.toLocaleString(language);
  if (budget.limit === null) return <span>{t('tokens.unlimited')}</span>;
  const text =
    budget.used === null || budget.remaining === null
      ? t('tokens.limitOnly', { limit: n(budget.limit) })
      : t('tokens.usedOf', { used: n(budget.used), limit: n(budget.limit), remaining: n(budget.remaining) });
  return (
    <span>
      {text}
      {!budget.own && <span className="muted small"> ({t('tokens.platformDefault')})</span>}
    </span>
  );
}

/** The day's and month's budgets with a meter each (the profile page). */
export function TokenBudget({ usage }: { usage: TokenUsage }) {
  const { t, language } = useI18n();
  const rows: [string, BudgetUsage][] = [
    [t('tokens.daily'), usage.daily],
    [t('tokens.monthly'), usage.monthly],
  ];
  return (
    <dl className="token-budget" data-testid="token-budget">
      {rows.map(([label, budget]) => (
        <div key={label}>
          <dt>{label}</dt>
          <dd>
            <BudgetText budget={budget} />
            {budget.limit !== null && budget.used !== null && (
              <meter min={0} max={budget.limit} low={budget.limit * 0.5} high={budget.limit * 0.8} optimum={0} value={Math.min(budget.used, budget.limit)} aria-label={label} />
            )}
            {budget.limit !== null && <div className="muted small">{t('tokens.resets', { date: new Date(budget.resetAt).toLocaleString(language) })}</div>}
          </dd>
        </div>
      ))}
    </dl>
  );
}
