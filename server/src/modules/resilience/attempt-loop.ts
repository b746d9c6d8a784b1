import type { Logger } from 'pino';
import type { EndpointTimeouts } from '../../db/schema.js';
import type { ResolvedEndpoint } from '../providers/types.js';
import { UpstreamError } from '../providers/upstream-error.js';
import type { BreakerService } from './breakers.js';
import { categoryOf, clientErrorFor, failurePolicy, publicErrorMessage, retryDelayMs, type BackoffSettings, type ClientError } from './failure-policy.js';
import type { FailureLog } from './failure-log.js';

/** How hard one turn may try: per endpoint, and the default deadlines. */
export interface RetrySettings extends BackoffSettings {
  /** Calls to one endpoint per turn, first try included. */
  maxAttempts: number;
}

export interface ResilienceDeps {
  breakers: BreakerService;
  failures: FailureLog;
  /** The platform's default deadlines; an endpoint's own `timeouts` win. */
  defaultTimeouts: Required<EndpointTimeouts>;
  retry: RetrySettings;
  /** Uniform in [0, 1): the backoff's jitter (tests fix it). */
  random: () => number;
  /** Waits `ms`, or less when `signal` aborts. */
  sleep: (ms: number, signal: AbortSignal) => Promise<void>;
  now: () => number;
  logger: Logger;
}

/** What the loop needs of the generation it drives. */
export interface AttemptHost {
  readonly turnId: string;
  readonly agentId: string;
  /** Aborted by a stop or a shutdown. */
  readonly signal: AbortSignal;
  /**
   * Runs one call to `endpoint`, sending its events to the client. Calls
   * `onFirstOutput` when the first text or reasoning of this call is sent.
   * Throws what the provider adapter throws.
   */
  call(endpoint: ResolvedEndpoint, onFirstOutput: () => void): Promise<void>;
  /** Whether the current call's text, reasoning or interactive node reached the client. */
  readonly outputSent: boolean;
  /** Usage the current call reported, if any (recorded with a failed attempt). */
  readonly attemptUsage: { promptTokens: number; completionTokens: number } | undefined;
  /** Starts a new attempt: drops the last one's partial answer; sends `reset` when some of it reached the client. */
  beginAttempt(): void;
}

export type LoopOutcome = { status: 'complete' } | { status: 'stopped' } | { status: 'error'; error: ClientError };

function modelKey(endpoint: ResolvedEndpoint): string {
  return `${endpoint.provider}\u0000${endpoint.model ?? ''}`;
}

/** The endpoint with the platform's default deadlines under its own. */
export function withDefaultTimeouts(endpoint: ResolvedEndpoint, defaults: Required<EndpointTimeouts>): ResolvedEndpoint {
  return { ...endpoint, timeouts: { ...defaults, ...endpoint.timeouts } };
}

/** A probe may take as long as its headers and first token may; then another caller may probe. */
function probeLeaseMs(endpoint: ResolvedEndpoint): number {
  const t = endpoint.timeouts;
  return (t.connectMs ?? 0) + (t.firstTokenMs ?? 0);
}

/**
 * Runs a turn over the agent's endpoints in order until one answers:
 *
 * - each endpoint's breaker is asked first; an open one is skipped (its
 *   fallbacks take the traffic); when every endpoint was skipped that way
 *   the turn fails fast with UPSTREAM_CIRCUIT_OPEN;
 * - a failure is classified (failure-policy.ts): transient ones are retried
 *   on the same endpoint up to `maxAttempts` with full-jitter backoff and
 *   Retry-After; the others move on, or end the turn with the provider's
 *   reason;
 * - a failure after text reached the client moves to the next endpoint
 *   (or retries the only one) and the client gets `reset` before the new
 *   attempt's first event, so a partial answer is never presented as
 *   complete; with nothing left to try the turn ends as an error;
 * - every failed call is recorded as a failed attempt and reported to the
 *   endpoint's breaker; the served call's success closes a probing breaker;
 * - a call that found every slot to its upstream taken for longer than the
 *   queue's bound (`busy`, upstream-slots.ts) never left: it is neither a
 *   failed attempt nor a breaker failure; the next endpoint is tried.
 */
