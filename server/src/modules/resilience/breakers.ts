import type { Logger } from 'pino';
import type { BreakerDecision, BreakerOutcome, BreakerSettings, BreakerSnapshot } from '../../shared-state/breaker.js';
import { DegradedNotice } from '../../shared-state/degraded.js';
import { Channels, type SharedState, type Unsubscribe } from '../../shared-state/shared-state.js';

export interface BreakerServiceDeps {
  state: SharedState;
  settings: BreakerSettings;
  logger: Logger;
  /** Milliseconds since the epoch (tests hand in a fake clock). */
  now?: () => number;
  /** How long a closed breaker read from shared state is trusted without asking again. */
  cacheMs?: number;
}

export interface BreakerService {
  start(): Promise<void>;
  stop(): Promise<void>;
  /** May a call go to this endpoint now? `probeLeaseMs`: how long a probe may take before another caller may probe. */
  acquire(endpointId: string, probeLeaseMs: number): Promise<BreakerDecision>;
  /** Reports a call's outcome; `probe` when the call was the breaker's probe. Never throws. */
  record(endpointId: string, outcome: BreakerOutcome, probe: boolean): Promise<void>;
  /** Current states (for health and the admin API). */
  snapshots(endpointIds: readonly string[]): Promise<BreakerSnapshot[]>;
  readonly settings: BreakerSettings;
}

const DEFAULT_CACHE_MS = 1_000;

/**
 * Circuit breakers shared by every instance. The breaker itself lives in
 * shared state (atomic there); this instance keeps a short-lived copy so a
 * closed breaker costs no round trip per turn: a closed, failure-free
 * breaker is read at most once per `cacheMs`, and a state change is
 * announced on `Channels.breakerChanged` so every instance drops its copy
 * at once. Shared state unreachable: breakers fail open (calls go through),
 * so a Redis outage never blocks chat, and that is logged once per outage
 * (with every failed turn writing to the breaker, a per-call warning would
 * flood the log).
 */
export function createBreakerService(deps: BreakerServiceDeps): BreakerService {
  const { state, settings, logger } = deps;
  const now = deps.now ?? Date.now;
  const cacheMs = deps.cacheMs ?? DEFAULT_CACHE_MS;
  const cache = new Map<string, { snapshot: BreakerSnapshot; readAt: number }>();
  let unsubscribe: Unsubscribe | undefined;
  const notice = new DegradedNotice(logger, 'circuit breakers (failing open: calls go through)', now);

  function remember(endpointId: string, snapshot: BreakerSnapshot): void {
    cache.set(endpointId, { snapshot, readAt: now() });
  }

  function announce(endpointId: string): void {
    state.publish(Channels.breakerChanged, endpointId).catch(() => undefined);
  }

  return {
    settings,

    async start() {
      unsubscribe = await state.subscribe(Channels.breakerChanged, (endpointId) => cache.delete(endpointId));
    },

    async stop() {
      await unsubscribe?.();
    },

    async acquire(endpointId, probeLeaseMs) {
      const cached = cache.get(endpointId);
      if (cached && cached.snapshot.state === 'closed' && now() - cached.readAt < cacheMs) return 'allow';
      try {
        const { decision, snapshot } = await state.breakerAcquire(endpointId, now(), probeLeaseMs);
        notice.succeeded();
        remember(endpointId, snapshot);
        if (decision === 'probe') announce(endpointId);
        return decision;
      } catch (err) {
        notice.failed(err);
        return 'allow';
      }
    },

    async record(endpointId, outcome, probe) {
      const cached = cache.get(endpointId)?.snapshot;
      // The common case, a success on a healthy endpoint, changes nothing: no write.
      if (outcome === 'success' && !probe && cached?.state === 'closed' && cached.failures === 0) return;
      if (outcome === 'release' && !probe) return;
      try {
        const snapshot = await state.breakerRecord(endpointId, outcome, now(), settings);
        notice.succeeded();
        remember(endpointId, snapshot);
        if (snapshot.state !== (cached?.state ?? 'closed')) {
          announce(endpointId);
          logger.warn({ endpointId, from: cached?.state ?? 'closed', to: snapshot.state }, 'circuit breaker changed state');
        }
      } catch (err) {
        notice.failed(err);
      }
    },

    async snapshots(endpointIds) {
      try {
        const snapshots = await state.breakerRead(endpointIds);
        notice.succeeded();
        snapshots.forEach((s, i) => {
          const id = endpointIds[i];
          if (id !== undefined) remember(id, s);
        });
        return snapshots;
      } catch (err) {
        notice.failed(err);
        throw err;
      }
    },
  };
}
