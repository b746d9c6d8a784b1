import type { Metric, Registry } from 'prom-client';

/**
 * Counters and histograms whose label-bound children are plain objects:
 * `inc()` and `observe()` touch numbers only. prom-client's own children
 * (`metric.labels(...)`) validate and hash their labels again at every
 * call (a string built from every label, a hash lookup): on the chat path,
 * several per turn, that is most of what metrics would cost. These register
 * in a prom-client Registry like its own metrics and print the same text.
 */

type Labels = Readonly<Record<string, string>>;

/** A sample as prom-client's registry prints it. */
interface SampleValue {
  labels: Readonly<Record<string, string | number>>;
  value: number;
  metricName?: string;
}

/** What prom-client's registry reads of a metric (`get()`). */
export interface MetricReading {
  name: string;
  help: string;
  type: 'counter' | 'histogram';
  values: SampleValue[];
  aggregator: 'sum';
}

function keyOf(labelNames: readonly string[], labels: Labels): string {
  let key = '';
  for (const name of labelNames) key += `${labels[name] ?? ''}\u0000`;
  return key;
}

function checkLabels(metric: string, labelNames: readonly string[], labels: Labels): void {
  for (const name of Object.keys(labels)) {
    if (!labelNames.includes(name)) throw new Error(`${metric} has no label ${name}`);
  }
}

export class CounterChild {
  value = 0;
  constructor(readonly labels: Labels) {}

  inc(by = 1): void {
    this.value += by;
  }
}

export class BoundCounter {
  readonly type = 'counter' as const;
  private readonly children = new Map<string, CounterChild>();

  constructor(
    readonly name: string,
    readonly help: string,
    readonly labelNames: readonly string[],
    registry: Registry,
  ) {
    registry.registerMetric(this as unknown as Metric);
    // An unlabelled counter shows 0 before its first increment, like prom-client's.
    if (labelNames.length === 0) this.child({});
  }

  /** The child of these labels; keep it (it is the cheap part). */
  child(labels: Labels): CounterChild {
    const key = keyOf(this.labelNames, labels);
    let child = this.children.get(key);
    if (child === undefined) {
      checkLabels(this.name, this.labelNames, labels);
      child = new CounterChild({ ...labels });
      this.children.set(key, child);
    }
    return child;
  }

  get(): Promise<MetricReading> {
    const values = [...this.children.values()].map((c) => ({ labels: c.labels, value: c.value }));
    return Promise.resolve({ name: this.name, help: this.help, type: this.type, values, aggregator: 'sum' });
  }
}

export class HistogramChild {
  /** Observations per bucket (not cumulative); the last one is +Inf. */
  readonly counts: Float64Array;
  sum = 0;
  count = 0;

  constructor(
    readonly labels: Labels,
    private readonly upperBounds: readonly number[],
  ) {
    this.counts = new Float64Array(upperBounds.length + 1);
  }

  observe(value: number): void {
    const bounds = this.upperBounds;
    let i = 0;
    while (i < bounds.length && value > (bounds[i] as number)) i++;
    this.counts[i] = (this.counts[i] as number) + 1;
    this.sum += value;
    this.count++;
  }
}

export class BoundHistogram {
  readonly type = 'histogram' as const;
  private readonly children = new Map<string, HistogramChild>();

  constructor(
    readonly name: string,
    readonly help: string,
    readonly labelNames: readonly string[],
    readonly upperBounds: readonly number[],
    registry: Registry,
  ) {
    if (labelNames.includes('le')) throw new Error(`${name}: le is the histogram's own label`);
    registry.registerMetric(this as unknown as Metric);
  }

  child(labels: Labels): HistogramChild {
    const key = keyOf(this.labelNames, labels);
    let child = this.children.get(key);
    if (child === undefined) {
      checkLabels(this.name, this.labelNames, labels);
      child = new HistogramChild({ ...labels }, this.upperBounds);
      this.children.set(key, child);
    }
    return child;
  }

  get(): Promise<MetricReading> {
    const values: SampleValue[] = [];
    for (const c of this.children.values()) {
      let cumulative = 0;
      this.upperBounds.forEach((bound, i) => {
        cumulative += c.counts[i] as number;
        values.push({ labels: { le: bound, ...c.labels }, value: cumulative, metricName: `${this.name}_bucket` });
      });
      values.push({ labels: { le: '+Inf', ...c.labels }, value: c.count, metricName: `${this.name}_bucket` });
      values.push({ labels: c.labels, value: c.sum, metricName: `${this.name}_sum` });
      values.push({ labels: c.labels, value: c.count, metricName: `${this.name}_count` });
    }
    return Promise.resolve({ name: this.name, help: this.help, type: this.type, values, aggregator: 'sum' });
  }
}
