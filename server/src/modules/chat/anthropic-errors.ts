import type { ErrorCode } from '../../errors.js';
import { compatStatus, parseOurError } from './openai-errors.js';

/**
 * Errors of `/v1/messages` in Anthropic's shape,
 * `{type: 'error', error: {type, message}, request_id}`, with the statuses
 * Anthropic's SDKs turn into their error classes: 400 BadRequestError
 * (`invalid_request_error`), 401 AuthenticationError, 403
 * PermissionDeniedError, 404 NotFoundError, 413, 429 RateLimitError, 500
 * InternalServerError (`api_error`), 529 OverloadedError. Our 503s (busy,
 * overloaded, draining, a dependency away) are Anthropic's 529
 * `overloaded_error`; other 5xx keep their status as `api_error`. `code`
 * is our stable code (errors.ts), beside Anthropic's fields.
 */
export interface AnthropicErrorBody {
  type: 'error';
  error: { type: string; message: string; code: ErrorCode };
  request_id?: string | undefined;
}

function typeFor(status: number): string {
  switch (status) {
    case 401:
      return 'authentication_error';
    case 403:
      return 'permission_error';
    case 404:
      return 'not_found_error';
    case 413:
      return 'request_too_large';
    case 429:
      return 'rate_limit_error';
    case 529:
      return 'overloaded_error';
    default:
      return status >= 500 ? 'api_error' : 'invalid_request_error';
  }
}

/** The status and Anthropic body for one of our errors. */
export function anthropicError(code: ErrorCode, message: string, requestId: string | undefined): { status: number; body: AnthropicErrorBody } {
  const ours = compatStatus(code);
  const status = ours === 503 ? 529 : ours;
  return { status, body: { type: 'error', error: { type: typeFor(status), message, code }, request_id: requestId } };
}

/** Our error envelope (as the app's error handler wrote it) in Anthropic's shape; undefined when the body is not one. */
export function reshapeAnthropicErrorBody(payload: string): { status: number; body: AnthropicErrorBody } | undefined {
  const e = parseOurError(payload);
  if (!e) return undefined;
  // Anthropic names the field in the message (`max_tokens: Field required`); ours says it already, with its path.
  return anthropicError(e.code, e.message, e.requestId);
}
