import type { Logger } from 'pino';
import type { SharedState } from '../../shared-state/shared-state.js';
import type { ChatRepository, ClaimedTurn } from './chat-repository.js';

export interface TakeoverOptions {
  repo: ChatRepository;
  state: SharedState;
  logger: Logger;
  instanceId: string;
  /** An instance whose heartbeat is older than this is taken for dead. */
  heartbeatTtlSeconds: number;
  /** How often this instance looks for answers left by dead ones. */
  scanIntervalMs: number;
  /** Whether the answer runs on this instance already. */
  runsHere: (turnId: string) => boolean;
  /** Runs a claimed answer again on this instance. */
  resume: (claimed: ClaimedTurn) => Promise<void>;
}

const SCAN_BATCH = 50;

/**
 * Generations that outlive their instance. Every instance keeps a heartbeat
 * in shared state (its lease on the answers it runs, renewed every third of
 * the TTL) and looks, every few seconds, for `streaming` answers that have
 * been quiet for a while. When the owner's heartbeat is gone, it claims the
 * answer in PostgreSQL (one conditional UPDATE: one instance wins) and runs
 * it again. Nothing is claimed while shared state cannot say whether the
 * owner lives: better a late answer than the same answer twice.
 */
export class TakeoverService {
  private heartbeatTimer: NodeJS.Timeout | undefined;
  private scanTimer: NodeJS.Timeout | undefined;
  private scanning: Promise<void> | undefined;
  private stopped = false;

  constructor(private readonly options: TakeoverOptions) {}

  static heartbeatKey(instanceId: string): string {
    return `instance:${instanceId}:heartbeat`;
  }

  async start(): Promise<void> {
    await this.beat();
    const every = Math.max(250, (this.options.heartbeatTtlSeconds * 1000) / 3);
    this.heartbeatTimer = setInterval(() => void this.beat(), every);
    this.heartbeatTimer.unref();
    this.scanTimer = setInterval(() => void this.scanOnce(), this.options.scanIntervalMs);
    this.scanTimer.unref();
    // At start, answers a crashed predecessor left behind are picked up at once.
    void this.scanOnce();
  }

  /** Stops scanning and drops the heartbeat, so what this instance still owns is taken over without waiting for the TTL. */
  async stop(): Promise<void> {
    this.stopped = true;
    clearInterval(this.heartbeatTimer);
    clearInterval(this.scanTimer);
    await this.scanning;
    await this.options.state.del(TakeoverService.heartbeatKey(this.options.instanceId)).catch(() => undefined);
  }

  private async beat(): Promise<void> {
    try {
      await this.options.state.set(TakeoverService.heartbeatKey(this.options.instanceId), String(Date.now()), this.options.heartbeatTtlSeconds);
    } catch (err) {
      this.options.logger.warn({ err: (err as Error).message }, 'could not renew this instance heartbeat');
    }
  }

  /** One pass: claims and resumes every answer whose owner is gone. Resolves when the claimed ones are launched. */
  scanOnce(): Promise<void> {
    if (this.stopped) return Promise.resolve();
    this.scanning ??= this.scan().finally(() => {
      this.scanning = undefined;
    });
    return this.scanning;
  }

  private async scan(): Promise<void> {
    const { repo, state, logger, instanceId } = this.options;
    let candidates;
    try {
      // Quiet for longer than a heartbeat TTL: a live owner checkpoints every second while text flows.
      candidates = await repo.orphanCandidates(this.options.heartbeatTtlSeconds * 1000, SCAN_BATCH);
    } catch (err) {
      logger.warn({ err: (err as Error).message }, 'takeover scan failed');
      return;
    }
    const alive = new Map<string, boolean>();
    for (const candidate of candidates) {
      if (this.stopped) return;
      if (this.options.runsHere(candidate.id)) continue;
      const owner = candidate.ownerInstance;
      if (owner !== null && owner !== instanceId) {
        let lives = alive.get(owner);
        if (lives === undefined) {
          try {
            lives = (await state.get(TakeoverService.heartbeatKey(owner))) !== null;
          } catch {
            // Cannot tell whether the owner lives: claim nothing this round.
            return;
          }
          alive.set(owner, lives);
        }
        if (lives) continue;
      }
      try {
        const claimed = await repo.claimTurn(candidate.id, owner);
        if (!claimed) continue;
        logger.warn({ turnId: claimed.id, previousOwner: owner }, 'took over an answer whose instance is gone');
        await this.options.resume(claimed);
      } catch (err) {
        logger.error({ err, turnId: candidate.id }, 'takeover failed');
      }
    }
  }
}
