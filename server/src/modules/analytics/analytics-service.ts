import { sql, type Kysely } from 'kysely';
import type { Database } from '../../db/schema.js';
import { AppError } from '../../errors.js';

/** Usage analytics for the admin console: what was asked, of which agent and provider, how fast, how often it failed. */

export type Bucket = 'hour' | 'day';

export interface UsageQuery {
  /** Inclusive start. */
  from: Date;
  /** Exclusive end. */
  to: Date;
  bucket: Bucket;
  agentId?: string | undefined;
}

export interface Percentiles {
  p50: number | null;
  p95: number | null;
  p99: number | null;
}

export interface TurnFigures {
  /** Answers (assistant messages) started in the range. */
  turns: number;
  errors: number;
  stopped: number;
  /** errors / turns; 0 when there were no turns. */
  errorRate: number;
  promptTokens: number;
  completionTokens: number;
  totalTokens: number;
  /** Time to first token of answers that got one. */
  firstTokenMs: Percentiles;
  /** Total time of complete answers. */
  totalMs: Percentiles;
}

export interface UsageReport {
  range: { from: string; to: string; bucket: Bucket; agentId: string | null };
  totals: TurnFigures & { conversations: number; messages: number; activeUsers: number };
  series: { t: string; conversations: number; messages: number; turns: number; errors: number; totalTokens: number }[];
  byAgent: (TurnFigures & { agentId: string; name: string | null })[];
  byProvider: (TurnFigures & { provider: string })[];
}

const BUCKET_MS: Record<Bucket, number> = { hour: 3_600_000, day: 86_400_000 };
/** Most points a series may have: a month of hours, or a year and a day of days. */
const MAX_BUCKETS: Record<Bucket, number> = { hour: 24 * 31, day: 367 };

interface FigureRow {
  turns: number;
  errors: number;
  stopped: number;
  prompt_tokens: number;
  completion_tokens: number;
  total_tokens: number;
  ftt: (number | null)[] | null;
  total: (number | null)[] | null;
}

/** The aggregate columns shared by every turn query (assistant messages). */
const FIGURES = sql`
  count(*)::int AS turns,
  count(*) FILTER (WHERE m.status = 'error')::int AS errors,
  count(*) FILTER (WHERE m.status = 'stopped')::int AS stopped,
  coalesce(sum(m.prompt_tokens), 0)::bigint AS prompt_tokens,
  coalesce(sum(m.completion_tokens), 0)::bigint AS completion_tokens,
  coalesce(sum(m.total_tokens), 0)::bigint AS total_tokens,
  percentile_cont(ARRAY[0.5, 0.95, 0.99]) WITHIN GROUP (ORDER BY m.first_token_ms) FILTER (WHERE m.first_token_ms IS NOT NULL) AS ftt,
  percentile_cont(ARRAY[0.5, 0.95, 0.99]) WITHIN GROUP (ORDER BY m.total_ms) FILTER (WHERE m.status = 'complete' AND m.total_ms IS NOT NULL) AS total`;

function percentiles(values: (number | null)[] | null): Percentiles {
  const at = (i: number): number | null => {
    const v = values?.[i];
    return v === null || v === undefined ? null : Math.round(Number(v) * 10) / 10;
  };
  return { p50: at(0), p95: at(1), p99: at(2) };
}

function figures(row: FigureRow | undefined): TurnFigures {
  const turns = Number(row?.turns ?? 0);
  const errors = Number(row?.errors ?? 0);
  return {
    turns,
    errors,
    stopped: Number(row?.stopped ?? 0),
    errorRate: turns === 0 ? 0 : Math.round((errors / turns) * 10_000) / 10_000,
    promptTokens: Number(row?.prompt_tokens ?? 0),
    completionTokens: Number(row?.completion_tokens ?? 0),
    totalTokens: Number(row?.total_tokens ?? 0),
    firstTokenMs: percentiles(row?.ftt ?? null),
    totalMs: percentiles(row?.total ?? null),
  };
}

/** Start of the bucket (UTC) that holds `at`. */
export function bucketStart(at: Date, bucket: Bucket): Date {
  const size = BUCKET_MS[bucket];
  return new Date(Math.floor(at.getTime() / size) * size);
}

/** Checks a range and fills in its defaults: the last 7 days by day, or hours for ranges up to two days. */
export function resolveRange(input: { from?: string | undefined; to?: string | undefined; bucket?: Bucket | undefined; agentId?: string | undefined }, now = new Date()): UsageQuery {
  const to = input.to === undefined ? now : new Date(input.to);
  const from = input.from === undefined ? new Date(to.getTime() - 7 * BUCKET_MS.day) : new Date(input.from);
  if (Number.isNaN(from.getTime()) || Number.isNaN(to.getTime())) throw new AppError('VALIDATION_FAILED', 'from and to must be ISO 8601 date-times');
  if (from.getTime() >= to.getTime()) throw new AppError('INVALID_RANGE', 'from must be before to');
  const span = to.getTime() - from.getTime();
  const bucket = input.bucket ?? (span <= 2 * BUCKET_MS.day ? 'hour' : 'day');
  const buckets = Math.ceil((to.getTime() - bucketStart(from, bucket).getTime()) / BUCKET_MS[bucket]);
  if (buckets > MAX_BUCKETS[bucket]) {
    throw new AppError('INVALID_RANGE', `That range has ${buckets} ${bucket}s; at most ${MAX_BUCKETS[bucket]} fit in one report (${bucket === 'hour' ? 'use bucket=day' : 'narrow the range'})`);
  }
  return { from, to, bucket, agentId: input.agentId };
}

