import type { Logger } from 'pino';
import { DegradedNotice } from '../../shared-state/degraded.js';
import type { SharedState } from '../../shared-state/shared-state.js';
import type { ChatRepository, ClaimedTurn, OrphanCandidate } from './chat-repository.js';

export interface TakeoverOptions {
  repo: ChatRepository;
  state: SharedState;
  logger: Logger;
  instanceId: string;
  /** An instance whose last beat is older than this is taken for dead (its lease). */
  heartbeatTtlMs: number;
  /** How often this instance looks in PostgreSQL for answers whose owner holds no lease (the safety net). */
  scanIntervalMs: number;
  /** The answers running on this instance. */
  runningTurns: () => Iterable<string>;
  /** Whether the answer runs on this instance already. */
  runsHere: (turnId: string) => boolean;
  /** Runs a claimed answer again on this instance. */
  resume: (claimed: ClaimedTurn) => Promise<void>;
  /** Leaves an answer another instance took over from this one (this one was taken for dead): nothing more is sent or stored here. */
  handOver: (turnId: string) => void;
}

const SCAN_BATCH = 50;
/** Answers of a gone instance are claimed in batches of SCAN_BATCH, at most this many batches per beat that found it. */
const MAX_TAKEOVER_BATCHES = 100;
/** A beat renews the lease this many times per lease: one late or lost beat is not a lapse. */
const BEATS_PER_LEASE = 4;
/**
 * After a gap in the registry itself (Redis down, failed over to a replica
 * with older beats, or emptied), how long it must run before anyone is
 * judged gone: every live instance reconnects (ioredis retries at most 2 s
 * apart, and a Sentinel failover is found on the next try) and beats again
 * first. An instance that died during the gap is taken over this much later.
 */
export const REGISTRY_REJOIN_MS = 5_000;
/**
 * An owner missing from the registry altogether (Redis restarted empty, a
 * predecessor of an embedded node) is judged only after this instance has
 * beaten steadily this long: every live instance has re-registered by then
 * (its Redis client reconnects within 2 s, then beats within a quarter second).
 */
const REGISTRY_SETTLE_MS = 10_000;

/**
 * Generations that outlive their instance. Every instance holds a lease in
 * the registry of live instances (shared state), renewed every quarter of the
 * lease; the same round trip tells it which instances let theirs run out,
 * each one to a single survivor, which claims their `streaming` answers in
 * PostgreSQL at once (a conditional UPDATE each: one instance wins) and runs
 * them again. A slower scan of PostgreSQL is the safety net for answers whose
 * owner is not in the registry at all. Nothing is claimed while shared state
 * cannot say whether the owner lives: better a late answer than the same
 * answer twice. An instance that was only paused past its lease learns at
 * its next beat that it was taken for dead and leaves the answers that were
 * taken from it.
 */
export class TakeoverService {
  private heartbeatTimer: NodeJS.Timeout | undefined;
  private scanTimer: NodeJS.Timeout | undefined;
  private scanning: Promise<void> | undefined;
  private beating: Promise<void> | undefined;
  private readonly takeovers = new Set<Promise<void>>();
  private stopped = false;
  /** Since when every beat was steady (undefined: the last one was not, or failed). */
  private steadySince: number | undefined;
  /** This instance was taken for dead and has not yet found out which of its answers it lost. */
  private leaseCheckPending = false;
  /** That check is running. */
  private leaving = false;
  private readonly beatNotice: DegradedNotice;

  constructor(private readonly options: TakeoverOptions) {
    this.beatNotice = new DegradedNotice(options.logger, 'taking over answers of instances that are gone');
  }

  private get beatEveryMs(): number {
    return Math.max(50, Math.floor(this.options.heartbeatTtlMs / BEATS_PER_LEASE));
  }

  async start(): Promise<void> {
    await this.beatOnce();
    this.heartbeatTimer = setInterval(() => void this.beatOnce(), this.beatEveryMs);
    this.heartbeatTimer.unref();
    this.scanTimer = setInterval(() => void this.scanOnce(), this.options.scanIntervalMs);
    this.scanTimer.unref();
    // At start, answers a crashed predecessor left behind are picked up at once.
    void this.scanOnce();
  }

  /** Stops beating and scanning and ends the lease, so what this instance still owns is taken over at another's next beat. */
  async stop(): Promise<void> {
    this.stopped = true;
    clearInterval(this.heartbeatTimer);
    clearInterval(this.scanTimer);
    await Promise.all([this.scanning, this.beating, ...this.takeovers]);
    await this.options.state.expireInstance(this.options.instanceId).catch(() => undefined);
  }

  /** One renewal of the lease; the takeover of the instances it found gone starts and runs on by itself. */
  beatOnce(): Promise<void> {
    if (this.stopped) return Promise.resolve();
    // A beat still waiting on shared state is not doubled: the next one goes when it returns.
    this.beating ??= this.beat().finally(() => {
      this.beating = undefined;
    });
    return this.beating;
  }

