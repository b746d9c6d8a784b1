/**
 * Closed-loop chat load for the drill and the rolling-restart test: each
 * worker runs one turn at a time with the careful client, until told to
 * stop, and never past a bound on turns or time.
 */

import { randomUUID } from 'node:crypto';
import { runTurn, type TurnTrace } from './turn-client.js';

export interface LoadSpec {
  origin: string;
  token: string;
  agentId: string;
  concurrency: number;
  /** Hard bounds: no more turns than this, none started after this many ms. */
  maxTurns: number;
  maxMs: number;
  /** A turn that has not ended after this long counts as lost. */
  turnDeadlineMs: number;
  /** Text that marks this load's questions, so its rows can be found in the database. */
  tag: string;
  /** false: non-streaming turns (one JSON answer each; default true). */
  stream?: boolean;
}

export interface RunningLoad {
  /** Every turn ended so far. */
  readonly traces: readonly TurnTrace[];
  /** Turns started so far (ended or not). */
  readonly started: number;
  /** Stops starting turns; resolves once the running ones have ended. */
  stop(): Promise<TurnTrace[]>;
}

export function startLoad(spec: LoadSpec): RunningLoad {
  const traces: TurnTrace[] = [];
  const abort = new AbortController();
  const startedAt = Date.now();
  let started = 0;
  let stopping = false;
  const more = () => !stopping && started < spec.maxTurns && Date.now() - startedAt < spec.maxMs;
  const worker = async (index: number) => {
    while (more()) {
      started++;
      const question = `${spec.tag} worker ${index} turn ${randomUUID()}`;
      traces.push(await runTurn({ origin: spec.origin, token: spec.token, agentId: spec.agentId, question, deadlineMs: spec.turnDeadlineMs, signal: abort.signal, stream: spec.stream !== false }));
    }
  };
  const workers = Promise.all(Array.from({ length: spec.concurrency }, (_, i) => worker(i)));
  // The time bound holds even if nobody calls stop(): running turns end within their own deadline.
  const cap = setTimeout(() => abort.abort(), spec.maxMs + spec.turnDeadlineMs);
  cap.unref();
  return {
    traces,
    get started() {
      return started;
    },
    async stop() {
      stopping = true;
      await workers;
      clearTimeout(cap);
      return traces;
    },
  };
}

/**
 * Open-loop turns: one new turn every `intervalMs` whatever the others do
 * (the closed-loop load above starts a turn only when one ends, so while
 * all its clients wait on answers it writes nothing, failure or not), each
 * run to its end with the careful client; at most `maxInFlight` at once.
 * Their acknowledgements show when turns could be written.
 */
export function startArrivals(spec: Omit<LoadSpec, 'concurrency'> & { intervalMs: number; maxInFlight: number }): RunningLoad {
  const traces: TurnTrace[] = [];
  const abort = new AbortController();
  const startedAt = Date.now();
  const running = new Set<Promise<void>>();
  let started = 0;
  let n = 0;
  const timer = setInterval(() => {
    if (started >= spec.maxTurns || Date.now() - startedAt >= spec.maxMs) return;
    if (running.size >= spec.maxInFlight) return;
    started++;
    const question = `${spec.tag} arrival ${++n} ${randomUUID()}`;
    const turn = runTurn({ origin: spec.origin, token: spec.token, agentId: spec.agentId, question, deadlineMs: spec.turnDeadlineMs, signal: abort.signal, stream: spec.stream !== false }).then((trace) => {
      traces.push(trace);
      running.delete(turn);
    });
    running.add(turn);
  }, spec.intervalMs);
  const cap = setTimeout(() => abort.abort(), spec.maxMs + spec.turnDeadlineMs);
  cap.unref();
  return {
    traces,
    get started() {
      return started;
    },
    async stop() {
      clearInterval(timer);
      await Promise.all([...running]);
      clearTimeout(cap);
      return traces;
    },
  };
}