export async function runAttempts(endpoints: readonly ResolvedEndpoint[], host: AttemptHost, deps: ResilienceDeps): Promise<LoopOutcome> {
  let lastClientError: ClientError | undefined;
  let rejectedByBreaker = 0;
  let attemptsMade = 0;
  const refusedModels = new Set<string>();

  for (let index = 0; index < endpoints.length; index++) {
    const configured = endpoints[index];
    if (!configured) continue;
    if (refusedModels.has(modelKey(configured))) continue;
    const endpoint = withDefaultTimeouts(configured, deps.defaultTimeouts);
    for (let attempt = 1; ; attempt++) {
      if (host.signal.aborted) return { status: 'stopped' };
      const decision = await deps.breakers.acquire(endpoint.id, probeLeaseMs(endpoint));
      if (decision === 'reject') {
        rejectedByBreaker++;
        deps.logger.info({ turnId: host.turnId, agentId: host.agentId, endpoint: endpoint.position }, 'circuit open; endpoint skipped');
        break;
      }
      const probe = decision === 'probe';
      if (attemptsMade > 0) host.beginAttempt();
      attemptsMade++;
      const started = deps.now();
      let successRecorded = false;
      const onFirstOutput = () => {
        if (successRecorded) return;
        successRecorded = true;
        // Headers and a first token prove the endpoint works: a probing breaker may close now.
        void deps.breakers.record(endpoint.id, 'success', probe);
      };
      try {
        await host.call(endpoint, onFirstOutput);
        onFirstOutput();
        return { status: 'complete' };
      } catch (err) {
        if (host.signal.aborted) {
          if (probe && !successRecorded) void deps.breakers.record(endpoint.id, 'release', true);
          return { status: 'stopped' };
        }
        const category = categoryOf(err);
        const policy = failurePolicy(category);
        const midAnswer = host.outputSent;
        const reason = clientErrorFor(err);
        const clientError: ClientError = midAnswer
          ? { code: 'UPSTREAM_INTERRUPTED', message: publicErrorMessage('UPSTREAM_INTERRUPTED'), detail: `The answer broke off before it was complete. ${reason.detail ?? reason.message}` }
          : reason;
        lastClientError = clientError;
        // Awaited (failures are rare): the next call on this instance must see a breaker this failure opened.
        await deps.breakers.record(endpoint.id, policy.countsForBreaker ? 'failure' : 'release', probe && !successRecorded);
        if (category === 'busy') {
          // Our own queue to the upstream was full: no call left this instance, so nothing failed upstream.
          deps.logger.info({ turnId: host.turnId, agentId: host.agentId, endpoint: endpoint.position }, 'upstream slots all taken; endpoint skipped');
          break;
        }
        deps.failures.record({
          agentId: host.agentId,
          endpointId: endpoint.id,
          position: endpoint.position,
          provider: endpoint.provider,
          model: endpoint.model,
          turnId: host.turnId,
          kind: err instanceof UpstreamError ? err.kind : 'internal',
          status: err instanceof UpstreamError ? err.status : undefined,
          providerCode: err instanceof UpstreamError ? err.providerCode : undefined,
          errorCode: clientError.code,
          midAnswer,
          detail: clientError.detail ?? clientError.message,
          promptTokens: host.attemptUsage?.promptTokens,
          completionTokens: host.attemptUsage?.completionTokens,
          elapsedMs: Math.max(0, Math.round(deps.now() - started)),
        });
        if (!(err instanceof UpstreamError)) deps.logger.error({ err, turnId: host.turnId }, 'unexpected generation failure');
        if (policy.fallBack === 'none') return { status: 'error', error: clientError };

        const laterEndpoint = endpoints.slice(index + 1).some((e) => policy.fallBack === 'any' || modelKey(e) !== modelKey(endpoint));
        // Mid-answer, the next endpoint is preferred: retrying the same one is for when it is the only one left.
        const mayRetrySame = policy.retrySameEndpoint && attempt < deps.retry.maxAttempts && !(midAnswer && laterEndpoint);
        const delay = mayRetrySame ? retryDelayMs(attempt, deps.retry, err instanceof UpstreamError ? err.retryAfterMs : undefined, deps.random) : undefined;
        deps.logger.warn(
          { turnId: host.turnId, agentId: host.agentId, endpoint: endpoint.position, provider: endpoint.provider, category, status: err instanceof UpstreamError ? err.status : undefined, attempt, midAnswer, retryInMs: delay, detail: reason.detail },
          'upstream call failed',
        );
        if (delay !== undefined) {
          await deps.sleep(delay, host.signal);
          continue;
        }
        if (policy.fallBack === 'other-model') refusedModels.add(modelKey(endpoint));
        break;
      }
    }
  }
  if (lastClientError === undefined && rejectedByBreaker > 0) {
    return { status: 'error', error: { code: 'UPSTREAM_CIRCUIT_OPEN', message: publicErrorMessage('UPSTREAM_CIRCUIT_OPEN') } };
  }
  return { status: 'error', error: lastClientError ?? { code: 'UPSTREAM_UNAVAILABLE', message: publicErrorMessage('UPSTREAM_UNAVAILABLE'), detail: 'The agent has no endpoint to call' } };
}

/** A sleep that ends early when the signal aborts. */
export function abortableSleep(ms: number, signal: AbortSignal): Promise<void> {
  if (ms <= 0 || signal.aborted) return Promise.resolve();
  return new Promise((resolve) => {
    const timer = setTimeout(done, ms);
    function done() {
      clearTimeout(timer);
      signal.removeEventListener('abort', done);
      resolve();
    }
    signal.addEventListener('abort', done, { once: true });
  });
}
