/**
 * The one list of stable error codes. Clients switch on `code`; the message is
 * for people. Add codes here, never inline at a throw site.
 */
export const ErrorCodes = {
  // 400
  VALIDATION_FAILED: 400,
  INVALID_JSON: 400,
  MALFORMED_REQUEST: 400,
  UPSTREAM_BAD_REQUEST: 400,
  IDEMPOTENCY_KEY_INVALID: 400,
  UPSTREAM_CONTEXT_LENGTH_EXCEEDED: 400,
  UPSTREAM_ADDRESS_FORBIDDEN: 400,
  UNSUPPORTED_MEDIA_TYPE: 415,
  PAYLOAD_TOO_LARGE: 413,
  HEADERS_TOO_LARGE: 431,
  // 401
  UNAUTHENTICATED: 401,
  TOKEN_EXPIRED: 401,
  TOKEN_INVALID: 401,
  INVALID_CREDENTIALS: 401,
  REFRESH_TOKEN_INVALID: 401,
  REFRESH_TOKEN_REUSED: 401,
  API_KEY_INVALID: 401,
  TOKEN_REVOKED: 401,
  // 403
  FORBIDDEN: 403,
  ACCOUNT_DISABLED: 403,
  REGISTRATION_CLOSED: 403,
  CURRENT_PASSWORD_INCORRECT: 403,
  INSUFFICIENT_SCOPE: 403,
  CROSS_SITE_REQUEST: 403,
  // 404
  NOT_FOUND: 404,
  AGENT_NOT_FOUND: 404,
  SESSION_NOT_FOUND: 404,
  MESSAGE_NOT_FOUND: 404,
  USER_NOT_FOUND: 404,
  API_KEY_NOT_FOUND: 404,
  GENERATION_NOT_FOUND: 404,
  SHARE_NOT_FOUND: 404,
  // 408
  REQUEST_TIMEOUT: 408,
  // 409
  USERNAME_TAKEN: 409,
  AGENT_EXISTS: 409,
  AGENT_INACTIVE: 409,
  GENERATION_RUNNING: 409,
  NOTHING_TO_RETRY: 409,
  NOT_LAST_QUESTION: 409,
  NOTHING_TO_CONTINUE: 409,
  CANNOT_CONTINUE: 409,
  LAST_ADMIN: 409,
  API_KEY_LIMIT_REACHED: 409,
  IDEMPOTENCY_KEY_IN_PROGRESS: 409,
  // 422
  AGENTS_CONFIG_INVALID: 422,
  PASSWORD_TOO_WEAK: 422,
  IDEMPOTENCY_KEY_REUSED: 422,
  UPSTREAM_CONTENT_POLICY: 422,
  // 429
  RATE_LIMITED: 429,
  QUOTA_EXCEEDED: 429,
  // 5xx
  INTERNAL: 500,
  UPSTREAM_ERROR: 502,
  UPSTREAM_AUTH_FAILED: 502,
  UPSTREAM_INTERRUPTED: 502,
  UPSTREAM_UNAVAILABLE: 503,
  UPSTREAM_RATE_LIMITED: 503,
  UPSTREAM_CIRCUIT_OPEN: 503,
  UPSTREAM_BUSY: 503,
  OVERLOADED: 503,
  UPSTREAM_TIMEOUT: 504,
  DATABASE_UNAVAILABLE: 503,
  SHARED_STATE_UNAVAILABLE: 503,
  NOT_READY: 503,
} as const;

export type ErrorCode = keyof typeof ErrorCodes;

export class AppError extends Error {
  readonly statusCode: number;
  constructor(
    readonly code: ErrorCode,
    message: string,
    readonly details?: unknown,
    readonly headers?: Record<string, string>,
  ) {
    super(message);
    this.name = 'AppError';
    this.statusCode = ErrorCodes[code];
  }
}

export function notFound(code: ErrorCode & `${string}NOT_FOUND`, what: string): AppError {
  return new AppError(code, `${what} was not found`);
}

export interface ErrorBody {
  error: { code: string; message: string; requestId: string; details?: unknown };
}
