/**
 * Open-loop chat load: each planned turn starts at its own time whatever
 * the others are doing, and streams to its end through one undici Pool
 * (one socket per stream, HTTP/1.1, as a browser population would hold).
 * Each turn asks the mock for its own answer shape and is checked against
 * the answer that shape gives. Bounded: nothing starts after the last
 * planned time, and turns still running `drainMs` after it are abandoned.
 */

import { performance } from 'node:perf_hooks';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Pool } from 'undici';
import type { LoadTarget, TurnHandle } from './sse-load.js';
import { createLoadPool, runTurn } from './sse-load.js';
import type { PlannedTurn } from './turn-schedule.js';
import { answerMs, expectedChunks, mockDirective } from './turn-schedule.js';

export interface ScheduledLoadSpec {
  /** `http://127.0.0.1:PORT` of LLMChat. */
  origin: string;
  token: string;
  agentId: string;
  /** Marks this load's questions (`<tag> <n>`), so its rows can be found in the database. */
  tag: string;
  turns: readonly PlannedTurn[];
  /** After the last planned start, how long running turns may take before they are abandoned. */
  drainMs: number;
  /** Longest wait for response headers, and between two body chunks. */
  headersTimeoutMs?: number;
  bodyTimeoutMs?: number;
  signal?: AbortSignal;
}

/** One turn as the client saw it; times in ms, `startMs` after the level started. */
export interface TurnRecord {
  question: string;
  plannedMs: number;
  startMs: number;
  /** The mock's delay from its headers to the first chunk, and to the last: the answer's own times. */
  mockFirstTokenMs: number;
  mockAnswerMs: number;
  /** Text chunks the mock was asked for. */
  chunks: number;
  status: number;
  /** The error code of a refused request's JSON body (`UPSTREAM_BUSY`, `OVERLOADED`…). */
  code: string | undefined;
  ttftMs: number | undefined;
  totalMs: number;
  error: string | undefined;
  errorDetail: string | undefined;
}

export interface ScheduledLoad {
  /** Turns sent and not yet ended (streams open or waiting for headers). */
  inFlight(): number;
  /** The most turns in flight at once so far. */
  peakInFlight(): number;
  /** Resolves with every turn once all have ended or been abandoned. */
  done: Promise<TurnRecord[]>;
}

const TICK_MS = 5;
const ABANDON_GRACE_MS = 5_000;

/** `"code":"X"` of an error body excerpt (also cut short); undefined when there is none. */
export function errorCodeOf(body: string | undefined): string | undefined {
  if (body === undefined) return undefined;
  return /"code"\s*:\s*"([A-Za-z0-9_.-]{1,64})"/.exec(body)?.[1];
}

export function startScheduledLoad(spec: ScheduledLoadSpec): ScheduledLoad {
  const turns = [...spec.turns].sort((a, b) => a.atMs - b.atMs);
  const pool: Pool = createLoadPool(spec.origin, Math.max(1, turns.length), {
    headersTimeoutMs: spec.headersTimeoutMs ?? 120_000,
    bodyTimeoutMs: spec.bodyTimeoutMs ?? 120_000,
  });
  const handles = new Set<TurnHandle>();
  const running = new Set<Promise<void>>();
  const records: TurnRecord[] = [];
  const origin = performance.now();
  let stopped = spec.signal?.aborted === true;
  let peak = 0;
  const abandonAll = (): void => {
    for (const handle of handles) handle.abandon();
  };
  const onAbort = (): void => {
    stopped = true;
    abandonAll();
  };
  spec.signal?.addEventListener('abort', onAbort, { once: true });

  const start = (planned: PlannedTurn, index: number): void => {
    const question = `${spec.tag} ${index}`;
    const target: LoadTarget = {
      name: 'llmchat',
      origin: spec.origin,
      path: '/api/chat/completions',
      headers: { authorization: `Bearer ${spec.token}` },
      body: JSON.stringify({ agentId: spec.agentId, messages: [{ role: 'user', content: `${question} ${mockDirective(planned.answer)}` }], stream: true }),
      protocol: 'llmchat',
      expected: expectedChunks(question, planned.answer.chunks),
    };
    const startMs = performance.now() - origin;
    let handle: TurnHandle | undefined;
    const turn = runTurn(pool, target, (h) => {
      handle = h;
      handles.add(h);
    }).then((outcome) => {
      if (handle !== undefined) handles.delete(handle);
      records.push({
        question,
        plannedMs: planned.atMs,
        startMs,
        mockFirstTokenMs: planned.answer.firstTokenMs,
        mockAnswerMs: answerMs(planned.answer),
        chunks: planned.answer.chunks,
        status: outcome.status,
        code: outcome.status === 200 ? undefined : errorCodeOf(outcome.errorDetail),
        ttftMs: outcome.ttftMs,
        totalMs: outcome.totalMs,
        error: outcome.error,
        errorDetail: outcome.errorDetail,
      });
    });
    running.add(turn);
    if (running.size > peak) peak = running.size;
    void turn.finally(() => running.delete(turn));
  };

  const done = (async (): Promise<TurnRecord[]> => {
    try {
      // Arrivals: start every turn whose time has come; the loop ends with the schedule (or a stop).
      let next = 0;
      while (next < turns.length && !stopped) {
        const now = performance.now() - origin;
        while (next < turns.length && (turns[next] as PlannedTurn).atMs <= now) {
          start(turns[next] as PlannedTurn, next);
          next++;
        }
        if (next < turns.length) await sleep(Math.min(TICK_MS, Math.max(1, (turns[next] as PlannedTurn).atMs - now)));
      }
      // Drain: bounded by the cap, then a short grace after abandoning what is left.
      const drainDeadline = performance.now() + spec.drainMs;
      while (running.size > 0 && performance.now() < drainDeadline && !stopped) await sleep(50);
      if (running.size > 0) {
        abandonAll();
        const graceDeadline = performance.now() + ABANDON_GRACE_MS;
        while (running.size > 0 && performance.now() < graceDeadline) await sleep(50);
        if (running.size > 0) await pool.destroy().catch(() => undefined);
        await Promise.race([Promise.allSettled([...running]), sleep(ABANDON_GRACE_MS)]);
      }
      return records;
    } finally {
      spec.signal?.removeEventListener('abort', onAbort);
      await pool.close().catch(() => pool.destroy());
    }
  })();

  return { inFlight: () => running.size, peakInFlight: () => peak, done };
}
