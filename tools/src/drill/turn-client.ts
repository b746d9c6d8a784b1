/**
 * A chat client that behaves as a careful real one does, and keeps a trace
 * of everything it saw: it sends a turn with an Idempotency-Key, follows the
 * SSE stream, reconnects with Last-Event-ID when the stream drops (to
 * whichever instance the proxy picks), honours `reset`, and retries a
 * refused request (502/503/504, or no connection) after Retry-After. The
 * trace says whether any event was lost or came twice. A non-streaming turn
 * (`stream: false`) waits for the whole answer in one JSON body and, when the
 * request fails on the way, sends it again with the same key.
 */

import { randomUUID } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';

/** Event ids are `<messageId>:<n>`; a takeover continues in a new block of this size. */
export const TAKEOVER_ID_BLOCK = 1_000_000;
const RETRY_AFTER_CAP_MS = 2_000;
const REFUSED_PAUSE_MS = 250;

export interface TurnRequest {
  origin: string;
  token: string;
  agentId: string;
  question: string;
  /** Give up (the turn counts as lost) after this long. */
  deadlineMs: number;
  signal?: AbortSignal;
  /** false: one JSON answer instead of an event stream (default true). */
  stream?: boolean;
  /** Where a dropped stream reconnects (default `origin`): a client sent elsewhere once its instance is gone. */
  resumeOrigin?: string;
  /** Called once with the trace as it fills, to watch a turn while it runs. */
  onTrace?: (trace: TurnTrace) => void;
}

export type TurnOutcome = 'complete' | 'stopped' | 'error' | 'lost';

export interface TurnTrace {
  agentId: string;
  question: string;
  stream: boolean;
  idempotencyKey: string;
  messageId: string | undefined;
  outcome: TurnOutcome;
  /** The error's stable code (error event or HTTP body) when the turn ended in one. */
  errorCode: string | undefined;
  /** The text a user sees at the end: chunks after the last `reset`. */
  text: string;
  /** Date.now() stamps. */
  startedAt: number;
  firstChunkAt: number | undefined;
  /** When the client learnt its turn was stored: the `start` event, or the answer of a non-streaming turn. */
  acknowledgedAt: number | undefined;
  endedAt: number;
  /** Requests answered 5xx (or not at all) that the client then retried, and when. */
  refused: { status: number; code: string | undefined; at: number }[];
  /** Streams that dropped without `end` and were reconnected. */
  reconnects: number;
  /** `reset` events and their reasons (`takeover`, `upstream_failed`). */
  resets: { at: number; reason: string }[];
  /** When the first event of each new block of ids arrived: an instance that took the answer over spoke first. */
  takeoverEventsAt: number[];
  /** Event ids skipped within a block (events lost). */
  lostEvents: number;
  /** Events received again (an id not above the last one). */
  duplicateEvents: number;
  /** Longest wait from a dropped stream to the next event after reconnecting, ms. */
  longestGapMs: number;
}

interface SseEvent {
  id: string | undefined;
  event: string;
  data: string;
}

/** Splits an SSE byte stream into events; comments and id-less keep-alives pass through with no data. */
async function* sseEvents(body: ReadableStream<Uint8Array>): AsyncGenerator<SseEvent> {
  const decoder = new TextDecoder();
  let pending = '';
  for await (const bytes of body as unknown as AsyncIterable<Uint8Array>) {
    pending += decoder.decode(bytes, { stream: true }).replace(/\r\n?/g, '\n');
    let boundary = pending.indexOf('\n\n');
    while (boundary !== -1) {
      const block = pending.slice(0, boundary);
      pending = pending.slice(boundary + 2);
      boundary = pending.indexOf('\n\n');
      let id: string | undefined;
      let event = 'message';
      const data: string[] = [];
      for (const line of block.split('\n')) {
        if (line.startsWith('id:')) id = line.slice(3).trim();
        else if (line.startsWith('event:')) event = line.slice(6).trim();
        else if (line.startsWith('data:')) data.push(line.slice(5).replace(/^ /, ''));
      }
      if (data.length > 0) yield { id, event, data: data.join('\n') };
    }
  }
}

function stringOf(value: unknown): string {
  return typeof value === 'string' ? value : '';
}

