/**
 * The one upstream error type for every provider. Network failures,
 * timeouts, HTTP errors and malformed streams all become an UpstreamError so
 * the chat service decides on retries and fallbacks in one place.
 */
export type UpstreamErrorKind =
  | 'http' // the provider answered with an error status
  | 'network' // connection refused/reset, DNS, TLS
  | 'timeout' // a deadline passed (connect/headers, first token, idle, total)
  | 'protocol' // malformed chunk, unexpected body
  | 'aborted'; // we cancelled it

export class UpstreamError extends Error {
  constructor(
    readonly kind: UpstreamErrorKind,
    message: string,
    readonly options: {
      status?: number | undefined;
      /** The provider's own error code (`context_length_exceeded`, `rate_limit_error`…). */
      providerCode?: string | undefined;
      retryable?: boolean | undefined;
      /** Seconds, from the Retry-After header. */
      retryAfter?: number | undefined;
      url?: string | undefined;
      /** A short, secret-free excerpt of the response body. */
      body?: string | undefined;
      cause?: unknown;
    } = {},
  ) {
    super(message, { cause: options.cause });
    this.name = 'UpstreamError';
  }

  get status(): number | undefined {
    return this.options.status;
  }

  get providerCode(): string | undefined {
    return this.options.providerCode;
  }

  get retryAfter(): number | undefined {
    return this.options.retryAfter;
  }

  /** Whether the same request may succeed if tried again. */
  get retryable(): boolean {
    if (this.options.retryable !== undefined) return this.options.retryable;
    switch (this.kind) {
      case 'network':
      case 'timeout':
      case 'protocol':
        return true;
      case 'aborted':
        return false;
      case 'http': {
        const s = this.options.status ?? 0;
        return s === 408 || s === 409 || s === 425 || s === 429 || s >= 500;
      }
    }
  }
}

const NON_RETRYABLE_CODES = new Set([
  'context_length_exceeded',
  'invalid_request_error',
  'content_policy_violation',
  'content_filter',
  'invalid_api_key',
  'authentication_error',
  'permission_error',
  'permission_denied',
  'not_found_error',
  'model_not_found',
  // OpenAI's "quota exhausted" is a 429 that no retry of the same endpoint fixes.
  'insufficient_quota',
]);

/** True for provider codes that can never succeed on a retry of the same request. */
export function isNonRetryableCode(code: string | undefined): boolean {
  return code !== undefined && NON_RETRYABLE_CODES.has(code);
}

/** Parses Retry-After (seconds or HTTP date) into seconds. */
export function parseRetryAfter(value: string | string[] | undefined, now = Date.now()): number | undefined {
  const v = Array.isArray(value) ? value[0] : value;
  if (!v) return undefined;
  if (/^\d+(\.\d+)?$/.test(v.trim())) return Number(v.trim());
  const at = Date.parse(v);
  if (Number.isNaN(at)) return undefined;
  return Math.max(0, Math.ceil((at - now) / 1000));
}