  private async beat(): Promise<void> {
    const { state, instanceId, heartbeatTtlMs, logger } = this.options;
    let gone: string[];
    try {
      // A stall that could make a live instance's beat look older than its lease makes this one's look older than this.
      const beat = await state.beatInstance(instanceId, heartbeatTtlMs, heartbeatTtlMs - this.beatEveryMs, REGISTRY_REJOIN_MS);
      this.beatNotice.succeeded();
      this.steadySince = beat.steady ? (this.steadySince ?? Date.now()) : undefined;
      if (beat.lost) {
        const running = [...this.options.runningTurns()].length;
        // At boot (nothing runs yet) a long first stall is harmless: said at info.
        logger[running > 0 ? 'warn' : 'info']({ leaseMs: heartbeatTtlMs, running }, 'this instance missed its lease and was taken for dead: leaving the answers taken over from it');
        this.leaseCheckPending = running > 0;
      }
      gone = beat.gone;
    } catch (err) {
      this.steadySince = undefined;
      this.beatNotice.failed(err);
      return;
    }
    // Neither waits: this instance's own lease must not lapse while PostgreSQL is slow or it resumes many answers.
    if (this.leaseCheckPending && !this.leaving) {
      this.leaving = true;
      this.track(this.leaveLostAnswers().finally(() => (this.leaving = false)));
    }
    if (gone.length > 0) this.track(this.takeOverFrom(gone));
  }

  private track(work: Promise<void>): void {
    this.takeovers.add(work);
    void work.finally(() => this.takeovers.delete(work));
  }

  /** Leaves the answers running here that another instance now owns. Tried again at the next beat when PostgreSQL cannot say. */
  private async leaveLostAnswers(): Promise<void> {
    try {
      const taken = await this.options.repo.ownedElsewhere([...this.options.runningTurns()]);
      this.leaseCheckPending = false;
      for (const turnId of taken) {
        this.options.logger.warn({ turnId }, 'left an answer another instance took over');
        this.options.handOver(turnId);
      }
    } catch (err) {
      this.options.logger.warn({ err: (err as Error).message }, 'could not check which answers were taken over from this instance');
    }
  }

  /** Claims and resumes every answer of instances whose lease ran out, without waiting for them to go quiet. */
  private async takeOverFrom(owners: string[]): Promise<void> {
    this.options.logger.warn({ instances: owners }, 'instances missed their lease: taking their answers over');
    for (let batch = 0; batch < MAX_TAKEOVER_BATCHES && !this.stopped; batch++) {
      let candidates: OrphanCandidate[];
      try {
        candidates = await this.options.repo.answersOwnedBy(owners, SCAN_BATCH);
      } catch (err) {
        // The scan finds them later (their owners hold no lease).
        this.options.logger.warn({ err: (err as Error).message }, 'takeover failed to list the answers of gone instances');
        return;
      }
      const claimed = await Promise.all(candidates.map((c) => this.claimAndResume(c)));
      if (candidates.length < SCAN_BATCH || !claimed.some(Boolean)) return;
    }
  }

  /** Claims one answer from its owner; resumes it here if this instance won. True when it did. */
  private async claimAndResume(candidate: OrphanCandidate): Promise<boolean> {
    const { repo, logger } = this.options;
    try {
      const claimed = await repo.claimTurn(candidate.id, candidate.ownerInstance);
      if (!claimed) return false;
      logger.warn({ turnId: claimed.id, previousOwner: candidate.ownerInstance }, 'took over an answer whose instance is gone');
      await this.options.resume(claimed);
      return true;
    } catch (err) {
      logger.error({ err, turnId: candidate.id }, 'takeover failed');
      return false;
    }
  }

  /** One pass of the safety net: claims and resumes every quiet answer whose owner holds no lease. Resolves when the claimed ones are launched. */
  scanOnce(): Promise<void> {
    if (this.stopped) return Promise.resolve();
    this.scanning ??= this.scan().finally(() => {
      this.scanning = undefined;
    });
    return this.scanning;
  }

  /** Whether an owner absent from the registry may be judged gone: the embedded node is alone; with Redis, the registry has settled. */
  private registrySettled(): boolean {
    if (this.options.state.kind === 'memory') return true;
    return this.steadySince !== undefined && Date.now() - this.steadySince >= REGISTRY_SETTLE_MS;
  }

  private async scan(): Promise<void> {
    const { repo, state, logger, instanceId } = this.options;
    if (!this.registrySettled()) return;
    let candidates;
    try {
      // Quiet for longer than a lease: an answer written a moment ago by an instance about to register is left alone.
      candidates = await repo.orphanCandidates(this.options.heartbeatTtlMs, SCAN_BATCH);
    } catch (err) {
      logger.warn({ err: (err as Error).message }, 'takeover scan failed');
      return;
    }
    const owners = [...new Set(candidates.map((c) => c.ownerInstance).filter((o): o is string => o !== null && o !== instanceId))];
    let alive: Map<string, boolean>;
    try {
      const leases = await state.instancesAlive(owners, this.options.heartbeatTtlMs);
      alive = new Map(owners.map((o, i) => [o, leases[i] === true]));
    } catch {
      // Cannot tell whether the owners live: claim nothing this round.
      return;
    }
    const taken = new Set<string>();
    for (const candidate of candidates) {
      if (this.stopped) return;
      if (this.options.runsHere(candidate.id)) continue;
      const owner = candidate.ownerInstance;
      if (owner !== null && owner !== instanceId && alive.get(owner) === true) continue;
      if (await this.claimAndResume(candidate)) {
        // Should it still live (cut off from shared state), it learns at its next beat and lets go.
        if (owner !== null && owner !== instanceId && !taken.has(owner)) {
          taken.add(owner);
          await state.markInstanceTaken(owner).catch(() => undefined);
        }
      }
    }
  }
}