function retryAfterMs(headers: Headers): number {
  const value = Number(headers.get('retry-after'));
  return Number.isFinite(value) && value > 0 ? Math.min(value * 1000, RETRY_AFTER_CAP_MS) : REFUSED_PAUSE_MS;
}

/**
 * What a non-200 answer means: a refusal to try again shortly (the instance
 * or the database is away, or the same key is still being handled), or the
 * turn's own outcome (an error body naming its message) or a plain error.
 */
async function classify(response: Response): Promise<{ refusal: TurnTrace['refused'][number] } | { code: string | undefined }> {
  const text = await response.text().catch(() => '');
  let code: string | undefined;
  let turnEnded = false;
  try {
    const body = JSON.parse(text) as { error?: { code?: unknown; details?: { messageId?: unknown } }; code?: unknown };
    const value = body.error?.code ?? body.code;
    code = typeof value === 'string' ? value : undefined;
    turnEnded = typeof body.error?.details?.messageId === 'string';
  } catch {
    // Not ours (a proxy's page): the status says it all.
  }
  if (!turnEnded && (response.status === 502 || response.status === 503 || response.status === 504 || code === 'IDEMPOTENCY_KEY_IN_PROGRESS')) {
    return { refusal: { status: response.status, code, at: Date.now() } };
  }
  return { code };
}

export async function runTurn(request: TurnRequest): Promise<TurnTrace> {
  const trace: TurnTrace = {
    agentId: request.agentId,
    question: request.question,
    stream: request.stream !== false,
    idempotencyKey: randomUUID(),
    messageId: undefined,
    outcome: 'lost',
    errorCode: undefined,
    text: '',
    startedAt: Date.now(),
    firstChunkAt: undefined,
    acknowledgedAt: undefined,
    endedAt: 0,
    refused: [],
    reconnects: 0,
    resets: [],
    takeoverEventsAt: [],
    lostEvents: 0,
    duplicateEvents: 0,
    longestGapMs: 0,
  };
  request.onTrace?.(trace);
  if (!trace.stream) return runBlockingTurn(request, trace);
  const deadline = trace.startedAt + request.deadlineMs;
  const headers = { authorization: `Bearer ${request.token}` };
  const body = JSON.stringify({ agentId: request.agentId, stream: true, messages: [{ role: 'user', content: request.question }] });
  let lastN = 0;
  let droppedAt: number | undefined;
  let ended = false;

  /** Applies one event to the trace; true at `end`. */
  const apply = (event: SseEvent): boolean => {
    const now = Date.now();
    if (droppedAt !== undefined) {
      trace.longestGapMs = Math.max(trace.longestGapMs, now - droppedAt);
      droppedAt = undefined;
    }
    const parsed = event.id === undefined ? undefined : /^(.+):(\d+)$/.exec(event.id);
    if (parsed) {
      const n = Number(parsed[2]);
      if (trace.messageId === undefined) trace.messageId = parsed[1];
      if (n <= lastN) {
        trace.duplicateEvents++;
        return false;
      }
      // A new block of ids is a takeover, and must open with `reset`; anything else skipped is lost.
      const newBlock = Math.floor(n / TAKEOVER_ID_BLOCK) > Math.floor(lastN / TAKEOVER_ID_BLOCK);
      if (newBlock) trace.takeoverEventsAt.push(now);
      if (newBlock ? event.event !== 'reset' || n % TAKEOVER_ID_BLOCK !== 1 : n !== lastN + 1) trace.lostEvents += newBlock ? 1 : n - lastN - 1;
      lastN = n;
    }
    const json = (): Record<string, unknown> => JSON.parse(event.data) as Record<string, unknown>;
    switch (event.event) {
      case 'start':
        if (typeof json().messageId === 'string') trace.messageId = json().messageId as string;
        trace.acknowledgedAt ??= now;
        break;
      case 'chunk':
        trace.firstChunkAt ??= now;
        trace.text += stringOf(json().content);
        break;
      case 'reset':
        trace.text = '';
        trace.resets.push({ at: now, reason: stringOf(json().reason) });
        break;
      case 'error': {
        const data = json();
        const code = data.code ?? (data.error as { code?: unknown } | undefined)?.code;
        trace.errorCode = typeof code === 'string' ? code : 'error event';
        break;
      }
      case 'end': {
        const status = json().status;
        trace.outcome = status === 'complete' ? 'complete' : status === 'stopped' ? 'stopped' : 'error';
        return true;
      }
    }
    return false;
  };

  while (!ended && Date.now() < deadline && !request.signal?.aborted) {
    const resuming = trace.messageId !== undefined;
    const url = resuming ? `${request.resumeOrigin ?? request.origin}/api/chat/stream?messageId=${encodeURIComponent(trace.messageId ?? '')}` : `${request.origin}/api/chat/completions`;
    let response: Response;
    try {
      response = resuming
        ? await fetch(url, { headers: { ...headers, 'last-event-id': `${trace.messageId}:${lastN}` }, signal: request.signal })
        : await fetch(url, { method: 'POST', headers: { ...headers, 'content-type': 'application/json', 'idempotency-key': trace.idempotencyKey }, body, signal: request.signal });
    } catch {
      // No connection at all (the proxy itself is unreachable): the same as a refusal.
      trace.refused.push({ status: 0, code: undefined, at: Date.now() });
      await sleep(REFUSED_PAUSE_MS);
      continue;
    }
    if (response.status !== 200 || response.body === null) {
      const answer = await classify(response);
      if ('refusal' in answer) {
        trace.refused.push(answer.refusal);
        await sleep(retryAfterMs(response.headers));
        continue;
      }
      trace.errorCode = answer.code ?? `HTTP ${response.status}`;
      trace.outcome = 'error';
      break;
    }
    try {
      for await (const event of sseEvents(response.body)) {
        if (apply(event)) {
          ended = true;
          break;
        }
      }
    } catch {
      // The connection broke mid-stream; reconnect below.
    }
    if (!ended) {
      trace.reconnects++;
      droppedAt ??= Date.now();
      await sleep(100);
    }
  }
  trace.endedAt = Date.now();
  return trace;
}

