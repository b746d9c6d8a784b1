import { sql, type Kysely } from 'kysely';
import type { Database } from '../../db/schema.js';
import { AppError } from '../../errors.js';
import { USAGE_LIMITS, type UsageReport } from './schema.js';

type Bucket = 'hour' | 'day';
const STEP_MS: Record<Bucket, number> = { hour: 3_600_000, day: 86_400_000 };

/** Checks a usage range: a real interval, not too many buckets. Bad input is a 400 that names the problem. */
export function usageRange(fromText: string, toText: string, bucket: Bucket): { from: Date; to: Date } {
  const from = new Date(fromText);
  const to = new Date(toText);
  if (Number.isNaN(from.getTime()) || Number.isNaN(to.getTime())) throw new AppError('VALIDATION_FAILED', 'from and to must be ISO 8601 date-times');
  if (to.getTime() <= from.getTime()) throw new AppError('VALIDATION_FAILED', 'to must be after from');
  const buckets = Math.ceil((to.getTime() - floorTo(from, bucket).getTime()) / STEP_MS[bucket]);
  const max = bucket === 'hour' ? USAGE_LIMITS.hourBuckets : USAGE_LIMITS.dayBuckets;
  if (buckets > max) throw new AppError('VALIDATION_FAILED', `The range holds ${buckets} ${bucket} buckets; at most ${max} (use bucket=day or a shorter range)`);
  return { from, to };
}

/** Start of the UTC hour or day that holds `d`. */
export function floorTo(d: Date, bucket: Bucket): Date {
  const t = new Date(d);
  t.setUTCMinutes(0, 0, 0);
  if (bucket === 'day') t.setUTCHours(0);
  return t;
}

const num = (v: unknown): number => (v === null || v === undefined ? 0 : Number(v));
const ms = (v: unknown): number | null => (v === null || v === undefined ? null : Math.round(Number(v) * 10) / 10);

interface BreakdownRow {
  key: string | null;
  answers: string | number;
  errors: string | number;
  tokens: string | number | null;
  ft50: unknown;
  ft95: unknown;
  ft99: unknown;
  tt50: unknown;
  tt95: unknown;
  tt99: unknown;
}

function percentiles(row: Pick<BreakdownRow, 'ft50' | 'ft95' | 'ft99' | 'tt50' | 'tt95' | 'tt99'> | undefined) {
  return {
    firstTokenMs: { p50: ms(row?.ft50), p95: ms(row?.ft95), p99: ms(row?.ft99) },
    totalMs: { p50: ms(row?.tt50), p95: ms(row?.tt95), p99: ms(row?.tt99) },
  };
}

/**
 * Usage over [from, to): conversations and messages per bucket, answers,
 * tokens, errors and latency percentiles, per agent and per provider. Reads
 * from the reader (replica lag is fine for analytics). Deleted sessions take
 * their messages with them, so they leave the figures too.
 */
