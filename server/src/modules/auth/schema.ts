import { Type } from '@sinclair/typebox';
import { Envelope, ErrorResponse } from '../../http/response.js';
import { USERNAME_PATTERN } from '../users/users-service.js';
import { UserViewSchema } from '../users/schema.js';

/** Request and response schemas of /api/auth. */

/** Longest password accepted on the wire; the policy (8..256) is checked in the service with a clear 422. */
export const PASSWORD_WIRE_MAX = 1024;

const Password = Type.String({ minLength: 1, maxLength: PASSWORD_WIRE_MAX, description: 'Password in clear text (TLS protects it on the wire)' });

export const LoginBody = Type.Object(
  {
    username: Type.String({ minLength: 1, maxLength: 128, description: 'Case-insensitive' }),
    password: Password,
  },
  { additionalProperties: false },
);

export const RegisterBody = Type.Object(
  {
    username: Type.String({ pattern: USERNAME_PATTERN, minLength: 3, maxLength: 64, description: 'Letters, digits, _ . @ -' }),
    password: Password,
    displayName: Type.Optional(Type.String({ minLength: 1, maxLength: 100 })),
    email: Type.Optional(Type.String({ format: 'email', maxLength: 254 })),
  },
  { additionalProperties: false },
);

export const ChangePasswordBody = Type.Object(
  {
    oldPassword: Type.Optional(Password),
    /** Same as oldPassword (either name is accepted). */
    currentPassword: Type.Optional(Password),
    newPassword: Password,
    revokeApiKeys: Type.Optional(Type.Boolean({ default: true, description: 'Also revoke your personal API keys (default true): do it when the password may have leaked' })),
  },
  { additionalProperties: false },
);

const ScopeSchema = Type.Union([Type.Literal('chat'), Type.Literal('admin'), Type.Literal('keys')], {
  description: '`chat`: chat and the rest of your own API (every key has it); `admin`: admin routes (admins only); `keys`: create and revoke API keys',
});

export const CreateApiKeyBody = Type.Object(
  {
    name: Type.String({ minLength: 1, maxLength: 100, description: 'What the key is for, to recognise it later' }),
    expiresInDays: Type.Optional(Type.Integer({ minimum: 1, maximum: 3650, description: 'Absent: API_KEY_DEFAULT_EXPIRY_DAYS (90 unless configured; 0 there means never)' })),
    scopes: Type.Optional(Type.Array(ScopeSchema, { maxItems: 3, uniqueItems: true, description: 'Absent: ["chat"]' })),
  },
  { additionalProperties: false },
);

export const ApiKeyParams = Type.Object({ id: Type.String({ format: 'uuid', maxLength: 36 }) }, { additionalProperties: false });

export const SessionUserSchema = Type.Object({
  id: Type.String(),
  username: Type.String(),
  displayName: Type.Union([Type.String(), Type.Null()]),
  role: Type.Union([Type.Literal('user'), Type.Literal('admin')]),
});

/** Login, refresh and registration answer with the access token; the refresh token travels only in the cookie. */
export const SessionResponse = Type.Object({
  token: Type.String({ description: 'Access token (JWT)' }),
  accessToken: Type.String({ description: 'Same as token' }),
  expiresIn: Type.Integer({ description: 'Seconds until the access token expires' }),
  user: SessionUserSchema,
});

export const ApiKeySchema = Type.Object({
  id: Type.String(),
  name: Type.String(),
  prefix: Type.String({ description: 'The first characters of the key, to recognise it' }),
  createdAt: Type.String({ format: 'date-time' }),
  lastUsedAt: Type.Union([Type.String({ format: 'date-time' }), Type.Null()]),
  expiresAt: Type.Union([Type.String({ format: 'date-time' }), Type.Null()]),
  revokedAt: Type.Union([Type.String({ format: 'date-time' }), Type.Null()]),
  scopes: Type.Array(ScopeSchema),
});

export const CreatedApiKeySchema = Type.Object({
  key: Type.String({ description: 'The full key, shown only in this response' }),
  apiKey: ApiKeySchema,
});

export const Errors = { '4xx': ErrorResponse, '5xx': ErrorResponse };

export const Done = Envelope(Type.Object({ done: Type.Literal(true) }));

/** A password change ends every other credential, this session's access token included: here is its successor. */
export const PasswordChanged = Envelope(
  Type.Object({
    done: Type.Literal(true),
    accessToken: Type.String({ description: 'A new access token for this session; the one that made the request no longer works' }),
    expiresIn: Type.Integer({ description: 'Seconds until it expires' }),
    apiKeysRevoked: Type.Integer({ description: 'How many of your API keys were revoked' }),
  }),
);
export const ProfileResponse = Envelope(UserViewSchema);

export const AuthOptionsSchema = Type.Object({
  registrationOpen: Type.Boolean({ description: 'Whether POST /api/auth/register accepts new accounts (OPEN_REGISTRATION)' }),
});
