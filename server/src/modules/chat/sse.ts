import type { OutgoingHttpHeaders, ServerResponse } from 'node:http';
import type { FastifyReply } from 'fastify';
import { AppError } from '../../errors.js';
import { MAX_EVENT_ID } from '../../http/bounds.js';
import type { TurnEvent } from '../../shared-state/shared-state.js';
import type { Generation, GenerationEvent } from './generation.js';

const HEARTBEAT_MS = 15_000;
/**
 * Text deltas that follow the first one within this window go out in one
 * write. Each write is a syscall, and per-chunk writes were a third of the
 * server's CPU under load; 20 ms (50 updates a second) is finer than a
 * reader can see.
 */
export const COALESCE_MS = 20;

let openStreams = 0;

/** Event streams open to clients in this process (metrics). */
export function activeEventStreams(): number {
  return openStreams;
}

/** Takes the response over from Fastify and sends the event-stream headers. Never compressed. */
export function openEventStream(reply: FastifyReply): ServerResponse {
  // Headers set by hooks so far (helmet's security headers) would be lost with the hijack: carry them over.
  const headers: OutgoingHttpHeaders = {};
  const fromHooks = reply.getHeaders();
  for (const name in fromHooks) {
    const value = fromHooks[name];
    if (value !== undefined) headers[name] = value;
  }
  headers['content-type'] = 'text/event-stream; charset=utf-8';
  headers['cache-control'] = 'no-cache, no-transform';
  headers['x-accel-buffering'] = 'no';
  headers.connection = 'keep-alive';
  headers['x-request-id'] = String(reply.request.id);
  reply.hijack();
  const raw = reply.raw;
  raw.writeHead(200, headers);
  flattenHead(raw);
  openStreams++;
  raw.once('close', () => openStreams--);
  return raw;
}

/**
 * Node builds a response's status line and headers by string concatenation
 * and keeps the result (`_header`) for as long as the response lives: about
 * 47 rope nodes, 1.5 KB, for each open stream (a heap snapshot at 2000 long
 * answers: 57% of all the rope nodes in the heap). Reading a character makes
 * V8 flatten the rope in place into one string; nothing else changes.
 */
function flattenHead(raw: ServerResponse): void {
  const head = (raw as unknown as { _header?: unknown })._header;
  if (typeof head === 'string') head.charCodeAt(0);
}

/** The SSE id is `<turnId>:<n>` so `Last-Event-ID` alone names the turn and the position. */
export function formatEvent(turnId: string, event: TurnEvent): string {
  return `id: ${turnId}:${event.id}\nevent: ${event.event}\ndata: ${event.data}\n\n`;
}

/**
 * Parses a `Last-Event-ID` of the form `<turnId>:<n>`; undefined when there
 * is none. Anything else is refused rather than ignored, and so is an event
 * id past MAX_EVENT_ID: above 2^53 a JavaScript number rounds, and a
 * replay positioned there would never send `end`.
 */
export function parseLastEventId(value: string | undefined): { turnId: string; afterId: number } | undefined {
  const text = value?.trim();
  if (!text) return undefined;
  const m = /^([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}):(\d{1,10})$/i.exec(text);
  const afterId = Number(m?.[2]);
  if (!m?.[1] || !(afterId <= MAX_EVENT_ID)) {
    throw new AppError('VALIDATION_FAILED', `Last-Event-ID must be <message id>:<event id>, with an event id from 0 to ${MAX_EVENT_ID}`, [{ path: '/last-event-id', message: `must be <message id>:<0..${MAX_EVENT_ID}>` }]);
  }
  return { turnId: m[1].toLowerCase(), afterId };
}

/**
 * Writes SSE frames to one response: at once when `now` is asked for (the
 * first text, the end), otherwise gathered for up to COALESCE_MS. Also
 * keeps idle proxies from closing a quiet stream with a comment heartbeat.
 */
export class EventWriter {
  private pending = '';
  private timer: NodeJS.Timeout | undefined;
  private readonly heartbeat: NodeJS.Timeout;
  private closed = false;

  constructor(private readonly raw: ServerResponse) {
    this.heartbeat = setInterval(() => this.raw.write(': ping\n\n'), HEARTBEAT_MS);
    this.heartbeat.unref();
  }

  write(frame: string, now: boolean): void {
    if (this.closed) return;
    this.pending += frame;
    if (now) this.flush();
    else this.timer ??= setTimeout(() => this.flush(), COALESCE_MS);
  }

  flush(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    if (this.pending.length === 0 || this.closed) return;
    this.raw.write(this.pending);
    this.pending = '';
  }

  /** Sends what is pending and `last`, and ends the response: one write with the stream's terminator. */
  end(last = ''): void {
    if (this.closed) return;
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    const rest = this.pending + last;
    this.pending = '';
    this.closed = true;
    clearInterval(this.heartbeat);
    if (rest.length > 0) this.raw.end(rest);
    else this.raw.end();
  }

  /** The client went away: drop what is pending. */
  abandon(): void {
    this.closed = true;
    if (this.timer) clearTimeout(this.timer);
    clearInterval(this.heartbeat);
  }
}

/**
 * Streams a generation's events to one client, from `afterId` on (after
 * `earlier`, when given). A client
 * that goes away only unsubscribes: the generation goes on and is stored.
 */
export function pipeGeneration(reply: FastifyReply, generation: Generation, afterId = 0, earlier: readonly TurnEvent[] = []): void {
  const raw = openEventStream(reply);
  const writer = new EventWriter(raw);
  // Events from before a takeover, read from the shared buffer by the caller.
  for (const event of earlier) writer.write(formatEvent(generation.turnId, event), false);
  let textSent = false;
  // The relay to this client, a phase of the turn's trace (tracing on only).
  const relay = generation.trace?.phase('relay', { 'llmchat.relay.after_event_id': afterId });
  const unsubscribe = generation.subscribe(afterId, (event: GenerationEvent) => {
    const frame = formatEvent(generation.turnId, event);
    if (event.event === 'end') {
      relay?.setAttribute('llmchat.relay.complete', true);
      writer.end(frame);
      // Not from inside the generation's listener loop.
      setImmediate(unsubscribe);
      return;
    }
    const firstText = !textSent && (event.event === 'chunk' || event.event === 'reasoning');
    if (firstText) textSent = true;
    writer.write(frame, firstText || event.event === 'error');
  });
  // What was replayed (`start`, `chatId`) is not flushed here: it leaves with the first text, or within
  // COALESCE_MS, whichever comes first; one write fewer per turn.
  // This instance hands the answer over (shutdown): end the stream without `end`, so the client reconnects elsewhere.
  const offHandOver = generation.onHandOver(() => writer.end());
  raw.on('close', () => {
    unsubscribe();
    offHandOver();
    writer.abandon();
    relay?.end();
  });
}