export async function usageReport(db: Kysely<Database>, range: { from: Date; to: Date }, bucket: Bucket): Promise<UsageReport> {
  const { from, to } = range;
  const unit = sql.lit(bucket);
  const bucketKey = (column: string) => sql<string>`to_char(date_trunc(${unit}, ${sql.ref(column)} AT TIME ZONE 'UTC'), 'YYYY-MM-DD"T"HH24:00:00"Z"')`;
  const latency = sql`
    percentile_cont(0.5) WITHIN GROUP (ORDER BY first_token_ms) AS ft50,
    percentile_cont(0.95) WITHIN GROUP (ORDER BY first_token_ms) AS ft95,
    percentile_cont(0.99) WITHIN GROUP (ORDER BY first_token_ms) AS ft99,
    percentile_cont(0.5) WITHIN GROUP (ORDER BY total_ms) AS tt50,
    percentile_cont(0.95) WITHIN GROUP (ORDER BY total_ms) AS tt95,
    percentile_cont(0.99) WITHIN GROUP (ORDER BY total_ms) AS tt99`;

  const [messageSeries, sessionSeries, totals, byAgent, byProvider] = await Promise.all([
    sql<{ at: string; questions: string; answers: string; errors: string; tokens: string | null }>`
      SELECT ${bucketKey('created_at')} AS at,
        count(*) FILTER (WHERE role = 'user') AS questions,
        count(*) FILTER (WHERE role = 'assistant') AS answers,
        count(*) FILTER (WHERE role = 'assistant' AND status = 'error') AS errors,
        sum(total_tokens) AS tokens
      FROM messages WHERE created_at >= ${from} AND created_at < ${to}
      GROUP BY 1`.execute(db),
    sql<{ at: string; conversations: string }>`
      SELECT ${bucketKey('created_at')} AS at, count(*) AS conversations
      FROM chat_sessions WHERE created_at >= ${from} AND created_at < ${to}
      GROUP BY 1`.execute(db),
    sql<{ questions: string; answers: string; errors: string; prompt: string | null; completion: string | null; total: string | null } & Omit<BreakdownRow, 'key' | 'answers' | 'errors' | 'tokens'>>`
      SELECT
        count(*) FILTER (WHERE role = 'user') AS questions,
        count(*) FILTER (WHERE role = 'assistant') AS answers,
        count(*) FILTER (WHERE role = 'assistant' AND status = 'error') AS errors,
        sum(prompt_tokens) AS prompt, sum(completion_tokens) AS completion, sum(total_tokens) AS total,
        ${latency}
      FROM messages WHERE created_at >= ${from} AND created_at < ${to}`.execute(db),
    sql<BreakdownRow>`
      SELECT agent_id AS key, count(*) AS answers, count(*) FILTER (WHERE status = 'error') AS errors, sum(total_tokens) AS tokens, ${latency}
      FROM messages WHERE role = 'assistant' AND created_at >= ${from} AND created_at < ${to}
      GROUP BY agent_id ORDER BY count(*) DESC, agent_id`.execute(db),
    sql<BreakdownRow>`
      SELECT provider AS key, count(*) AS answers, count(*) FILTER (WHERE status = 'error') AS errors, sum(total_tokens) AS tokens, ${latency}
      FROM messages WHERE role = 'assistant' AND created_at >= ${from} AND created_at < ${to}
      GROUP BY provider ORDER BY count(*) DESC, provider`.execute(db),
  ]);

  // Every bucket of the range, empty ones included, so a chart's x axis is even.
  const byAt = new Map(messageSeries.rows.map((r) => [r.at, r]));
  const sessionsAt = new Map(sessionSeries.rows.map((r) => [r.at, num(r.conversations)]));
  const series: UsageReport['series'] = [];
  for (let t = floorTo(from, bucket).getTime(); t < to.getTime(); t += STEP_MS[bucket]) {
    const at = new Date(t).toISOString().replace('.000Z', 'Z');
    const row = byAt.get(at);
    series.push({ at, conversations: sessionsAt.get(at) ?? 0, questions: num(row?.questions), answers: num(row?.answers), errors: num(row?.errors), tokens: num(row?.tokens) });
  }

  const t = totals.rows[0];
  const answers = num(t?.answers);
  const errors = num(t?.errors);
  const breakdown = (rows: BreakdownRow[]) =>
    rows.map((r) => ({ key: r.key ?? '(none)', answers: num(r.answers), errors: num(r.errors), tokens: num(r.tokens), ...percentiles(r) }));
  return {
    from: from.toISOString(),
    to: to.toISOString(),
    bucket,
    totals: {
      conversations: series.reduce((s, b) => s + b.conversations, 0),
      questions: num(t?.questions),
      answers,
      errors,
      errorRate: answers === 0 ? 0 : Math.round((errors / answers) * 10_000) / 10_000,
      promptTokens: num(t?.prompt),
      completionTokens: num(t?.completion),
      totalTokens: num(t?.total),
      ...percentiles(t),
    },
    series,
    byAgent: breakdown(byAgent.rows),
    byProvider: breakdown(byProvider.rows),
  };
}
