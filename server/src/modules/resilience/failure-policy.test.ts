import { describe, expect, it } from 'vitest';
import { UpstreamError } from '../providers/upstream-error.js';
import { clientErrorFor, failurePolicy, retryDelayMs } from './failure-policy.js';

const http = (status: number | undefined, code?: string) => new UpstreamError('http', 'provider said no', { status, providerCode: code });

describe('failure categories', () => {
  it.each([
    [http(400), 'bad_request', 'UPSTREAM_BAD_REQUEST'],
    [http(400, 'invalid_request_error'), 'bad_request', 'UPSTREAM_BAD_REQUEST'],
    [http(400, 'context_length_exceeded'), 'context_length', 'UPSTREAM_CONTEXT_LENGTH_EXCEEDED'],
    [http(413), 'context_length', 'UPSTREAM_CONTEXT_LENGTH_EXCEEDED'],
    [http(400, 'content_policy_violation'), 'content_policy', 'UPSTREAM_CONTENT_POLICY'],
    [http(401, 'invalid_api_key'), 'authentication', 'UPSTREAM_AUTH_FAILED'],
    [http(403), 'authentication', 'UPSTREAM_AUTH_FAILED'],
    [http(429, 'insufficient_quota'), 'quota', 'UPSTREAM_UNAVAILABLE'],
    [http(429), 'rate_limited', 'UPSTREAM_RATE_LIMITED'],
    [http(404, 'model_not_found'), 'not_found', 'UPSTREAM_ERROR'],
    [http(500), 'server', 'UPSTREAM_ERROR'],
    [http(529, 'overloaded_error'), 'server', 'UPSTREAM_ERROR'],
    [http(undefined, 'server_error'), 'server', 'UPSTREAM_ERROR'],
    [new UpstreamError('timeout', 'upstream idle deadline of 10 ms passed'), 'timeout', 'UPSTREAM_TIMEOUT'],
    [new UpstreamError('network', 'reset'), 'network', 'UPSTREAM_UNAVAILABLE'],
    [new UpstreamError('protocol', 'bad chunk'), 'protocol', 'UPSTREAM_ERROR'],
  ])('%s is %s and reaches the caller as %s', (err, category, code) => {
    expect(err.category).toBe(category);
    expect(clientErrorFor(err).code).toBe(code);
  });

  it('the provider reason is in the detail, for admins, and never in the message everyone sees', () => {
    const error = clientErrorFor(new UpstreamError('http', 'openai answered 500: internal-service-says-hello', { status: 500 }));
    expect(error.detail).toContain('status 500');
    expect(error.detail).toContain('internal-service-says-hello');
    expect(error.message).toBe('The model provider failed to answer');
  });

  it('an address the outbound policy refused is neither retried nor counted against the endpoint', () => {
    const err = new UpstreamError('forbidden', 'upstream address 127.0.0.1 is not allowed', { retryable: false });
    expect(err.category).toBe('forbidden');
    expect(err.retryable).toBe(false);
    expect(failurePolicy('forbidden')).toEqual({ retrySameEndpoint: false, fallBack: 'any', countsForBreaker: false });
    expect(clientErrorFor(err).code).toBe('UPSTREAM_ADDRESS_FORBIDDEN');
  });

  it('refusals are not retried on the same endpoint and do not count against it', () => {
    for (const c of ['bad_request', 'context_length'] as const) {
      expect(failurePolicy(c)).toEqual({ retrySameEndpoint: false, fallBack: 'other-model', countsForBreaker: false });
    }
    // A content-policy refusal reaches the caller; only an agent's opt-in tries another model.
    expect(failurePolicy('content_policy')).toEqual({ retrySameEndpoint: false, fallBack: 'none', countsForBreaker: false });
    expect(failurePolicy('content_policy', 'pass-through')).toEqual({ retrySameEndpoint: false, fallBack: 'none', countsForBreaker: false });
    expect(failurePolicy('content_policy', 'other-model')).toEqual({ retrySameEndpoint: false, fallBack: 'other-model', countsForBreaker: false });
    expect(failurePolicy('context_length', 'pass-through').fallBack).toBe('other-model');
    expect(failurePolicy('authentication')).toEqual({ retrySameEndpoint: false, fallBack: 'any', countsForBreaker: true });
    expect(failurePolicy('timeout').retrySameEndpoint).toBe(true);
  });
});

describe('retry delays', () => {
  const settings = { baseDelayMs: 100, maxDelayMs: 800, retryAfterMaxMs: 3_000 };
  it('draw uniformly below an exponential ceiling that is capped', () => {
    expect(retryDelayMs(1, settings, undefined, () => 0.999)).toBe(99);
    expect(retryDelayMs(3, settings, undefined, () => 0.999)).toBe(399);
    expect(retryDelayMs(10, settings, undefined, () => 0.999)).toBe(799);
    expect(retryDelayMs(4, settings, undefined, () => 0)).toBe(0);
  });
  it('honour Retry-After up to the cap and refuse to wait longer', () => {
    expect(retryDelayMs(1, settings, 2_000, () => 0.5)).toBe(2_000);
    expect(retryDelayMs(1, settings, 3_001, () => 0.5)).toBeUndefined();
  });
});
