import { ErrorCodes, type ErrorBody, type ErrorCode } from '../../errors.js';

/**
 * Errors of `/v1` in OpenAI's shape, `{error: {message, type, param, code}}`,
 * with the statuses OpenAI's SDKs turn into their error classes (400
 * BadRequestError, 401 AuthenticationError, 403 PermissionDeniedError, 404
 * NotFoundError, 429 RateLimitError, 5xx InternalServerError). `code` is
 * OpenAI's where one exists (`model_not_found`, `rate_limit_exceeded`,
 * `context_length_exceeded`), else our stable code (`QUOTA_EXCEEDED` …)
 * (errors.ts) as on every other route; `requestId` is ours too.
 */
export interface OpenAIErrorBody {
  error: { message: string; type: string; param: string | null; code: string | null; requestId?: string | undefined };
}

/** Where `/v1` (both wire formats) answers with another status than the rest of the API, so SDKs raise the class that fits. */
const STATUS_FOR_SDKS: Partial<Record<ErrorCode, number>> = {
  // The provider's rate limit reaches the caller as one: the SDK backs off and retries after Retry-After.
  UPSTREAM_RATE_LIMITED: 429,
  // OpenAI refuses content with a 400.
  UPSTREAM_CONTENT_POLICY: 400,
  // A disabled agent is a model this key cannot use.
  AGENT_INACTIVE: 404,
};

const OPENAI_CODES: Partial<Record<ErrorCode, string>> = {
  AGENT_NOT_FOUND: 'model_not_found',
  AGENT_INACTIVE: 'model_not_found',
  RATE_LIMITED: 'rate_limit_exceeded',
  UPSTREAM_RATE_LIMITED: 'rate_limit_exceeded',
  UPSTREAM_CONTEXT_LENGTH_EXCEEDED: 'context_length_exceeded',
  UPSTREAM_CONTENT_POLICY: 'content_policy_violation',
};

/** The HTTP status of one of our errors on `/v1`. */
export function compatStatus(code: ErrorCode): number {
  return STATUS_FOR_SDKS[code] ?? ErrorCodes[code];
}

/** The `code` a `/v1` error carries for one of ours. */
export function openAICodeFor(code: ErrorCode): string {
  return OPENAI_CODES[code] ?? code;
}

/** The codes `/v1` may answer with besides ours. */
export const OPENAI_ERROR_CODES: ReadonlySet<string> = new Set(Object.values(OPENAI_CODES));

const PARAMS: Partial<Record<ErrorCode, string>> = {
  AGENT_NOT_FOUND: 'model',
  AGENT_INACTIVE: 'model',
  UPSTREAM_CONTEXT_LENGTH_EXCEEDED: 'messages',
};

function typeFor(status: number): string {
  if (status === 401) return 'authentication_error';
  if (status === 403) return 'permission_error';
  if (status === 429) return 'rate_limit_error';
  if (status >= 500) return 'server_error';
  return 'invalid_request_error';
}

/** `/messages/0/role` → `messages[0].role`, as OpenAI names a parameter. */
export function paramFromPath(path: string): string | null {
  const parts = path.split('/').filter(Boolean);
  if (parts.length === 0) return null;
  return parts.map((p, i) => (/^\d+$/.test(p) ? `[${p}]` : i === 0 ? p : `.${p}`)).join('');
}

export function isErrorCode(code: string): code is ErrorCode {
  return Object.hasOwn(ErrorCodes, code);
}

/** The status and OpenAI body for one of our errors. */
export function openAIError(code: ErrorCode, message: string, requestId: string | undefined, param?: string | null): { status: number; body: OpenAIErrorBody } {
  const status = compatStatus(code);
  return {
    status,
    body: { error: { message, type: typeFor(status), param: param ?? PARAMS[code] ?? null, code: openAICodeFor(code), requestId } },
  };
}

/** Our error envelope as the app's error handler wrote it, read back; undefined when the body is not one. */
export function parseOurError(payload: string): { code: ErrorCode; message: string; requestId: string | undefined; path: string | undefined } | undefined {
  let parsed: ErrorBody;
  try {
    parsed = JSON.parse(payload) as ErrorBody;
  } catch {
    return undefined;
  }
  // Ours is `{error}` alone; a body already in another shape (Anthropic's has `type` beside it) is left as it is.
  if (parsed === null || typeof parsed !== 'object' || Object.keys(parsed).length !== 1) return undefined;
  const e = parsed.error;
  if (typeof e?.code !== 'string' || typeof e.message !== 'string' || !isErrorCode(e.code)) return undefined;
  const first = Array.isArray(e.details) ? (e.details[0] as { path?: unknown } | undefined) : undefined;
  return { code: e.code, message: e.message, requestId: e.requestId, path: typeof first?.path === 'string' ? first.path : undefined };
}

/** Our error envelope (as the app's error handler wrote it) in OpenAI's shape; undefined when the body is not one. */
export function reshapeErrorBody(payload: string): { status: number; body: OpenAIErrorBody } | undefined {
  const e = parseOurError(payload);
  if (!e) return undefined;
  return openAIError(e.code, e.message, e.requestId, e.path === undefined ? undefined : paramFromPath(e.path));
}
