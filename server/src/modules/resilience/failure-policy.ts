import type { ErrorCode } from '../../errors.js';
import { UpstreamError, type UpstreamFailureCategory } from '../providers/upstream-error.js';

/**
 * What one failed upstream call allows next. The rules, in one place:
 *
 * - Errors that cannot succeed on a retry (bad request, context length,
 *   content policy, authentication, quota, unknown model) are never retried
 *   on the same endpoint. Caller-caused ones (bad request, context length,
 *   content policy) move on only to an endpoint with a different model (the
 *   same model would refuse the same request); configuration ones
 *   (authentication, quota, not found) may move to any other endpoint.
 * - Transient ones (rate limit, 5xx, timeouts, network, malformed chunks)
 *   may be retried on the same endpoint, with backoff, and may fall back.
 * - Only failures that say the endpoint is unwell count for its breaker; a
 *   caller's bad request does not, nor does our own queue being full
 *   (`busy`), which is not an upstream failure at all.
 */
export interface FailurePolicy {
  retrySameEndpoint: boolean;
  fallBack: 'any' | 'other-model' | 'none';
  countsForBreaker: boolean;
}

export function failurePolicy(category: UpstreamFailureCategory): FailurePolicy {
  switch (category) {
    case 'bad_request':
    case 'context_length':
    case 'content_policy':
      return { retrySameEndpoint: false, fallBack: 'other-model', countsForBreaker: false };
    case 'authentication':
    case 'quota':
    case 'not_found':
      return { retrySameEndpoint: false, fallBack: 'any', countsForBreaker: true };
    case 'rate_limited':
    case 'server':
    case 'timeout':
    case 'network':
    case 'protocol':
      return { retrySameEndpoint: true, fallBack: 'any', countsForBreaker: true };
    case 'aborted':
      return { retrySameEndpoint: false, fallBack: 'none', countsForBreaker: false };
    case 'busy':
      // Our own queue was full: the endpoint did nothing wrong; another one (another origin) may have room.
      return { retrySameEndpoint: false, fallBack: 'any', countsForBreaker: false };
  }
}

/** The category of anything a call threw; non-upstream errors are bugs and are treated as server failures. */
export function categoryOf(err: unknown): UpstreamFailureCategory {
  return err instanceof UpstreamError ? err.category : 'server';
}

export interface ClientError {
  code: ErrorCode;
  message: string;
}

/**
 * The error the caller sees for an upstream failure: a stable code and the
 * provider's reason. Messages never carry URLs or keys (UpstreamError
 * messages are already scrubbed of the endpoint's key).
 */
export function clientErrorFor(err: unknown): ClientError {
  if (!(err instanceof UpstreamError)) return { code: 'INTERNAL', message: 'The answer failed unexpectedly' };
  const reason = providerReason(err);
  switch (err.category) {
    case 'bad_request':
      return { code: 'UPSTREAM_BAD_REQUEST', message: `The model provider rejected the request${reason}` };
    case 'context_length':
      return { code: 'UPSTREAM_CONTEXT_LENGTH_EXCEEDED', message: `The conversation is too long for the model; start a new chat or shorten the message${reason}` };
    case 'content_policy':
      return { code: 'UPSTREAM_CONTENT_POLICY', message: `The model provider refused the content under its content policy${reason}` };
    case 'authentication':
      return { code: 'UPSTREAM_AUTH_FAILED', message: `The model provider refused the platform's credentials; an administrator must fix the agent's API key${reason}` };
    case 'quota':
      return { code: 'UPSTREAM_UNAVAILABLE', message: `The model provider account has no quota left${reason}` };
    case 'not_found':
      return { code: 'UPSTREAM_ERROR', message: `The model provider does not know the configured model or URL${reason}` };
    case 'rate_limited':
      return { code: 'UPSTREAM_RATE_LIMITED', message: `The model provider is rate limiting requests; try again later${reason}` };
    case 'server':
      return { code: 'UPSTREAM_ERROR', message: `The model provider failed${reason}` };
    case 'timeout':
      return { code: 'UPSTREAM_TIMEOUT', message: `The model provider did not answer in time: ${err.message}` };
    case 'network':
      return { code: 'UPSTREAM_UNAVAILABLE', message: 'The model provider could not be reached' };
    case 'protocol':
      return { code: 'UPSTREAM_ERROR', message: 'The model provider sent a malformed answer' };
    case 'aborted':
      return { code: 'UPSTREAM_ERROR', message: 'The request to the model provider was cancelled' };
    case 'busy':
      return { code: 'UPSTREAM_BUSY', message: 'Too many answers are streaming from this model provider on this server; try again shortly' };
  }
}

function providerReason(err: UpstreamError): string {
  const parts: string[] = [];
  if (err.status !== undefined) parts.push(`status ${err.status}`);
  if (err.providerCode) parts.push(err.providerCode);
  const head = parts.length > 0 ? ` (${parts.join(', ')})` : '';
  return `${head}: ${err.message}`;
}

export interface BackoffSettings {
  baseDelayMs: number;
  maxDelayMs: number;
  /** A longer Retry-After is not waited for: the endpoint is given up for this turn. */
  retryAfterMaxMs: number;
}

/**
 * The wait before retry number `retry` (1 for the first retry) of one
 * endpoint: full jitter (a uniform draw up to base × 2^(retry-1), capped),
 * and never less than the provider's Retry-After. Undefined when the
 * provider asks for a longer wait than we honour.
 */
export function retryDelayMs(retry: number, settings: BackoffSettings, retryAfterMs: number | undefined, random: () => number): number | undefined {
  if (retryAfterMs !== undefined && retryAfterMs > settings.retryAfterMaxMs) return undefined;
  const ceiling = Math.min(settings.maxDelayMs, settings.baseDelayMs * 2 ** Math.max(0, retry - 1));
  const jittered = Math.floor(random() * ceiling);
  return Math.max(jittered, retryAfterMs ?? 0);
}
