import { setFlagsFromString } from 'node:v8';

/**
 * How far V8 lets its old generation grow past what the last full
 * collection kept before it collects again (`HEAP_GROWING_PERCENT`).
 *
 * By default V8 picks the factor itself, up to 4× for a heap it marks
 * slowly, and an instance holding thousands of long answers keeps most of
 * its heap as garbage it has not collected yet: at 10,000 answers, 1.0 GiB
 * of heap for about 0.35 GiB live. A fixed 1.5× measured (2 cores, bench of
 * 2026-12-04): 10,000 long answers RSS 1339 → 799 MiB (122 → 67 KiB per
 * stream), server CPU 37.0 → 40.6 s, inside the run-to-run spread of
 * 37–40.5 s; short answers at 100 and 1000 streams the same CPU per turn
 * (medians of 5 and 2 rounds) with 50 and 130 MiB less RSS. 20 (1.2×) gave
 * 59 KiB per stream for 30% more CPU.
 *
 * The flag is read at each collection, so setting it at start takes effect
 * (V8 does not accept it in NODE_OPTIONS). 0 leaves V8's own choice.
 */
export function applyHeapGrowingPercent(percent: number): void {
  if (percent > 0) setFlagsFromString(`--heap-growing-percent=${percent}`);
}
