import type { ServerResponse } from 'node:http';
import type { FastifyReply } from 'fastify';
import type { TurnEvent } from '../../shared-state/shared-state.js';
import type { Generation, GenerationEvent } from './generation.js';

const HEARTBEAT_MS = 15_000;

/** Takes the response over from Fastify and sends the event-stream headers. Never compressed. */
export function openEventStream(reply: FastifyReply): ServerResponse {
  reply.hijack();
  const raw = reply.raw;
  raw.writeHead(200, {
    'content-type': 'text/event-stream; charset=utf-8',
    'cache-control': 'no-cache, no-transform',
    'x-accel-buffering': 'no',
    connection: 'keep-alive',
    'x-request-id': String(reply.request.id),
  });
  return raw;
}

/** The SSE id is `<turnId>:<n>` so `Last-Event-ID` alone names the turn and the position. */
export function formatEvent(turnId: string, event: TurnEvent): string {
  return `id: ${turnId}:${event.id}\nevent: ${event.event}\ndata: ${event.data}\n\n`;
}

/** Parses a `Last-Event-ID` of the form `<turnId>:<n>`. */
export function parseLastEventId(value: string | undefined): { turnId: string; afterId: number } | undefined {
  if (!value) return undefined;
  const m = /^([0-9a-f-]{36}):(\d{1,9})$/i.exec(value.trim());
  if (!m?.[1] || !m[2]) return undefined;
  return { turnId: m[1].toLowerCase(), afterId: Number(m[2]) };
}

/** Keeps idle proxies from closing a quiet stream. */
function heartbeat(raw: ServerResponse): () => void {
  const timer = setInterval(() => raw.write(': ping\n\n'), HEARTBEAT_MS);
  timer.unref();
  return () => clearInterval(timer);
}

/**
 * Streams a generation's events to one client, from `afterId` on. A client
 * that goes away only unsubscribes: the generation goes on and is stored.
 */
export function pipeGeneration(reply: FastifyReply, generation: Generation, afterId = 0): void {
  const raw = openEventStream(reply);
  const stopHeartbeat = heartbeat(raw);
  let closed = false;
  const finish = () => {
    if (closed) return;
    closed = true;
    stopHeartbeat();
    unsubscribe();
    raw.end();
  };
  const unsubscribe = generation.subscribe(afterId, (event: GenerationEvent) => {
    if (closed) return;
    raw.write(formatEvent(generation.turnId, event));
    if (event.event === 'end') setImmediate(finish);
  });
  raw.on('close', finish);
}
