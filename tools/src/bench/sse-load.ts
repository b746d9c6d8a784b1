/**
 * The bench's load generator: closed-loop workers that stream chat turns
 * through one undici Pool and time each turn from the request to the first
 * text chunk (TTFT) and to the end of the stream. It runs in the bench
 * process, next to (not inside) the mock and the server, and stays lean:
 * raw dispatch handlers instead of body streams, SSE split by hand, and a
 * JSON.parse only for the first and last text chunks and the closing events.
 */

import { performance } from 'node:perf_hooks';
import { StringDecoder } from 'node:string_decoder';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Dispatcher } from 'undici';
import { Pool } from 'undici';

/** `llmchat`: the platform's named events (`chunk`, `error`, `end`); `openai`: `data:` chunks ending with `[DONE]`. */
export type StreamProtocol = 'llmchat' | 'openai';

/** What a correct answer looks like: its chunk count and the text of its first and last chunks. */
export interface ExpectedAnswer {
  chunks: number;
  first: string;
  last: string;
}

export interface LoadTarget {
  /** Label in reports, e.g. `direct` or `llmchat`. */
  name: string;
  /** `http://127.0.0.1:PORT` */
  origin: string;
  path: string;
  headers: Record<string, string>;
  /** JSON request body, sent as is on every turn. */
  body: string;
  protocol: StreamProtocol;
  /** Without it only "at least one chunk and a clean end" is checked. */
  expected?: ExpectedAnswer;
}

/** One finished turn, as `runTurn` saw it. */
export interface TurnOutcome {
  status: number;
  /** Milliseconds from sending the request to the first non-empty text chunk; undefined without one. */
  ttftMs: number | undefined;
  /** Milliseconds from sending the request to the end event or the close of the stream. */
  totalMs: number;
  chunks: number;
  firstChunk: string | undefined;
  lastChunk: string | undefined;
  /** Short, stable reason (groups errors in reports); undefined for a good turn. */
  error: string | undefined;
  /** The specifics of the error: message, body excerpt. */
  errorDetail: string | undefined;
}

/** One turn of a load run; times in milliseconds, `startMs`/`endMs` relative to the start of the run. */
export interface TurnSample {
  startMs: number;
  endMs: number;
  ttftMs: number | undefined;
  totalMs: number;
  chunks: number;
  error: string | undefined;
  errorDetail: string | undefined;
}

export interface LoadOptions {
  /** Number of closed-loop workers, each with at most one turn in flight. */
  concurrency: number;
  /** Turns that end in this first period warm the connections up and are not reported. */
  warmupMs: number;
  /** Length of the measured window that follows the warm-up. */
  durationMs: number;
  /** After the window, how long in-flight turns may take before they are abandoned (and counted as errors). */
  drainTimeoutMs: number;
  /** Pause of a worker after a failed turn, so that a dead target does not spin the loop. Default 10 ms. */
  errorBackoffMs?: number;
  /** Per-turn limits of the pool. Defaults: 30 s for the headers, 30 s between body chunks. */
  headersTimeoutMs?: number;
  bodyTimeoutMs?: number;
  /** Aborting it stops the workers and abandons their in-flight turns at once. */
  signal?: AbortSignal;
}

export interface LoadResult {
  target: string;
  concurrency: number;
  /** Actual length of the measured window, ms. */
  windowMs: number;
  /** Time spent waiting for in-flight turns after the window, ms. */
  drainMs: number;
  /**
   * Turns that started after the warm-up (steady state), and every failed
   * turn that ended after it whenever it started: latency figures come from
   * steady state, and no error is hidden.
   */
  samples: TurnSample[];
  /** Good turns that ended within the measured window, whenever they started: the throughput numerator. */
  completedInWindow: number;
  /** Turns still running at the drain cap (included in `samples` as errors). */
  abandoned: number;
  /** Turns that ended during the warm-up, and how many of them failed (not in `samples`). */
  warmupTurns: number;
  warmupErrors: number;
  /** Good turns started during the warm-up that ended after it (the cold-start burst): counted, not sampled. */
  carriedOver: number;
  /** The slowest time to first token of any turn started during the warm-up, ms: what a cold start costs. */
  coldStartMaxTtftMs: number | undefined;
}

export const ABANDONED = 'abandoned (drain cap or stop)';
const BODY_EXCERPT_CHARS = 300;

class AbandonedError extends Error {
  constructor() {
    super(ABANDONED);
    this.name = 'AbandonedError';
  }
}

