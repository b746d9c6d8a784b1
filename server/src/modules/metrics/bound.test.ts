import { Counter, Histogram, Registry } from 'prom-client';
import { describe, expect, it } from 'vitest';
import { BoundCounter, BoundHistogram } from './bound.js';

describe('label-bound counters and histograms', () => {
  it("print exactly what prom-client's own print for the same observations", async () => {
    const ours = new Registry();
    const theirs = new Registry();
    const buckets = [0.1, 1, 10];
    const h = new BoundHistogram('x_seconds', 'A histogram.', ['agent', 'model'], buckets, ours);
    const ph = new Histogram({ name: 'x_seconds', help: 'A histogram.', labelNames: ['agent', 'model'], buckets, registers: [theirs] });
    const c = new BoundCounter('x_total', 'A counter.', ['agent'], ours);
    const pc = new Counter({ name: 'x_total', help: 'A counter.', labelNames: ['agent'], registers: [theirs] });
    const u = new BoundCounter('y_total', 'Unlabelled.', [], ours);
    new Counter({ name: 'y_total', help: 'Unlabelled.', registers: [theirs] });
    const gpt = h.child({ agent: 'gpt', model: 'm"1' });
    for (const v of [0.05, 0.1, 0.5, 3, 30]) {
      gpt.observe(v);
      ph.labels({ agent: 'gpt', model: 'm"1' }).observe(v);
    }
    h.child({ agent: 'other', model: '' }).observe(2);
    ph.labels({ agent: 'other', model: '' }).observe(2);
    c.child({ agent: 'gpt' }).inc();
    c.child({ agent: 'gpt' }).inc(2);
    pc.labels({ agent: 'gpt' }).inc(3);
    expect(await ours.metrics()).toBe(await theirs.metrics());
    u.child({}).inc();
    expect(await ours.metrics()).toContain('y_total 1');
  });

  it('refuses a label the metric does not have', () => {
    const h = new BoundHistogram('z_seconds', 'Z.', ['agent'], [1], new Registry());
    expect(() => h.child({ agent: 'a', user: 'u' })).toThrow(/no label user/);
  });
});