/**
 * A non-streaming turn: one POST whose answer is the whole completion. A
 * request that fails on the way (no connection, a refusal, the connection
 * dropped while the answer ran) is sent again with the same Idempotency-Key,
 * which returns the same turn's answer once it is stored.
 */
async function runBlockingTurn(request: TurnRequest, trace: TurnTrace): Promise<TurnTrace> {
  const deadline = trace.startedAt + request.deadlineMs;
  const body = JSON.stringify({ agentId: request.agentId, stream: false, messages: [{ role: 'user', content: request.question }] });
  while (Date.now() < deadline && !request.signal?.aborted) {
    let response: Response;
    let text: string;
    try {
      response = await fetch(`${request.origin}/api/chat/completions`, {
        method: 'POST',
        headers: { authorization: `Bearer ${request.token}`, 'content-type': 'application/json', 'idempotency-key': trace.idempotencyKey },
        body,
        signal: request.signal,
      });
      if (response.status !== 200) {
        const answer = await classify(response);
        if ('refusal' in answer) {
          trace.refused.push(answer.refusal);
          await sleep(retryAfterMs(response.headers));
          continue;
        }
        trace.errorCode = answer.code ?? `HTTP ${response.status}`;
        trace.outcome = 'error';
        break;
      }
      text = await response.text();
    } catch {
      // No connection, or it broke before the answer was whole: ask again with the same key.
      trace.refused.push({ status: 0, code: undefined, at: Date.now() });
      await sleep(REFUSED_PAUSE_MS);
      continue;
    }
    const answer = (JSON.parse(text) as { data?: { messageId?: unknown; status?: unknown; choices?: { message?: { content?: unknown } }[] } }).data;
    const now = Date.now();
    trace.messageId = typeof answer?.messageId === 'string' ? answer.messageId : undefined;
    trace.acknowledgedAt = now;
    trace.firstChunkAt = now;
    trace.text = stringOf(answer?.choices?.[0]?.message?.content);
    trace.outcome = answer?.status === 'complete' ? 'complete' : answer?.status === 'stopped' ? 'stopped' : 'error';
    break;
  }
  trace.endedAt = Date.now();
  return trace;
}
