import { useId } from 'react';
import { useI18n } from '../../i18n/i18n';

/**
 * Small SVG charts for the usage page, drawn by hand: two chart shapes do
 * not justify a charting library. Each chart has a text summary for screen
 * readers and its data as a table behind a disclosure.
 */

export interface Series {
  name: string;
  /** A CSS colour variable name defined in styles.css. */
  color: string;
  values: number[];
}

const W = 640;
const H = 200;
const PAD = { left: 44, right: 12, top: 12, bottom: 28 };

function niceMax(n: number): number {
  if (n <= 0) return 1;
  const p = 10 ** Math.floor(Math.log10(n));
  return Math.ceil(n / p) * p;
}

function DataTable({ labels, series }: { labels: string[]; series: Series[] }) {
  const { t } = useI18n();
  return (
    <details className="chart-data">
      <summary>{t('admin.showData')}</summary>
      <div className="table-wrap" tabIndex={0}>
        <table>
          <thead>
            <tr>
              <th scope="col">{t('admin.key')}</th>
              {series.map((s) => (
                <th scope="col" key={s.name}>
                  {s.name}
                </th>
              ))}
            </tr>
          </thead>
          <tbody>
            {labels.map((label, i) => (
              <tr key={label}>
                <th scope="row">{label}</th>
                {series.map((s) => (
                  <td key={s.name}>{s.values[i] ?? 0}</td>
                ))}
              </tr>
            ))}
          </tbody>
        </table>
      </div>
    </details>
  );
}

/** Lines over time, one per series. */
export function LineChart({ title, labels, series }: { title: string; labels: string[]; series: Series[] }) {
  const { t } = useI18n();
  const id = useId();
  const max = niceMax(Math.max(0, ...series.flatMap((s) => s.values)));
  const n = labels.length;
  const x = (i: number) => PAD.left + (n <= 1 ? 0 : (i * (W - PAD.left - PAD.right)) / (n - 1));
  const y = (v: number) => PAD.top + (H - PAD.top - PAD.bottom) * (1 - v / max);
  const tickEvery = Math.max(1, Math.ceil(n / 6));
  return (
    <figure className="chart" aria-labelledby={id}>
      <figcaption id={id}>{title}</figcaption>
      <svg viewBox={`0 0 ${W} ${H}`} role="img" aria-label={t('admin.chartSummary', { title, count: n, max: Math.max(0, ...series.flatMap((s) => s.values)) })}>
        {[0, 0.5, 1].map((f) => (
          <g key={f}>
            <line x1={PAD.left} x2={W - PAD.right} y1={y(max * f)} y2={y(max * f)} className="grid" />
            <text x={PAD.left - 6} y={y(max * f) + 4} textAnchor="end" className="axis">
              {Number.isInteger(max * f) ? max * f : (max * f).toFixed(1)}
            </text>
          </g>
        ))}
        {labels.map((label, i) =>
          i % tickEvery === 0 ? (
            <text key={label} x={x(i)} y={H - 8} textAnchor="middle" className="axis">
              {label}
            </text>
          ) : null,
        )}
        {series.map((s) => (
          <polyline key={s.name} fill="none" strokeWidth={2} style={{ stroke: `var(${s.color})` }} points={s.values.map((v, i) => `${x(i)},${y(v)}`).join(' ')} />
        ))}
      </svg>
      <ul className="legend">
        {series.map((s) => (
          <li key={s.name}>
            <span className="swatch" style={{ background: `var(${s.color})` }} aria-hidden="true" />
            {s.name}
          </li>
        ))}
      </ul>
      <DataTable labels={labels} series={series} />
    </figure>
  );
}

/** Horizontal bars, one per label. */
export function BarChart({ title, labels, values, color }: { title: string; labels: string[]; values: number[]; color: string }) {
  const { t } = useI18n();
  const id = useId();
  const max = niceMax(Math.max(0, ...values));
  const row = 26;
  const height = Math.max(1, labels.length) * row + 8;
  const left = 120;
  return (
    <figure className="chart" aria-labelledby={id}>
      <figcaption id={id}>{title}</figcaption>
      <svg viewBox={`0 0 ${W} ${height}`} role="img" aria-label={t('admin.chartSummary', { title, count: labels.length, max: Math.max(0, ...values) })}>
        {labels.map((label, i) => {
          const v = values[i] ?? 0;
          const w = ((W - left - 60) * v) / max;
          return (
            <g key={label}>
              <text x={left - 8} y={i * row + 20} textAnchor="end" className="axis">
                {label.length > 16 ? `${label.slice(0, 15)}…` : label}
              </text>
              <rect x={left} y={i * row + 6} width={Math.max(w, v > 0 ? 2 : 0)} height={row - 10} rx={3} style={{ fill: `var(${color})` }} />
              <text x={left + w + 6} y={i * row + 20} className="axis">
                {v}
              </text>
            </g>
          );
        })}
      </svg>
      <DataTable labels={labels} series={[{ name: title, color, values }]} />
    </figure>
  );
}
