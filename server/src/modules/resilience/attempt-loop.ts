import type { Logger } from 'pino';
import type { EndpointTimeouts } from '../../db/schema.js';
import type { ResolvedEndpoint } from '../providers/types.js';
import { UpstreamError } from '../providers/upstream-error.js';
import type { BreakerService } from './breakers.js';
import type { ContentPolicyRouting } from '../../db/schema.js';
import { categoryOf, clientErrorFor, failurePolicy, publicErrorMessage, retryDelayMs, type BackoffSettings, type ClientError } from './failure-policy.js';
import type { FailureLog } from './failure-log.js';
import type { EndpointChildren, Metrics } from '../metrics/metrics.js';
import type { FirstTokenStats } from './first-token-stats.js';
import { raceFirstToken, type HedgeLane, type HedgeSettings, type RacingCall } from './hedge.js';

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
  /** Attempts, failures, retries and fallbacks are counted here (the app always hands them in). */
  metrics?: Metrics | undefined;
  /** Endpoints' observed times to first token, for agents that hedge at `'p95'` (hedge.ts). */
  firstTokens?: FirstTokenStats | undefined;
}

/** What the loop needs of the generation it drives. */
export interface AttemptHost {
  readonly turnId: string;
  readonly agentId: string;
  /** The turn's logger (its turn id, user and request bound). */
  readonly log: Logger;
  /** Aborted by a stop or a shutdown. */
  readonly signal: AbortSignal;
  /**
   * Runs one call to `endpoint`, sending its events to the client. Calls
   * `onFirstOutput` when the first text or reasoning of this call is sent.
   * Throws what the provider adapter throws. With a `lane` (a hedged turn,
   * hedge.ts) it sends nothing until the lane's claim on its first output
   * succeeds, and it is aborted by the lane's signal.
   */
  call(endpoint: ResolvedEndpoint, onFirstOutput: () => void, lane?: HedgeLane): Promise<void>;
  /** Whether the current call's text, reasoning or interactive node reached the client. */
  readonly outputSent: boolean;
  /** Usage the current call reported, if any (recorded with a failed attempt). */
  readonly attemptUsage: { promptTokens: number; completionTokens: number } | undefined;
  /** Starts a new attempt: drops the last one's partial answer; sends `reset` when some of it reached the client. */
  beginAttempt(): void;
}

/** One call of the loop: its endpoint, breaker decision, counters and start. */
interface TrackedCall extends RacingCall {
  index: number;
  probe: boolean;
  counted: EndpointChildren | undefined;
  started: number;
  successRecorded: boolean;
}

