import type { Logger } from 'pino';

/** Per dependency, in this process: features degraded now, and failures reported so far (metrics read both). */
const degradedNow = new Map<string, number>();
const failuresSoFar = new Map<string, number>();

/** Features of this process degraded now for lack of `dependency` ('shared state' or 'the database'). */
export function degradedFeatures(dependency = 'shared state'): number {
  return degradedNow.get(dependency) ?? 0;
}

/** Failed operations on `dependency` reported by the features of this process so far. */
export function dependencyFailures(dependency = 'shared state'): number {
  return failuresSoFar.get(dependency) ?? 0;
}

/**
 * Logs a feature's loss of a dependency (shared state unless named) once
 * when it starts and once when it ends, instead of once per request: with
 * Redis or PostgreSQL down under load, per-request warnings would flood the
 * log.
 */
export class DegradedNotice {
  private degradedSince: number | undefined;
  private suppressed = 0;

  constructor(
    private readonly logger: Logger,
    /** What stops working, e.g. "resumption on other instances". */
    private readonly feature: string,
    /** Milliseconds since the epoch (tests hand in a fake clock). */
    private readonly now: () => number = Date.now,
    /** What failed, as the log says it. */
    private readonly dependency = 'shared state',
  ) {}

  get degraded(): boolean {
    return this.degradedSince !== undefined;
  }

  failed(err: unknown): void {
    failuresSoFar.set(this.dependency, (failuresSoFar.get(this.dependency) ?? 0) + 1);
    if (this.degradedSince !== undefined) {
      this.suppressed++;
      return;
    }
    this.degradedSince = this.now();
    this.suppressed = 0;
    degradedNow.set(this.dependency, (degradedNow.get(this.dependency) ?? 0) + 1);
    this.logger.warn({ err: err instanceof Error ? err.message : String(err) }, `${this.dependency} unavailable: ${this.feature} degraded until it returns`);
  }

  succeeded(): void {
    if (this.degradedSince === undefined) return;
    this.logger.info({ degradedMs: this.now() - this.degradedSince, failuresSinceFirst: this.suppressed }, `${this.dependency} back: ${this.feature} restored`);
    this.degradedSince = undefined;
    degradedNow.set(this.dependency, (degradedNow.get(this.dependency) ?? 1) - 1);
  }
}
