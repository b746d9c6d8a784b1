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
  | 'aborted' // we cancelled it
  | 'busy' // it never left: every slot to the origin stayed taken (our own queue, upstream-slots.ts)
  | 'forbidden'; // it never left: the outbound policy refused the upstream's address (outbound-policy.ts)

/**
 * What a failure means for the next step, whatever the provider: see
 * `failurePolicy` in modules/resilience/failure-policy.ts for what each
 * category allows (retry, fallback, breaker).
 */
export type UpstreamFailureCategory =
  | 'authentication' // 401/403, bad key: the endpoint's configuration, not the caller
  | 'quota' // the provider account is out of credit
  | 'not_found' // wrong URL or model
  | 'context_length' // the conversation is too long for this model
  | 'content_policy' // the provider refused the content
  | 'bad_request' // any other 4xx: the request itself is wrong for this model
  | 'rate_limited' // 429
  | 'server' // 5xx, 529, an error inside the stream
  | 'timeout' // one of our deadlines
  | 'network' // no connection, reset, cut stream
  | 'protocol' // malformed answer
  | 'aborted' // we cancelled it (stop, shutdown)
  | 'busy' // our own queue to the upstream was full: says nothing about the upstream
  | 'forbidden'; // the endpoint's address is one upstream calls may not reach: the agent's configuration

const AUTH_CODES = new Set(['invalid_api_key', 'authentication_error', 'permission_error', 'permission_denied', 'unauthorized', 'forbidden', 'unAuthApiKey', 'unAuthorization']);
const CONTENT_POLICY_CODES = new Set(['content_policy_violation', 'content_filter', 'content_filtered', 'safety']);
const NOT_FOUND_CODES = new Set(['not_found_error', 'model_not_found', 'not_found']);

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
      /** A `timeout`: which deadline passed. */
      phase?: 'headers' | 'first token' | 'idle' | 'total' | undefined;
      cause?: unknown;
    } = {},
  ) {
    super(message, { cause: options.cause });
    this.name = 'UpstreamError';
  }

  get status(): number | undefined {
    return this.options.status;
  }

  /** The endpoint sent no response headers within its deadline: it is silent, not slow to answer. */
  get silent(): boolean {
    return this.kind === 'timeout' && this.options.phase === 'headers';
  }

  get providerCode(): string | undefined {
    return this.options.providerCode;
  }

  get retryAfter(): number | undefined {
    return this.options.retryAfter;
  }

  /** Retry-After in milliseconds, when the provider sent one. */
  get retryAfterMs(): number | undefined {
    return this.options.retryAfter === undefined ? undefined : Math.round(this.options.retryAfter * 1000);
  }

  /** The provider-independent meaning of this failure. */
  get category(): UpstreamFailureCategory {
    switch (this.kind) {
      case 'network':
        return 'network';
      case 'timeout':
        return 'timeout';
      case 'protocol':
        return 'protocol';
      case 'aborted':
        return 'aborted';
      case 'busy':
        return 'busy';
      case 'forbidden':
        return 'forbidden';
      case 'http':
        break;
    }
    const code = this.options.providerCode;
    const status = this.options.status;
    if (code === 'context_length_exceeded' || status === 413) return 'context_length';
    if (code !== undefined && CONTENT_POLICY_CODES.has(code)) return 'content_policy';
    if (code === 'insufficient_quota') return 'quota';
    if (status === 401 || status === 403 || (code !== undefined && AUTH_CODES.has(code))) return 'authentication';
    if (status === 404 || (code !== undefined && NOT_FOUND_CODES.has(code))) return 'not_found';
    if (status === 429) return 'rate_limited';
    if (status !== undefined && status >= 400 && status < 500 && status !== 408 && status !== 409 && status !== 425) return 'bad_request';
    if (status === undefined && code !== undefined && isNonRetryableCode(code)) return 'bad_request';
    return 'server';
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
      case 'busy':
      case 'forbidden':
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