interface FailedCall {
  category: ReturnType<typeof categoryOf>;
  policy: ReturnType<typeof failurePolicy>;
  reason: ClientError;
  clientError: ClientError;
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
 * - an endpoint that sent no headers within its deadline (silent) is not
 *   retried while another endpoint is left: the next one is tried at once;
 * - a failure after text reached the client moves to the next endpoint
 *   (or retries the only one) and the client gets `reset` before the new
 *   attempt's first event, so a partial answer is never presented as
 *   complete; with nothing left to try the turn ends as an error;
 * - every failed call is recorded as a failed attempt and reported to the
 *   endpoint's breaker; the served call's success closes a probing breaker;
 * - a call that found every slot to its upstream taken for longer than the
 *   queue's bound (`busy`, upstream-slots.ts) never left: it is neither a
 *   failed attempt nor a breaker failure; the next endpoint is tried;
 * - a provider's content-policy refusal ends the turn with it, unless the
 *   agent opted in (`contentPolicy: 'other-model'`) to trying an endpoint
 *   with another model;
 * - with `hedge` (the agent's opt-in), a call with no token after the
 *   hedge's wait races the next endpoint (hedge.ts): the first token wins,
 *   the other call is cancelled and recorded as `hedge_lost`, never as a
 *   breaker failure.
 */
export async function runAttempts(
  endpoints: readonly ResolvedEndpoint[],
  host: AttemptHost,
  deps: ResilienceDeps,
  hedge?: HedgeSettings,
  contentPolicy: ContentPolicyRouting = 'pass-through',
): Promise<LoopOutcome> {
  let lastClientError: ClientError | undefined;
  let rejectedByBreaker = 0;
  let attemptsMade = 0;
  const refusedModels = new Set<string>();
  /** Endpoints that failed as a hedge partner: not called again in this turn. */
  const failedAsPartner = new Set<number>();

  /** One call's bookkeeping: its breaker's decision, its metrics, when it started. */
  const openCall = (endpoint: ResolvedEndpoint, index: number, probe: boolean): TrackedCall => {
    const call: TrackedCall = {
      endpoint,
      index,
      probe,
      counted: deps.metrics?.endpoint(host.agentId, endpoint),
      started: deps.now(),
      successRecorded: false,
      onFirstOutput: () => {
        if (call.successRecorded) return;
        call.successRecorded = true;
        // Headers and a first token prove the endpoint works: a probing breaker may close now.
        void deps.breakers.record(endpoint.id, 'success', probe);
      },
    };
    call.counted?.attempts.inc();
    return call;
  };

  /** Which call a failed-attempt row is about. */
  const attemptOf = ({ endpoint }: TrackedCall) => ({ agentId: host.agentId, endpointId: endpoint.id, position: endpoint.position, provider: endpoint.provider, model: endpoint.model, turnId: host.turnId });

  /** A failed call: its breaker is told, its failure counted and recorded (not for `busy`: nothing left this instance). */
  const account = async (call: TrackedCall, err: unknown, midAnswer: boolean, usage: AttemptHost['attemptUsage']): Promise<FailedCall> => {
    const { endpoint } = call;
    const category = categoryOf(err);
    const policy = failurePolicy(category, contentPolicy);
    const reason = clientErrorFor(err);
    const clientError: ClientError = midAnswer
      ? { code: 'UPSTREAM_INTERRUPTED', message: publicErrorMessage('UPSTREAM_INTERRUPTED'), detail: `The answer broke off before it was complete. ${reason.detail ?? reason.message}` }
      : reason;
    // Awaited (failures are rare): the next call on this instance must see a breaker this failure opened.
    await deps.breakers.record(endpoint.id, policy.countsForBreaker ? 'failure' : 'release', call.probe && !call.successRecorded);
    if (category === 'busy') return { category, policy, reason, clientError };
    if (call.counted) deps.metrics?.upstreamFailure(call.counted, err instanceof UpstreamError ? err.kind : 'internal');
    deps.failures.record({
      ...attemptOf(call),
      kind: err instanceof UpstreamError ? err.kind : 'internal',
      status: err instanceof UpstreamError ? err.status : undefined,
      providerCode: err instanceof UpstreamError ? err.providerCode : undefined,
      errorCode: clientError.code,
      midAnswer,
      detail: clientError.detail ?? clientError.message,
      promptTokens: usage?.promptTokens,
      completionTokens: usage?.completionTokens,
      elapsedMs: Math.max(0, Math.round(deps.now() - call.started)),
    });
    if (!(err instanceof UpstreamError)) host.log.error({ err }, 'unexpected generation failure');
    return { category, policy, reason, clientError };
  };

  /** The hedge partner of the call at `index`: the next endpoint the loop would try, if hedging is on. */
  const partnerOf = (index: number): number | undefined => {
    if (hedge === undefined) return undefined;
    for (let j = index + 1; j < endpoints.length; j++) {
      const e = endpoints[j];
      if (e && !refusedModels.has(modelKey(e)) && !failedAsPartner.has(j)) return j;
    }
    return undefined;
  };

  /** The primary's call, raced against its partner's once it has been silent for the hedge's wait (hedge.ts). */
  const race = async (primary: TrackedCall, partnerIndex: number, settings: HedgeSettings) => {
    const observed = settings.afterMs === 'p95' ? await deps.firstTokens?.p95(primary.endpoint.id) : settings.afterMs;
    // No p95 observed yet: the call runs alone (its deadlines end it first), and its first token is observed.
    const afterMs = observed ?? probeLeaseMs(primary.endpoint);
    const stats = settings.afterMs === 'p95' ? deps.firstTokens : undefined;
    return raceFirstToken<TrackedCall>({
      host,
      afterMs,
      primary,
      now: deps.now,
      acquirePartner: async () => {
        const configured = endpoints[partnerIndex];
        if (!configured) return undefined;
        const endpoint = withDefaultTimeouts(configured, deps.defaultTimeouts);
        const decision = await deps.breakers.acquire(endpoint.id, probeLeaseMs(endpoint));
        if (decision === 'reject') return undefined;
        return {
          release: () => void (decision === 'probe' && deps.breakers.record(endpoint.id, 'release', true)),
          begin: () => {
            host.beginAttempt();
            attemptsMade++;
            return openCall(endpoint, partnerIndex, decision === 'probe');
          },
        };
      },
      onFailed: async (call, err, midAnswer, usage) => {
        const failed = await account(call, err, midAnswer, usage);
        if (call !== primary) failedAsPartner.add(call.index);
        host.log.warn({ agentId: host.agentId, endpoint: call.endpoint.position, provider: call.endpoint.provider, category: failed.category, status: err instanceof UpstreamError ? err.status : undefined, midAnswer, hedged: true, detail: failed.reason.detail }, 'upstream call failed');
        return { error: failed.clientError, final: failed.policy.fallBack === 'none' };
      },
      onLost: (call, elapsedMs) => {
        // Cancelled by us because another endpoint answered first: not the endpoint's failure.
        if (call.probe && !call.successRecorded) void deps.breakers.record(call.endpoint.id, 'release', true);
        if (call.counted) deps.metrics?.upstreamFailure(call.counted, 'hedge_lost');
        deps.failures.record({
          ...attemptOf(call),
          kind: 'hedge_lost',
          status: undefined,
          providerCode: undefined,
          errorCode: 'HEDGE_LOST',
          midAnswer: false,
          detail: `No first token after ${Math.round(elapsedMs)} ms and another endpoint answered first (hedge after ${afterMs} ms): this call was cancelled`,
          promptTokens: undefined,
          completionTokens: undefined,
          elapsedMs: Math.max(0, Math.round(elapsedMs)),
        });
      },
      onFirstTokenTime: stats && ((endpoint, ms, censored) => stats.observe(endpoint.id, ms, censored)),
    });
  };

  for (let index = 0; index < endpoints.length; index++) {
    const configured = endpoints[index];
    if (!configured) continue;
    if (refusedModels.has(modelKey(configured)) || failedAsPartner.has(index)) continue;
    const endpoint = withDefaultTimeouts(configured, deps.defaultTimeouts);
    const counted = deps.metrics?.endpoint(host.agentId, configured);
    const hasNext = index + 1 < endpoints.length;
    for (let attempt = 1; ; attempt++) {
      if (host.signal.aborted) return { status: 'stopped' };
      const decision = await deps.breakers.acquire(endpoint.id, probeLeaseMs(endpoint));
      if (decision === 'reject') {
        rejectedByBreaker++;
        if (hasNext) counted?.fallbacks.inc();
        host.log.info({ agentId: host.agentId, endpoint: endpoint.position }, 'circuit open; endpoint skipped');
        break;
      }
      const probe = decision === 'probe';
      if (attemptsMade > 0) host.beginAttempt();
      attemptsMade++;
      const call = openCall(endpoint, index, probe);
      try {
        const partnerIndex = partnerOf(index);
        if (hedge && partnerIndex !== undefined) {
          const raced = await race(call, partnerIndex, hedge);
          if (raced.status === 'served') return { status: 'complete' };
          if (raced.status === 'partner-failed') {
            // The partner served and then broke off: the turn goes on after it, as after any failed endpoint.
            lastClientError = raced.error;
            if (raced.final) return { status: 'error', error: raced.error };
            index = raced.index;
            break;
          }
        } else {
          await host.call(endpoint, call.onFirstOutput);
        }
        call.onFirstOutput();
        return { status: 'complete' };
      } catch (err) {
        if (host.signal.aborted) {
          if (probe && !call.successRecorded) void deps.breakers.record(endpoint.id, 'release', true);
          return { status: 'stopped' };
        }
        const midAnswer = host.outputSent;
        const { category, policy, reason, clientError } = await account(call, err, midAnswer, host.attemptUsage);
        lastClientError = clientError;
        if (category === 'busy') {
          // Our own queue to the upstream was full: no call left this instance, so nothing failed upstream.
          host.log.info({ agentId: host.agentId, endpoint: endpoint.position }, 'upstream slots all taken; endpoint skipped');
          if (hasNext) counted?.fallbacks.inc();
          break;
        }
        if (policy.fallBack === 'none') return { status: 'error', error: clientError };

        const laterEndpoint = endpoints.slice(index + 1).some((e) => policy.fallBack === 'any' || modelKey(e) !== modelKey(endpoint));
        // Mid-answer, the next endpoint is preferred: retrying the same one is for when it is the only one left.
        // So after silence (no headers within the deadline): another wait on the same endpoint would double the
        // time to an answer that the fallback can give now.
        const silent = err instanceof UpstreamError && err.silent;
        const mayRetrySame = policy.retrySameEndpoint && attempt < deps.retry.maxAttempts && !((midAnswer || silent) && laterEndpoint);
        const delay = mayRetrySame ? retryDelayMs(attempt, deps.retry, err instanceof UpstreamError ? err.retryAfterMs : undefined, deps.random) : undefined;
        host.log.warn(
          { agentId: host.agentId, endpoint: endpoint.position, provider: endpoint.provider, category, status: err instanceof UpstreamError ? err.status : undefined, attempt, midAnswer, retryInMs: delay, detail: reason.detail },
          'upstream call failed',
        );
        if (delay !== undefined) {
          counted?.retries.inc();
          await deps.sleep(delay, host.signal);
          continue;
        }
        if (policy.fallBack === 'other-model') refusedModels.add(modelKey(endpoint));
        if (hasNext) counted?.fallbacks.inc();
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
