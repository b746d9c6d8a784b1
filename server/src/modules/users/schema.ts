import { Type } from '@sinclair/typebox';
import { USERNAME_PATTERN } from './users-service.js';

/** Request and response schemas of /api/admin/users. */

const Role = Type.Union([Type.Literal('user'), Type.Literal('admin')]);
const Status = Type.Union([Type.Literal('active'), Type.Literal('disabled')]);
const Password = Type.String({ minLength: 1, maxLength: 1024 });
const DisplayName = Type.Union([Type.String({ minLength: 1, maxLength: 100 }), Type.Null()]);
const Email = Type.Union([Type.String({ format: 'email', maxLength: 254 }), Type.Null()]);
const Quota = Type.Union([Type.Integer({ minimum: 0, maximum: 2_000_000_000 }), Type.Null()], {
  description: 'Tokens per UTC day; 0 means unlimited, null means the platform default',
});
const MonthlyQuota = Type.Union([Type.Integer({ minimum: 0, maximum: 2_000_000_000 }), Type.Null()], {
  description: 'Tokens per UTC calendar month; 0 means unlimited, null means the platform default',
});
const BudgetUsageSchema = Type.Object({
  limit: Type.Union([Type.Integer(), Type.Null()], { description: 'Tokens allowed in the window; null: unlimited' }),
  own: Type.Boolean({ description: 'The limit is the user\'s own, not the platform default' }),
  used: Type.Union([Type.Integer(), Type.Null()], { description: 'Tokens counted (finished answers and running reservations); null when unlimited or shared state is away' }),
  remaining: Type.Union([Type.Integer(), Type.Null()]),
  resetAt: Type.String({ format: 'date-time' }),
});
export const TokenUsageSchema = Type.Object({ daily: BudgetUsageSchema, monthly: BudgetUsageSchema });

export const UserViewSchema = Type.Object({
  id: Type.String(),
  username: Type.String(),
  displayName: Type.Union([Type.String(), Type.Null()]),
  email: Type.Union([Type.String(), Type.Null()]),
  role: Role,
  status: Status,
  dailyTokenQuota: Type.Union([Type.Integer(), Type.Null()]),
  monthlyTokenQuota: Type.Union([Type.Integer(), Type.Null()]),
  tokenUsage: Type.Optional(TokenUsageSchema),
  lockedUntil: Type.Union([Type.String({ format: 'date-time' }), Type.Null()], { description: 'Always null: accounts are no longer locked (see /api/admin/users/:id/sign-in-delay)' }),
  createdAt: Type.String({ format: 'date-time' }),
  updatedAt: Type.String({ format: 'date-time' }),
  lastLoginAt: Type.Union([Type.String({ format: 'date-time' }), Type.Null()]),
});

export const UserPageSchema = Type.Object({
  items: Type.Array(UserViewSchema),
  total: Type.Integer(),
  page: Type.Integer(),
  pageSize: Type.Integer(),
});

export const ListUsersQuery = Type.Object(
  {
    q: Type.Optional(Type.String({ maxLength: 100, description: 'Part of the username or display name' })),
    role: Type.Optional(Role),
    status: Type.Optional(Status),
    page: Type.Integer({ minimum: 1, maximum: 100_000, default: 1 }),
    pageSize: Type.Integer({ minimum: 1, maximum: 100, default: 20 }),
  },
  { additionalProperties: false },
);

export const UserParams = Type.Object({ id: Type.String({ format: 'uuid', maxLength: 36 }) }, { additionalProperties: false });

export const CreateUserBody = Type.Object(
  {
    username: Type.String({ pattern: USERNAME_PATTERN, minLength: 3, maxLength: 64 }),
    password: Password,
    displayName: Type.Optional(DisplayName),
    email: Type.Optional(Email),
    role: Type.Optional(Role),
    dailyTokenQuota: Type.Optional(Quota),
    monthlyTokenQuota: Type.Optional(MonthlyQuota),
  },
  { additionalProperties: false },
);

export const UpdateUserBody = Type.Object(
  {
    displayName: Type.Optional(DisplayName),
    email: Type.Optional(Email),
    role: Type.Optional(Role),
    dailyTokenQuota: Type.Optional(Quota),
    monthlyTokenQuota: Type.Optional(MonthlyQuota),
  },
  { additionalProperties: false, minProperties: 1 },
);

export const RoleBody = Type.Object({ role: Role }, { additionalProperties: false });

/** The admin chooses the new password; the server never generates or returns one. */
export const ResetPasswordBody = Type.Object(
  {
    password: Type.Optional(Password),
    /** Same as password (either name is accepted). */
    newPassword: Type.Optional(Password),
    revokeApiKeys: Type.Optional(Type.Boolean({ default: true, description: "Also revoke the user's personal API keys (default true)" })),
  },
  { additionalProperties: false },
);
