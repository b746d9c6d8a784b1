import { Type, type Static } from '@sinclair/typebox';

/** Request and response schemas of /api/admin/usage and /api/admin/system. */

export const USAGE_LIMITS = {
  /** Most buckets one answer may hold: an hourly range up to 7 days, a daily one up to 366. */
  hourBuckets: 7 * 24,
  dayBuckets: 366,
} as const;

export const UsageQuery = Type.Object(
  {
    from: Type.String({ format: 'date-time', maxLength: 40, description: 'Inclusive start (ISO 8601)' }),
    to: Type.String({ format: 'date-time', maxLength: 40, description: 'Exclusive end (ISO 8601), after from' }),
    bucket: Type.Optional(Type.Union([Type.Literal('hour'), Type.Literal('day')], { description: 'Series resolution; default day' })),
  },
  { additionalProperties: false },
);
export type UsageQuery = Static<typeof UsageQuery>;

const Percentiles = Type.Object({
  p50: Type.Union([Type.Number(), Type.Null()]),
  p95: Type.Union([Type.Number(), Type.Null()]),
  p99: Type.Union([Type.Number(), Type.Null()]),
});

const Breakdown = Type.Object({
  key: Type.String({ description: 'Agent id or provider name' }),
  answers: Type.Integer(),
  errors: Type.Integer(),
  tokens: Type.Integer(),
  firstTokenMs: Percentiles,
  totalMs: Percentiles,
});

export const UsageReport = Type.Object({
  from: Type.String(),
  to: Type.String(),
  bucket: Type.Union([Type.Literal('hour'), Type.Literal('day')]),
  totals: Type.Object({
    conversations: Type.Integer({ description: 'Sessions started in the range' }),
    questions: Type.Integer(),
    answers: Type.Integer(),
    errors: Type.Integer({ description: 'Answers that ended in error' }),
    errorRate: Type.Number({ description: 'errors / answers (0 when there are none)' }),
    promptTokens: Type.Integer(),
    completionTokens: Type.Integer(),
    totalTokens: Type.Integer(),
    firstTokenMs: Percentiles,
    totalMs: Percentiles,
  }),
  series: Type.Array(
    Type.Object({
      at: Type.String({ description: 'Bucket start, UTC' }),
      conversations: Type.Integer(),
      questions: Type.Integer(),
      answers: Type.Integer(),
      errors: Type.Integer(),
      tokens: Type.Integer(),
    }),
  ),
  byAgent: Type.Array(Breakdown),
  byProvider: Type.Array(Breakdown),
});
export type UsageReport = Static<typeof UsageReport>;

const DependencyStatus = Type.Object({
  ok: Type.Boolean(),
  kind: Type.String(),
  latencyMs: Type.Optional(Type.Number()),
  error: Type.Optional(Type.String()),
});

export const SystemStatus = Type.Object({
  version: Type.String(),
  node: Type.String(),
  uptimeSeconds: Type.Integer(),
  startedAt: Type.String(),
  dependencies: Type.Object({ database: DependencyStatus, sharedState: DependencyStatus }),
  agents: Type.Object({ total: Type.Integer(), active: Type.Integer() }),
  generations: Type.Object({ running: Type.Integer({ description: 'Answers streaming on this instance' }) }),
});
export type SystemStatus = Static<typeof SystemStatus>;
