import type { Logger } from 'pino';
import type { IdempotencyStore } from '../chat/idempotency.js';
import type { FailureLog } from '../resilience/failure-log.js';

/** One kind of row that outlives its use: what the sweep deletes, in bounded batches. */
export interface RetentionTask {
  /** What the task deletes, for the logs. */
  name: string;
  /** Deletes at most `limit` rows that are past retention at `now`; resolves to how many it deleted. */
  deleteBatch(now: Date, limit: number): Promise<number>;
}

export interface RetentionSweepOptions {
  tasks: readonly RetentionTask[];
  logger: Logger;
  /** How often each instance sweeps. */
  intervalMs: number;
  /** Rows one DELETE removes at most. */
  batchSize: number;
  /** Batches per task per run at most, so one run stays short while a backlog drains over several. */
  maxBatchesPerRun?: number;
  /** Milliseconds since the epoch (tests hand in a fake clock). */
  now?: () => number;
}

const DEFAULT_MAX_BATCHES_PER_RUN = 10;
const DAY_MS = 86_400_000;

/**
 * The retention tasks of this server: idempotency keys past their TTL (a
 * repeat after it starts a new turn anyway) and failed upstream attempts
 * older than the retention period (0 keeps them for ever). The audit log is
 * not swept: it is an append-only hash chain whose table refuses DELETE
 * (modules/audit/audit-chain.ts). Trimming it would need a checkpoint row
 * holding the last removed entry's position and hash, written in the same
 * transaction, for verification to start from.
 */
export function retentionTasks(deps: {
  idempotencyKeys: Pick<IdempotencyStore, 'deleteExpired'>;
  failures: Pick<FailureLog, 'deleteBefore'>;
  upstreamFailuresRetentionDays: number;
}): RetentionTask[] {
  const tasks: RetentionTask[] = [{ name: 'idempotencyKeys', deleteBatch: (now, limit) => deps.idempotencyKeys.deleteExpired(now, limit) }];
  const days = deps.upstreamFailuresRetentionDays;
  if (days > 0) tasks.push({ name: 'upstreamFailures', deleteBatch: (now, limit) => deps.failures.deleteBefore(new Date(now.getTime() - days * DAY_MS), limit) });
  return tasks;
}

/**
 * Deletes rows past retention, on a timer on every instance. Each DELETE is
 * bounded (`batchSize` rows, chosen by primary key in a subquery) and skips
 * rows another instance's sweep holds, so instances sweeping at once split
 * the work instead of waiting on each other; a run does at most
 * `maxBatchesPerRun` batches per task. The first run starts at once, so a
 * single node that restarts often still sweeps.
 */
export class RetentionSweep {
  private timer: NodeJS.Timeout | undefined;
  private running: Promise<Record<string, number>> | undefined;
  private stopped = false;
  private readonly now: () => number;
  private readonly maxBatchesPerRun: number;

  constructor(private readonly options: RetentionSweepOptions) {
    this.now = options.now ?? Date.now;
    this.maxBatchesPerRun = options.maxBatchesPerRun ?? DEFAULT_MAX_BATCHES_PER_RUN;
  }

  start(): void {
    this.timer = setInterval(() => void this.sweepOnce(), this.options.intervalMs);
    this.timer.unref();
    void this.sweepOnce();
  }

  /** Stops the timer and waits for a run in progress. */
  async stop(): Promise<void> {
    this.stopped = true;
    clearInterval(this.timer);
    await this.running;
  }

  /** One run (it also runs on the timer); resolves to the rows deleted per task. A run already in progress is joined, not doubled. */
  sweepOnce(): Promise<Record<string, number>> {
    if (this.stopped) return Promise.resolve({});
    this.running ??= this.sweep().finally(() => {
      this.running = undefined;
    });
    return this.running;
  }

  private async sweep(): Promise<Record<string, number>> {
    const { tasks, batchSize, logger } = this.options;
    const deleted: Record<string, number> = {};
    for (const task of tasks) {
      let total = 0;
      try {
        for (let batch = 0; batch < this.maxBatchesPerRun && !this.stopped; batch++) {
          const n = await task.deleteBatch(new Date(this.now()), batchSize);
          total += n;
          if (n < batchSize) break;
        }
      } catch (err) {
        // The database is down or busy: the next run tries again.
        logger.warn({ err: (err as Error).message, task: task.name }, 'retention sweep failed');
      }
      deleted[task.name] = total;
    }
    if (Object.values(deleted).some((n) => n > 0)) logger.info({ deleted }, 'retention sweep deleted rows past retention');
    return deleted;
  }
}