export function createAnalyticsService(deps: { db: Kysely<Database> }) {
  const { db } = deps;

  return {
    async usage(query: UsageQuery): Promise<UsageReport> {
      const { from, to, bucket } = query;
      const agentFilter = query.agentId === undefined ? sql`` : sql`AND m.agent_id = ${query.agentId}`;
      const sessionAgentFilter = query.agentId === undefined ? sql`` : sql`AND s.agent_id = ${query.agentId}`;
      // Questions and answers alike belong to the agent of their session.
      const sessionScope = query.agentId === undefined ? sql`` : sql`AND m.session_id IN (SELECT s.id FROM chat_sessions s WHERE s.agent_id = ${query.agentId})`;
      const inRange = sql`m.created_at >= ${from} AND m.created_at < ${to}`;
      const bucketSql = sql.lit(bucket);

      const [totals, people, byAgent, byProvider, turnSeries, messageSeries, sessionSeries] = await Promise.all([
        sql<FigureRow>`SELECT ${FIGURES} FROM messages m WHERE m.role = 'assistant' AND ${inRange} ${agentFilter}`.execute(db),
        sql<{ conversations: number; messages: number; active_users: number }>`
          SELECT
            (SELECT count(*)::int FROM chat_sessions s WHERE s.created_at >= ${from} AND s.created_at < ${to} ${sessionAgentFilter}) AS conversations,
            (SELECT count(*)::int FROM messages m WHERE ${inRange} ${sessionScope}) AS messages,
            (SELECT count(DISTINCT m.user_id)::int FROM messages m WHERE m.role = 'user' AND ${inRange} ${sessionScope}) AS active_users`.execute(db),
        sql<FigureRow & { agent_id: string; name: string | null }>`
          SELECT m.agent_id, max(a.name) AS name, ${FIGURES}
          FROM messages m LEFT JOIN agents a ON a.id = m.agent_id
          WHERE m.role = 'assistant' AND m.agent_id IS NOT NULL AND ${inRange} ${agentFilter}
          GROUP BY m.agent_id ORDER BY turns DESC, m.agent_id`.execute(db),
        sql<FigureRow & { provider: string }>`
          SELECT m.provider, ${FIGURES}
          FROM messages m
          WHERE m.role = 'assistant' AND m.provider IS NOT NULL AND ${inRange} ${agentFilter}
          GROUP BY m.provider ORDER BY turns DESC, m.provider`.execute(db),
        sql<{ t: Date; turns: number; errors: number; total_tokens: number }>`
          SELECT date_trunc(${bucketSql}, m.created_at, 'UTC') AS t, count(*)::int AS turns,
                 count(*) FILTER (WHERE m.status = 'error')::int AS errors, coalesce(sum(m.total_tokens), 0)::bigint AS total_tokens
          FROM messages m WHERE m.role = 'assistant' AND ${inRange} ${agentFilter}
          GROUP BY 1`.execute(db),
        sql<{ t: Date; messages: number }>`
          SELECT date_trunc(${bucketSql}, m.created_at, 'UTC') AS t, count(*)::int AS messages
          FROM messages m WHERE ${inRange} ${sessionScope}
          GROUP BY 1`.execute(db),
        sql<{ t: Date; conversations: number }>`
          SELECT date_trunc(${bucketSql}, s.created_at, 'UTC') AS t, count(*)::int AS conversations
          FROM chat_sessions s WHERE s.created_at >= ${from} AND s.created_at < ${to} ${sessionAgentFilter}
          GROUP BY 1`.execute(db),
      ]);

      // Every bucket of the range, empty ones included, so a chart's time axis has no holes.
      const points = new Map<number, UsageReport['series'][number]>();
      const size = BUCKET_MS[bucket];
      for (let t = bucketStart(from, bucket).getTime(); t < to.getTime(); t += size) {
        points.set(t, { t: new Date(t).toISOString(), conversations: 0, messages: 0, turns: 0, errors: 0, totalTokens: 0 });
      }
      const point = (t: Date) => points.get(new Date(t).getTime());
      for (const r of turnSeries.rows) {
        const p = point(r.t);
        if (!p) continue;
        p.turns = Number(r.turns);
        p.errors = Number(r.errors);
        p.totalTokens = Number(r.total_tokens);
      }
      for (const r of messageSeries.rows) {
        const p = point(r.t);
        if (p) p.messages = Number(r.messages);
      }
      for (const r of sessionSeries.rows) {
        const p = point(r.t);
        if (p) p.conversations = Number(r.conversations);
      }

      const counts = people.rows[0];
      return {
        range: { from: from.toISOString(), to: to.toISOString(), bucket, agentId: query.agentId ?? null },
        totals: {
          ...figures(totals.rows[0]),
          conversations: Number(counts?.conversations ?? 0),
          messages: Number(counts?.messages ?? 0),
          activeUsers: Number(counts?.active_users ?? 0),
        },
        series: [...points.values()],
        byAgent: byAgent.rows.map((r) => ({ agentId: r.agent_id, name: r.name, ...figures(r) })),
        byProvider: byProvider.rows.map((r) => ({ provider: r.provider, ...figures(r) })),
      };
    },
  };
}

export type AnalyticsService = ReturnType<typeof createAnalyticsService>;
