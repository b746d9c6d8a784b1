import { setTimeout as sleep } from 'node:timers/promises';

/**
 * What a condition reports: `true` once it holds, else why not yet (shown
 * if the wait times out). A condition that throws counts as not yet.
 */
export type Condition = () => Promise<true | string> | true | string;

/** Polls `condition` until it holds; rejects after `timeoutMs` with the last reason. */
export async function waitUntil(what: string, condition: Condition, timeoutMs: number, intervalMs = 200): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let last: string;
  for (;;) {
    try {
      const result = await condition();
      if (result === true) return;
      last = result;
    } catch (err) {
      last = err instanceof Error ? err.message : String(err);
    }
    if (Date.now() >= deadline) throw new Error(`${what}: not within ${timeoutMs} ms (last: ${last})`);
    await sleep(intervalMs);
  }
}

/** GET `url` with a short deadline; resolves with the status and the body as JSON (or undefined when it is not JSON). */
export async function getJson(url: string, timeoutMs = 2_000): Promise<{ status: number; body: unknown }> {
  const response = await fetch(url, { signal: AbortSignal.timeout(timeoutMs) });
  const text = await response.text();
  try {
    return { status: response.status, body: JSON.parse(text) as unknown };
  } catch {
    return { status: response.status, body: undefined };
  }
}

/**
 * Waits for every step; once all have settled, throws the first failure.
 * Unlike Promise.all, nothing is left running unobserved when one fails, so
 * whatever the others started can be cleaned up.
 */
export async function allSettledOrThrow<T>(steps: readonly Promise<T>[]): Promise<T[]> {
  const results = await Promise.allSettled(steps);
  const failed = results.find((r): r is PromiseRejectedResult => r.status === 'rejected');
  if (failed !== undefined) throw failed.reason;
  return results.map((r) => (r as PromiseFulfilledResult<T>).value);
}
