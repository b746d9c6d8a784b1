import { keepPreviousData, useQuery } from '@tanstack/react-query';
import { useMemo, useState } from 'react';
import { useI18n } from '../../i18n/i18n';
import { statsApi, type Percentiles, type UsageBreakdown } from './admin-api';
import { BarChart, LineChart } from './charts';

type Preset = '24h' | '7d' | '30d' | '90d' | 'custom';
const PRESET_HOURS: Record<Exclude<Preset, 'custom'>, number> = { '24h': 24, '7d': 168, '30d': 720, '90d': 2160 };

/** The range asked for: presets end now; hourly buckets up to 2 days, daily beyond. */
function rangeOf(preset: Preset, customFrom: string, customTo: string): { from: string; to: string; bucket: 'hour' | 'day' } | undefined {
  if (preset === 'custom') {
    if (!customFrom || !customTo) return undefined;
    const from = new Date(`${customFrom}T00:00:00`);
    const to = new Date(`${customTo}T00:00:00`);
    to.setDate(to.getDate() + 1);
    if (!(to > from)) return undefined;
    return { from: from.toISOString(), to: to.toISOString(), bucket: to.getTime() - from.getTime() <= 2 * 86_400_000 ? 'hour' : 'day' };
  }
  const hours = PRESET_HOURS[preset];
  // Rounded to the minute so the query key stays stable while the page is open.
  const to = new Date(Math.ceil(Date.now() / 60_000) * 60_000);
  const from = new Date(to.getTime() - hours * 3_600_000);
  return { from: from.toISOString(), to: to.toISOString(), bucket: hours <= 48 ? 'hour' : 'day' };
}

const p = (v: Percentiles) => [v.p50, v.p95, v.p99].map((x) => (x === null ? '–' : `${Math.round(x)} ms`)).join(' / ');

function Stat({ label, value, testId }: { label: string; value: string | number; testId?: string }) {
  return (
    <div className="stat" data-testid={testId}>
      <div className="stat-label">{label}</div>
      <div className="stat-value">{value}</div>
    </div>
  );
}

function BreakdownTable({ rows, title }: { rows: UsageBreakdown[]; title: string }) {
  const { t } = useI18n();
  return (
    <div className="table-wrap" tabIndex={0}>
      <table>
        <caption>{title}</caption>
        <thead>
          <tr>
            <th scope="col">{t('admin.key')}</th>
            <th scope="col">{t('admin.answers')}</th>
            <th scope="col">{t('admin.errors')}</th>
            <th scope="col">{t('admin.tokens')}</th>
            <th scope="col">{t('admin.firstToken')}</th>
            <th scope="col">{t('admin.totalLatency')}</th>
          </tr>
        </thead>
        <tbody>
          {rows.map((r) => (
            <tr key={r.key}>
              <th scope="row">{r.key}</th>
              <td>{r.answers}</td>
              <td>{r.errors}</td>
              <td>{r.tokens}</td>
              <td>{p(r.firstTokenMs)}</td>
              <td>{p(r.totalMs)}</td>
            </tr>
          ))}
        </tbody>
      </table>
    </div>
  );
}

/** Usage analytics: a time range, headline figures, charts over time and by agent and provider, latency percentiles. */
export default function UsageAdmin() {
  const { t, language } = useI18n();
  const [preset, setPreset] = useState<Preset>('7d');
  const [customFrom, setCustomFrom] = useState('');
  const [customTo, setCustomTo] = useState('');
  const range = useMemo(() => rangeOf(preset, customFrom, customTo), [preset, customFrom, customTo]);
  const usage = useQuery({
    queryKey: ['admin-usage', range],
    queryFn: () => statsApi.usage(range!.from, range!.to, range!.bucket),
    enabled: range !== undefined,
    placeholderData: keepPreviousData,
  });
  const data = usage.data;
  const labels = useMemo(() => {
    if (!data) return [];
    const fmt = new Intl.DateTimeFormat(language, data.bucket === 'hour' ? { hour: '2-digit', minute: '2-digit' } : { month: 'short', day: 'numeric' });
    return data.series.map((s) => fmt.format(new Date(s.at)));
  }, [data, language]);

  return (
    <section className="card" aria-labelledby="usage-title">
      <div className="card-header">
        <h2 id="usage-title">{t('admin.usageTab')}</h2>
        <div className="toolbar">
          <label htmlFor="usage-range">{t('admin.range')}</label>
          <select id="usage-range" value={preset} onChange={(e) => setPreset(e.target.value as Preset)}>
            <option value="24h">{t('admin.range24h')}</option>
            <option value="7d">{t('admin.range7d')}</option>
            <option value="30d">{t('admin.range30d')}</option>
            <option value="90d">{t('admin.range90d')}</option>
            <option value="custom">{t('admin.rangeCustom')}</option>
          </select>
          {preset === 'custom' && (
            <>
              <label className="visually-hidden" htmlFor="usage-from">
                {t('admin.filterFrom')}
              </label>
              <input id="usage-from" type="date" value={customFrom} onChange={(e) => setCustomFrom(e.target.value)} />
              <label className="visually-hidden" htmlFor="usage-to">
                {t('admin.filterTo')}
              </label>
              <input id="usage-to" type="date" value={customTo} onChange={(e) => setCustomTo(e.target.value)} />
            </>
          )}
        </div>
      </div>
      {usage.isError && (
        <p className="form-error" role="alert">
          {t('common.error', { message: usage.error.message })}
        </p>
      )}
      {data && (
        <>
          <div className="stats">
            <Stat label={t('admin.conversations')} value={data.totals.conversations} testId="stat-conversations" />
            <Stat label={t('admin.questions')} value={data.totals.questions} />
            <Stat label={t('admin.answers')} value={data.totals.answers} testId="stat-answers" />
            <Stat label={t('admin.tokens')} value={data.totals.totalTokens} />
            <Stat label={t('admin.errorRate')} value={`${(data.totals.errorRate * 100).toFixed(1)} %`} testId="stat-error-rate" />
            <Stat label={t('admin.firstToken')} value={p(data.totals.firstTokenMs)} />
            <Stat label={t('admin.totalLatency')} value={p(data.totals.totalMs)} />
          </div>
          <div className="chart-grid">
            <LineChart
              title={t('admin.overTime')}
              labels={labels}
              series={[
                { name: t('admin.conversations'), color: '--chart-1', values: data.series.map((s) => s.conversations) },
                { name: t('admin.answers'), color: '--chart-2', values: data.series.map((s) => s.answers) },
                { name: t('admin.errors'), color: '--chart-3', values: data.series.map((s) => s.errors) },
              ]}
            />
            <LineChart title={t('admin.tokensOverTime')} labels={labels} series={[{ name: t('admin.tokens'), color: '--chart-1', values: data.series.map((s) => s.tokens) }]} />
            <BarChart title={t('admin.perAgent')} labels={data.byAgent.map((a) => a.key)} values={data.byAgent.map((a) => a.answers)} color="--chart-2" />
            <BarChart title={t('admin.perProvider')} labels={data.byProvider.map((a) => a.key)} values={data.byProvider.map((a) => a.answers)} color="--chart-1" />
          </div>
          <h3>{t('admin.latencyTable')}</h3>
          <BreakdownTable rows={data.byAgent} title={t('admin.perAgent')} />
          <BreakdownTable rows={data.byProvider} title={t('admin.perProvider')} />
        </>
      )}
    </section>
  );
}