/** Turns the SSE byte stream of one response into the counts and times of one turn. */
class TurnParser {
  private readonly decoder = new StringDecoder('utf8');
  private pending = '';
  chunks = 0;
  ttftMs: number | undefined;
  firstChunk: string | undefined;
  private lastChunkData: string | undefined;
  ended = false;
  error: string | undefined;
  errorDetail: string | undefined;

  constructor(
    private readonly protocol: StreamProtocol,
    private readonly startedAt: number,
  ) {}

  push(bytes: Buffer): void {
    let text = this.decoder.write(bytes);
    if (text.includes('\r')) text = text.replace(/\r\n?/g, '\n');
    this.pending += text;
    let boundary = this.pending.indexOf('\n\n');
    while (boundary !== -1) {
      const block = this.pending.slice(0, boundary);
      this.pending = this.pending.slice(boundary + 2);
      this.block(block);
      boundary = this.pending.indexOf('\n\n');
    }
  }

  /** The text of the last chunk; parsed once, at the end. */
  lastChunk(): string | undefined {
    if (this.lastChunkData === undefined) return undefined;
    return this.protocol === 'llmchat' ? llmchatContent(this.lastChunkData) : openAiContent(this.lastChunkData);
  }

  private fail(reason: string, detail: string): void {
    if (this.error !== undefined) return;
    this.error = reason;
    this.errorDetail = detail;
  }

  private block(block: string): void {
    let event = 'message';
    let data: string | undefined;
    for (const line of block.split('\n')) {
      if (line.startsWith('data:')) {
        const value = line.charCodeAt(5) === 32 ? line.slice(6) : line.slice(5);
        data = data === undefined ? value : `${data}\n${value}`;
      } else if (line.startsWith('event:')) {
        event = line.charCodeAt(6) === 32 ? line.slice(7) : line.slice(6);
      }
    }
    // Comments (`: ping`) and events without data carry nothing to time.
    if (data === undefined) return;
    if (this.protocol === 'llmchat') this.llmchatEvent(event, data);
    else this.openAiEvent(data);
  }

  private textChunk(data: string, content: () => string | undefined): void {
    this.chunks++;
    this.lastChunkData = data;
    if (this.chunks > 1) return;
    this.ttftMs = performance.now() - this.startedAt;
    const text = content();
    if (text === undefined || text === '') this.fail('bad first chunk', `first chunk has no text: ${data.slice(0, BODY_EXCERPT_CHARS)}`);
    this.firstChunk = text;
  }

  private llmchatEvent(event: string, data: string): void {
    switch (event) {
      case 'chunk':
        this.textChunk(data, () => llmchatContent(data));
        return;
      case 'error':
        this.fail('error event', data.slice(0, BODY_EXCERPT_CHARS));
        return;
      case 'end': {
        this.ended = true;
        const status = endStatus(data);
        if (status !== 'complete') this.fail(`end status ${status}`, data.slice(0, BODY_EXCERPT_CHARS));
        return;
      }
      default:
        return;
    }
  }

