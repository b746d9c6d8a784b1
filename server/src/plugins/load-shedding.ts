import { monitorEventLoopDelay, type ELDHistogram } from 'node:perf_hooks';
import v8 from 'node:v8';
import type { FastifyInstance } from 'fastify';
import type { ErrorBody } from '../errors.js';

/** What the process is under right now. */
export interface PressureSample {
  /** p99 event-loop delay since the last sample, in ms. */
  eventLoopDelayMs: number;
  /** Heap used, in percent of the heap limit. */
  heapUsedPercent: number;
}

/** Where pressure is read from: the real process, or a test's own numbers. */
export interface PressureSource {
  sample(): PressureSample;
  close(): void;
}

export interface PressureLimits {
  /** 0 turns the check off. */
  maxEventLoopDelayMs: number;
  /** 0 turns the check off. */
  maxHeapUsedPercent: number;
}

/** The real process: Node's event-loop delay histogram (reset at each sample) and V8's heap statistics. */
export function processPressure(): PressureSource {
  const histogram: ELDHistogram = monitorEventLoopDelay({ resolution: 10 });
  histogram.enable();
  return {
    sample() {
      const delayMs = histogram.count > 0 ? histogram.percentile(99) / 1e6 : 0;
      histogram.reset();
      const heap = v8.getHeapStatistics();
      return { eventLoopDelayMs: Math.round(delayMs * 10) / 10, heapUsedPercent: Math.round((heap.used_heap_size / heap.heap_size_limit) * 1000) / 10 };
    },
    close() {
      histogram.disable();
    },
  };
}

/**
 * Decides, once per sample interval, whether the process is overloaded, so
 * the per-request check is one property read. `check()` takes a sample now
 * (the timer calls it; tests call it after setting their source's numbers).
 */
export class PressureMonitor {
  private timer: NodeJS.Timeout | undefined;
  /** The last sample and, when over a limit, why. */
  last: PressureSample = { eventLoopDelayMs: 0, heapUsedPercent: 0 };
  overloadedBecause: string | undefined;
  /** What is over its limit, as a metric label: `event_loop` or `heap`. */
  overloadedBy: 'event_loop' | 'heap' | undefined;

  constructor(
    private readonly source: PressureSource,
    readonly limits: PressureLimits,
    /** Called when shedding starts (with why) and when it stops (undefined): the log an operator reads. */
    private readonly onChange?: (because: string | undefined, sample: PressureSample) => void,
  ) {}

  start(intervalMs = 1_000): void {
    // Boot (migrations, JIT warm-up) is not load: the first window starts now.
    this.source.sample();
    this.timer ??= setInterval(() => this.check(), intervalMs);
    this.timer.unref();
  }

  check(): void {
    const s = this.source.sample();
    this.last = s;
    const { maxEventLoopDelayMs, maxHeapUsedPercent } = this.limits;
    const before = this.overloadedBecause;
    if (maxEventLoopDelayMs > 0 && s.eventLoopDelayMs > maxEventLoopDelayMs) {
      this.overloadedBecause = `event-loop delay ${s.eventLoopDelayMs} ms over ${maxEventLoopDelayMs} ms`;
      this.overloadedBy = 'event_loop';
    } else if (maxHeapUsedPercent > 0 && s.heapUsedPercent > maxHeapUsedPercent) {
      this.overloadedBecause = `heap ${s.heapUsedPercent}% used, over ${maxHeapUsedPercent}%`;
      this.overloadedBy = 'heap';
    } else {
      this.overloadedBecause = undefined;
      this.overloadedBy = undefined;
    }
    if ((before === undefined) !== (this.overloadedBecause === undefined)) this.onChange?.(this.overloadedBecause, s);
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
    this.source.close();
  }
}

/**
 * Sheds new requests while the process is overloaded: 503 `OVERLOADED` with
 * Retry-After, before it falls over. Health endpoints and `/metrics` are
 * exempt (an orchestrator and Prometheus must still see the instance), and
 * so are requests already running (their streams go on).
 */
export function registerLoadShedding(app: FastifyInstance, monitor: PressureMonitor, retryAfterSeconds: number, onShed?: (reason: string) => void): void {
  // Callback style: on the hot path this hook costs one property read, no promise.
  app.addHook('onRequest', (request, reply, done) => {
    if (monitor.overloadedBecause === undefined || request.url.startsWith('/health/') || request.url === '/metrics') {
      done();
      return;
    }
    onShed?.(monitor.overloadedBy ?? 'unknown');
    const body: ErrorBody = { error: { code: 'OVERLOADED', message: 'The server is overloaded; retry shortly', requestId: String(request.id) } };
    void reply.status(503).header('retry-after', String(retryAfterSeconds)).send(body);
  });
}
