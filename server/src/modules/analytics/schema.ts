import { Type, type Static } from '@sinclair/typebox';

/** Request and response schemas of /api/admin/analytics. */

export const UsageQuerySchema = Type.Object(
  {
    from: Type.Optional(Type.String({ format: 'date-time', maxLength: 40, description: 'Inclusive start (ISO 8601); default: 7 days before `to`' })),
    to: Type.Optional(Type.String({ format: 'date-time', maxLength: 40, description: 'Exclusive end (ISO 8601); default: now' })),
    bucket: Type.Optional(Type.Union([Type.Literal('hour'), Type.Literal('day')], { description: 'Series step; default: hour for ranges up to 2 days, else day' })),
    agentId: Type.Optional(Type.String({ minLength: 1, maxLength: 64, description: 'Only this agent' })),
  },
  { additionalProperties: false },
);
export type UsageQueryInput = Static<typeof UsageQuerySchema>;

const Nullable = <T extends ReturnType<typeof Type.Number>>(t: T) => Type.Union([t, Type.Null()]);
const PercentilesSchema = Type.Object({ p50: Nullable(Type.Number()), p95: Nullable(Type.Number()), p99: Nullable(Type.Number()) });

const figures = {
  turns: Type.Integer(),
  errors: Type.Integer(),
  stopped: Type.Integer(),
  errorRate: Type.Number(),
  promptTokens: Type.Integer(),
  completionTokens: Type.Integer(),
  totalTokens: Type.Integer(),
  firstTokenMs: PercentilesSchema,
  totalMs: PercentilesSchema,
};

export const UsageReportSchema = Type.Object({
  range: Type.Object({
    from: Type.String({ format: 'date-time' }),
    to: Type.String({ format: 'date-time' }),
    bucket: Type.Union([Type.Literal('hour'), Type.Literal('day')]),
    agentId: Type.Union([Type.String(), Type.Null()]),
  }),
  totals: Type.Object({ ...figures, conversations: Type.Integer(), messages: Type.Integer(), activeUsers: Type.Integer() }),
  series: Type.Array(
    Type.Object({
      t: Type.String({ format: 'date-time' }),
      conversations: Type.Integer(),
      messages: Type.Integer(),
      turns: Type.Integer(),
      errors: Type.Integer(),
      totalTokens: Type.Integer(),
    }),
  ),
  byAgent: Type.Array(Type.Object({ agentId: Type.String(), name: Type.Union([Type.String(), Type.Null()]), ...figures })),
  byProvider: Type.Array(Type.Object({ provider: Type.String(), ...figures })),
});