  private openAiEvent(data: string): void {
    if (data === '[DONE]') {
      this.ended = true;
      return;
    }
    if (data.startsWith('{"error"')) {
      this.fail('error event', data.slice(0, BODY_EXCERPT_CHARS));
      return;
    }
    // Cheap test for a non-empty `"content":"…"`; the role chunk carries `"content":""`.
    const at = data.indexOf('"content":"');
    if (at !== -1) {
      if (data.charCodeAt(at + 11) !== 34) this.textChunk(data, () => openAiContent(data));
      return;
    }
    // Some other spelling (spaces, escapes): decide by parsing.
    if (data.includes('"content"')) {
      const content = openAiContent(data);
      if (content !== undefined && content !== '') this.textChunk(data, () => content);
    }
  }
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function parseJson(text: string): unknown {
  try {
    return JSON.parse(text) as unknown;
  } catch {
    return undefined;
  }
}

function llmchatContent(data: string): string | undefined {
  const payload = parseJson(data);
  return isRecord(payload) && typeof payload.content === 'string' ? payload.content : undefined;
}

function openAiContent(data: string): string | undefined {
  const payload = parseJson(data);
  if (!isRecord(payload) || !Array.isArray(payload.choices)) return undefined;
  const choice: unknown = payload.choices[0];
  if (!isRecord(choice) || !isRecord(choice.delta)) return undefined;
  return typeof choice.delta.content === 'string' ? choice.delta.content : undefined;
}

function endStatus(data: string): string {
  const payload = parseJson(data);
  return isRecord(payload) && typeof payload.status === 'string' ? payload.status : 'missing';
}

function errorCode(error: Error): string {
  const code = (error as { code?: unknown }).code;
  return typeof code === 'string' ? code : error.name;
}

/** Lets the load run abandon a turn that is still in flight at the drain cap. */
export interface TurnHandle {
  abandon(): void;
}

/**
 * Streams one turn and resolves with its outcome; never rejects. Connection
 * failures, bad statuses, `error` events, a non-complete end and a wrong
 * answer all come back as an `error` reason.
 */
export function runTurn(
  dispatcher: Dispatcher,
  target: LoadTarget,
  onStart?: (handle: TurnHandle) => void,
): Promise<TurnOutcome> {
  return new Promise<TurnOutcome>((resolve) => {
    const startedAt = performance.now();
    const parser = new TurnParser(target.protocol, startedAt);
    let status = 0;
    let excerpt = '';
    let settled = false;
    let controller: Dispatcher.DispatchController | undefined;
    let abandoned = false;

    const settle = (error: string | undefined, detail: string | undefined): void => {
      if (settled) return;
      settled = true;
      resolve({
        status,
        ttftMs: parser.ttftMs,
        totalMs: performance.now() - startedAt,
        chunks: parser.chunks,
        firstChunk: parser.firstChunk,
        lastChunk: parser.lastChunk(),
        error,
        errorDetail: detail,
      });
    };

    const finish = (): void => {
      if (status !== 200) return settle(`HTTP ${status}`, excerpt);
      if (parser.error !== undefined) return settle(parser.error, parser.errorDetail);
      if (parser.chunks === 0) return settle('no chunk', `stream ended without a text chunk: ${excerpt}`);
      if (!parser.ended) {
        return settle('no end', target.protocol === 'llmchat' ? 'stream closed without an end event' : 'stream closed without [DONE]');
      }
      const expected = target.expected;
      if (expected !== undefined) {
        if (parser.chunks !== expected.chunks) {
          return settle('chunk count mismatch', `${parser.chunks} chunks, expected ${expected.chunks}`);
        }
        if (parser.firstChunk !== expected.first) {
          return settle('wrong text', `first chunk ${JSON.stringify(parser.firstChunk)}, expected ${JSON.stringify(expected.first)}`);
        }
        const last = parser.lastChunk();
        if (last !== expected.last) {
          return settle('wrong text', `last chunk ${JSON.stringify(last)}, expected ${JSON.stringify(expected.last)}`);
        }
      }
      settle(undefined, undefined);
    };

    const handler: Dispatcher.DispatchHandler = {
      onRequestStart(c) {
        controller = c;
        if (abandoned) c.abort(new AbandonedError());
      },
      onResponseStart(_c, statusCode) {
        status = statusCode;
      },
      onResponseData(_c, chunk) {
        if (excerpt.length < BODY_EXCERPT_CHARS) excerpt += chunk.toString('utf8', 0, Math.min(chunk.length, BODY_EXCERPT_CHARS));
        if (status === 200) parser.push(chunk);
      },
      onResponseEnd() {
        finish();
      },
      onResponseError(_c, error) {
        if (error instanceof AbandonedError) return settle(ABANDONED, undefined);
        // A stream that was already complete when the socket failed still counts.
        if (status === 200 && parser.ended && parser.error === undefined) return finish();
        settle(`connection: ${errorCode(error)}`, error.message);
      },
    };

    onStart?.({
      abandon() {
        abandoned = true;
        controller?.abort(new AbandonedError());
      },
    });

    try {
      dispatcher.dispatch(
        {
          origin: target.origin,
          method: 'POST',
          path: target.path,
          headers: { 'content-type': 'application/json', accept: 'text/event-stream', ...target.headers },
          body: target.body,
        },
        handler,
      );
    } catch (error) {
      settle('dispatch failed', error instanceof Error ? error.message : String(error));
    }
  });
}

/** Waits for `work` at most `ms`; true when the time ran out first. The timer never outlives the wait. */
async function timesOut(work: Promise<unknown>, ms: number): Promise<boolean> {
  const timer = new AbortController();
  try {
    return await Promise.race([
      work.then(() => false),
      sleep(ms, true, { signal: timer.signal }).catch(() => false),
    ]);
  } finally {
    timer.abort();
  }
}

/** A keep-alive pool sized for `connections` concurrent streams to one origin. */
export function createLoadPool(origin: string, connections: number, options: Pick<LoadOptions, 'headersTimeoutMs' | 'bodyTimeoutMs'> = {}): Pool {
  return new Pool(origin, {
    connections,
    pipelining: 1,
    keepAliveTimeout: 60_000,
    keepAliveMaxTimeout: 600_000,
    headersTimeout: options.headersTimeoutMs ?? 30_000,
    bodyTimeout: options.bodyTimeoutMs ?? 30_000,
    connect: { timeout: 10_000 },
  });
}

/**
 * Runs `concurrency` closed-loop workers against `target`: each starts its
 * next turn when the previous one ends, until warm-up plus window are over.
 * Then in-flight turns get `drainTimeoutMs` to finish before they are
 * abandoned. Bounded in time by warmup + duration + drain (+ a short grace).
 */
export async function runLoad(target: LoadTarget, options: LoadOptions): Promise<LoadResult> {
  const { concurrency, warmupMs, durationMs, drainTimeoutMs } = options;
  if (!Number.isInteger(concurrency) || concurrency < 1) throw new RangeError(`concurrency must be a positive integer, got ${concurrency}`);
  const backoffMs = options.errorBackoffMs ?? 10;
  const pool = createLoadPool(target.origin, concurrency, options);
  const inFlight = new Set<TurnHandle>();
  const samples: TurnSample[] = [];
  let completedInWindow = 0;
  let warmupTurns = 0;
  let warmupErrors = 0;
  let carriedOver = 0;
  let coldStartMaxTtftMs: number | undefined;
  let abandoned = 0;
  let stopped = options.signal?.aborted === true;

  const abandonAll = (): void => {
    for (const handle of inFlight) handle.abandon();
  };
  const onAbort = (): void => {
    stopped = true;
    abandonAll();
  };
  options.signal?.addEventListener('abort', onAbort, { once: true });

  const origin = performance.now();
  const windowStart = origin + warmupMs;
  const windowEnd = windowStart + durationMs;

  const worker = async (): Promise<void> => {
    while (!stopped && performance.now() < windowEnd) {
      let handle: TurnHandle | undefined;
      const startedAt = performance.now();
      const outcome = await runTurn(pool, target, (h) => {
        handle = h;
        inFlight.add(h);
      });
      if (handle !== undefined) inFlight.delete(handle);
      const endedAt = performance.now();
      if (outcome.error === undefined && endedAt >= windowStart && endedAt <= windowEnd) completedInWindow++;
      if (startedAt < windowStart && outcome.ttftMs !== undefined) coldStartMaxTtftMs = Math.max(coldStartMaxTtftMs ?? 0, outcome.ttftMs);
      if (endedAt < windowStart) {
        warmupTurns++;
        if (outcome.error !== undefined) warmupErrors++;
      } else if (startedAt < windowStart && outcome.error === undefined) {
        // The cold-start burst spills over the warm-up: its throughput counts, its latency is reported apart.
        carriedOver++;
      } else {
        if (outcome.error === ABANDONED) abandoned++;
        samples.push({
          startMs: startedAt - origin,
          endMs: endedAt - origin,
          ttftMs: outcome.ttftMs,
          totalMs: outcome.totalMs,
          chunks: outcome.chunks,
          error: outcome.error,
          errorDetail: outcome.errorDetail,
        });
      }
      if (outcome.error !== undefined && backoffMs > 0 && !stopped) await sleep(backoffMs);
    }
  };

  const workers = Promise.all(Array.from({ length: concurrency }, () => worker()));
  try {
    // Bounded waits: the window, then the drain cap, then a short grace after abandoning.
    const drainDeadline = windowEnd + drainTimeoutMs;
    if (await timesOut(workers, Math.max(0, drainDeadline - performance.now()))) {
      stopped = true;
      abandonAll();
      if (await timesOut(workers, 5_000)) {
        await pool.destroy(new AbandonedError());
        await timesOut(workers, 5_000);
      }
    }
    const finishedAt = performance.now();
    return {
      target: target.name,
      concurrency,
      windowMs: Math.max(0, Math.min(finishedAt, windowEnd) - windowStart),
      drainMs: Math.max(0, finishedAt - windowEnd),
      samples,
      completedInWindow,
      abandoned,
      warmupTurns,
      warmupErrors,
      carriedOver,
      coldStartMaxTtftMs,
    };
  } finally {
    options.signal?.removeEventListener('abort', onAbort);
    await pool.close().catch(() => pool.destroy());
  }
}
