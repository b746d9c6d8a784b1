import { Type } from '@sinclair/typebox';
import { MAX_ROW_ID } from '../../http/bounds.js';

/** Request and response schemas of /api/admin/audit. */

const filters = {
  action: Type.Optional(Type.String({ minLength: 1, maxLength: 100, description: 'Exact action name, e.g. auth.login' })),
  actor: Type.Optional(Type.String({ minLength: 1, maxLength: 100, description: 'Actor user id or username' })),
  from: Type.Optional(Type.String({ format: 'date-time', maxLength: 40, description: 'Inclusive lower bound (ISO 8601)' })),
  to: Type.Optional(Type.String({ format: 'date-time', maxLength: 40, description: 'Inclusive upper bound (ISO 8601)' })),
};

export const AuditListQuery = Type.Object(
  {
    ...filters,
    limit: Type.Integer({ minimum: 1, maximum: 200, default: 50 }),
    before: Type.Optional(Type.Integer({ minimum: 1, maximum: MAX_ROW_ID, description: 'Cursor: nextCursor of the previous page' })),
  },
  { additionalProperties: false },
);

export const AuditExportQuery = Type.Object(
  {
    ...filters,
    limit: Type.Integer({ minimum: 1, maximum: 100_000, default: 10_000, description: 'Most rows to export, newest first' }),
  },
  { additionalProperties: false },
);

export const AuditEntrySchema = Type.Object({
  id: Type.Integer(),
  at: Type.String({ format: 'date-time' }),
  actorId: Type.Union([Type.String(), Type.Null()]),
  actorUsername: Type.Union([Type.String(), Type.Null()]),
  action: Type.String(),
  targetType: Type.Union([Type.String(), Type.Null()]),
  targetId: Type.Union([Type.String(), Type.Null()]),
  success: Type.Boolean(),
  ip: Type.Union([Type.String(), Type.Null()]),
  detail: Type.Union([Type.Record(Type.String(), Type.Unknown()), Type.Null()]),
});

export const AuditPageSchema = Type.Object({
  entries: Type.Array(AuditEntrySchema),
  nextCursor: Type.Union([Type.Integer(), Type.Null()]),
});
