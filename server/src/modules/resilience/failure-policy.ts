import type { ContentPolicyRouting } from '../../db/schema.js';
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

/**
 * `contentPolicy`: the agent's choice for a provider's content-policy
 * refusal. Passed through by default: routing it to another model is a way
 * around the enterprise's own safety policy, so only an explicit opt-in
 * (`other-model`) does that.
 */
export function failurePolicy(category: UpstreamFailureCategory, contentPolicy: ContentPolicyRouting = 'pass-through'): FailurePolicy {
  switch (category) {
    case 'bad_request':
    case 'context_length':
      return { retrySameEndpoint: false, fallBack: 'other-model', countsForBreaker: false };
    case 'content_policy':
      return { retrySameEndpoint: false, fallBack: contentPolicy === 'other-model' ? 'other-model' : 'none', countsForBreaker: false };
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
    case 'forbidden':
      // The outbound policy refused the address before anything was sent: the agent's configuration, not the
      // upstream's health; a retry would be refused the same way, another endpoint may be allowed.
      return { retrySameEndpoint: false, fallBack: 'any', countsForBreaker: false };
  }
}

/** The category of anything a call threw; non-upstream errors are bugs and are treated as server failures. */
export function categoryOf(err: unknown): UpstreamFailureCategory {
  return err instanceof UpstreamError ? err.category : 'server';
}

export interface ClientError {
  code: ErrorCode;
  /** What anyone may read: the code's generic sentence (`publicErrorMessage`), no upstream text. */
  message: string;
  /** The same with the provider's reason (status, provider code, its error text): for admins and logs only. */
  detail?: string | undefined;
  /** A rate-limited upstream's Retry-After, in whole seconds, when it sent one. */
  retryAfterSeconds?: number | undefined;
}

/**
 * The one sentence per code that users who are not admins see for a failed
 * answer, live and stored. Upstream error text can carry internals of the
 * provider or of whatever an endpoint points at, so it is never among them.
 */
const PUBLIC_ERROR_MESSAGES: Partial<Record<ErrorCode, string>> = {
  UPSTREAM_BAD_REQUEST: 'The model provider rejected the request',
  UPSTREAM_CONTEXT_LENGTH_EXCEEDED: 'The conversation is too long for the model; start a new chat or shorten the message',
  UPSTREAM_CONTENT_POLICY: 'The model provider refused the content under its content policy',
  UPSTREAM_AUTH_FAILED: "The model provider refused the platform's credentials; an administrator must fix the agent's API key",
  UPSTREAM_ADDRESS_FORBIDDEN: "The agent's endpoint points to an address this server may not call; an administrator must fix the agent",
  UPSTREAM_UNAVAILABLE: 'The model provider is unavailable; try again later',
  UPSTREAM_ERROR: 'The model provider failed to answer',
  UPSTREAM_RATE_LIMITED: 'The model provider is rate limiting requests; try again later',
  UPSTREAM_TIMEOUT: 'The model provider did not answer in time',
  UPSTREAM_BUSY: 'Too many answers are streaming from this model provider on this server; try again shortly',
  UPSTREAM_INTERRUPTED: 'The answer broke off before it was complete',
  UPSTREAM_CIRCUIT_OPEN: 'Every endpoint of this agent is failing and temporarily switched off; try again shortly',
  AGENT_INACTIVE: 'The agent of this answer was disabled or deleted while it was being generated',
  GENERATION_NOT_FOUND: 'The question of this answer is gone',
  NOT_READY: 'This instance shut down while answering; the answer continues on another instance',
  INTERNAL: 'The answer failed unexpectedly',
};

/** The sentence a user who is not an admin sees for an answer that failed with `code`. */
export function publicErrorMessage(code: string | null | undefined): string {
  return (code ? PUBLIC_ERROR_MESSAGES[code as ErrorCode] : undefined) ?? 'The answer failed';
}

/** An answer's error as one viewer may see it: admins get the detail, everyone else the code's generic sentence. */
export function errorForViewer(error: { code: string; message: string }, admin: boolean): { code: string; message: string } {
  return admin ? error : { code: error.code, message: publicErrorMessage(error.code) };
}

function clientError(code: ErrorCode, detail: string): ClientError {
  return { code, message: publicErrorMessage(code), detail };
}

/**
 * The error the caller sees for an upstream failure: a stable code, the
 * code's generic sentence, and as `detail` the provider's reason (for
 * admins). Messages never carry URLs or keys (UpstreamError messages are
 * already scrubbed of the endpoint's key).
 */
export function clientErrorFor(err: unknown): ClientError {
  if (!(err instanceof UpstreamError)) return clientError('INTERNAL', 'The answer failed unexpectedly');
  const reason = providerReason(err);
  switch (err.category) {
    case 'bad_request':
      return clientError('UPSTREAM_BAD_REQUEST', `The model provider rejected the request${reason}`);
    case 'context_length':
      return clientError('UPSTREAM_CONTEXT_LENGTH_EXCEEDED', `The conversation is too long for the model; start a new chat or shorten the message${reason}`);
    case 'content_policy':
      return clientError('UPSTREAM_CONTENT_POLICY', `The model provider refused the content under its content policy${reason}`);
    case 'authentication':
      return clientError('UPSTREAM_AUTH_FAILED', `The model provider refused the platform's credentials; an administrator must fix the agent's API key${reason}`);
    case 'quota':
      return clientError('UPSTREAM_UNAVAILABLE', `The model provider account has no quota left${reason}`);
    case 'not_found':
      return clientError('UPSTREAM_ERROR', `The model provider does not know the configured model or URL${reason}`);
    case 'rate_limited': {
      const error = clientError('UPSTREAM_RATE_LIMITED', `The model provider is rate limiting requests; try again later${reason}`);
      const retryAfterMs = err.retryAfterMs;
      return retryAfterMs === undefined ? error : { ...error, retryAfterSeconds: Math.max(1, Math.ceil(retryAfterMs / 1000)) };
    }
    case 'server':
      return clientError('UPSTREAM_ERROR', `The model provider failed${reason}`);
    case 'timeout':
      return clientError('UPSTREAM_TIMEOUT', `The model provider did not answer in time: ${err.message}`);
    case 'network':
      return clientError('UPSTREAM_UNAVAILABLE', `The model provider could not be reached: ${err.message}`);
    case 'protocol':
      return clientError('UPSTREAM_ERROR', `The model provider sent a malformed answer: ${err.message}`);
    case 'aborted':
      return clientError('UPSTREAM_ERROR', 'The request to the model provider was cancelled');
    case 'busy':
      return clientError('UPSTREAM_BUSY', 'Too many answers are streaming from this model provider on this server; try again shortly');
    case 'forbidden':
      return clientError('UPSTREAM_ADDRESS_FORBIDDEN', `The agent's endpoint points to an address this server may not call: ${err.message}`);
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
