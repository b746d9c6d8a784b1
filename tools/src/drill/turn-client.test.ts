import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { runTurn } from './turn-client.js';
import { verify, expectedAnswer, type StoredTurn } from './verify.js';

/** A scripted chat server: each request gets the next handler. */
async function scripted(handlers: ((req: IncomingMessage, res: ServerResponse) => void)[]): Promise<{ origin: string; server: Server; seen: { method: string; url: string; lastEventId: string | undefined; key: string | undefined }[] }> {
  const seen: { method: string; url: string; lastEventId: string | undefined; key: string | undefined }[] = [];
  const server = createServer((req, res) => {
    seen.push({ method: req.method ?? '', url: req.url ?? '', lastEventId: req.headers['last-event-id'] as string | undefined, key: req.headers['idempotency-key'] as string | undefined });
    const handler = handlers.shift();
    if (!handler) {
      res.writeHead(500).end();
      return;
    }
    req.resume();
    handler(req, res);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return { origin: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, server, seen };
}

const M = '11111111-1111-4111-8111-111111111111';
const frame = (n: number, event: string, data: unknown) => `id: ${M}:${n}\nevent: ${event}\ndata: ${JSON.stringify(data)}\n\n`;
const sse = (res: ServerResponse, frames: string[], end = true) => {
  res.writeHead(200, { 'content-type': 'text/event-stream' });
  res.flushHeaders();
  for (const f of frames) res.write(f);
  if (end) res.end();
  // A drop: the connection goes without the chunked terminator, once what was written has left.
  else setTimeout(() => res.destroy(), 50);
};

let open: Server | undefined;
afterEach(async () => {
  const server = open;
  open = undefined;
  if (!server) return;
  server.closeAllConnections();
  await new Promise((resolve) => server.close(resolve));
});

describe('the drill client', () => {
  it('reconnects with Last-Event-ID after a drop, takes a takeover block that opens with reset, and shows only the text after it', async () => {
    const s = await scripted([
      (_req, res) => sse(res, [frame(1, 'start', { messageId: M }), frame(2, 'chunk', { content: 'par' }), frame(3, 'chunk', { content: 'tial' })], false),
      (_req, res) => res.writeHead(503, { 'retry-after': '0' }).end(JSON.stringify({ error: { code: 'NOT_READY' } })),
      (_req, res) => sse(res, [frame(1_000_001, 'reset', { reason: 'takeover' }), frame(1_000_002, 'chunk', { content: 'whole' }), frame(1_000_003, 'end', { status: 'complete' })]),
    ]);
    open = s.server;
    const trace = await runTurn({ origin: s.origin, token: 't', agentId: 'a', question: 'q', deadlineMs: 10_000 });
    expect(trace).toMatchObject({ outcome: 'complete', messageId: M, text: 'whole', reconnects: 1, lostEvents: 0, duplicateEvents: 0, refused: [{ status: 503, code: 'NOT_READY' }] });
    expect(trace.resets.map((r) => r.reason)).toEqual(['takeover']);
    // The takeover's first event is what the takeover time is measured to.
    expect(trace.takeoverEventsAt).toEqual([trace.resets[0]?.at]);
    expect(s.seen.map((r) => [r.method, r.url.split('?')[0], r.lastEventId])).toEqual([
      ['POST', '/api/chat/completions', undefined],
      ['GET', '/api/chat/stream', `${M}:3`],
      ['GET', '/api/chat/stream', `${M}:3`],
    ]);
    expect(s.seen[0]?.key).toMatch(/^[0-9a-f-]{36}$/);
  });

  it('counts a skipped id as a lost event and a repeated one as a duplicate', async () => {
    const s = await scripted([
      (_req, res) => sse(res, [frame(1, 'start', { messageId: M }), frame(2, 'chunk', { content: 'a' })], false),
      // The resume skips id 3 and repeats id 2.
      (_req, res) => sse(res, [frame(2, 'chunk', { content: 'a' }), frame(4, 'chunk', { content: 'c' }), frame(5, 'end', { status: 'complete' })]),
    ]);
    open = s.server;
    const trace = await runTurn({ origin: s.origin, token: 't', agentId: 'a', question: 'q', deadlineMs: 10_000 });
    expect(trace).toMatchObject({ outcome: 'complete', text: 'ac', lostEvents: 1, duplicateEvents: 1 });
  });

  it('a new block of ids that does not open with reset is a loss', async () => {
    const s = await scripted([(_req, res) => sse(res, [frame(1, 'start', { messageId: M }), frame(1_000_001, 'chunk', { content: 'x' }), frame(1_000_002, 'end', { status: 'complete' })])]);
    open = s.server;
    expect((await runTurn({ origin: s.origin, token: 't', agentId: 'a', question: 'q', deadlineMs: 10_000 })).lostEvents).toBe(1);
  });

  it('sends the POST again with the same key when the stream drops before any event, and ends on a clear error', async () => {
    const s = await scripted([
      (_req, res) => sse(res, [], false),
      (_req, res) => res.writeHead(404, { 'content-type': 'application/json' }).end(JSON.stringify({ error: { code: 'AGENT_NOT_FOUND' } })),
    ]);
    open = s.server;
    const trace = await runTurn({ origin: s.origin, token: 't', agentId: 'a', question: 'q', deadlineMs: 10_000 });
    expect(trace).toMatchObject({ outcome: 'error', errorCode: 'AGENT_NOT_FOUND', reconnects: 1 });
    expect(s.seen.map((r) => r.method)).toEqual(['POST', 'POST']);
    expect(s.seen[1]?.key).toBe(s.seen[0]?.key);
  });

  it('a non-streaming turn: retried with the same key after a refusal and a dropped request, then complete with the whole answer', async () => {
    const answer = { data: { messageId: M, status: 'complete', choices: [{ message: { content: 'the whole answer' } }] } };
    const s = await scripted([
      (_req, res) => res.writeHead(503, { 'retry-after': '0', 'content-type': 'application/json' }).end(JSON.stringify({ error: { code: 'DATABASE_UNAVAILABLE' } })),
      // The instance dies while the answer runs: the connection goes with no response.
      (_req, res) => res.destroy(),
      (_req, res) => res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify(answer)),
    ]);
    open = s.server;
    const trace = await runTurn({ origin: s.origin, token: 't', agentId: 'a', question: 'q', deadlineMs: 10_000, stream: false });
    expect(trace).toMatchObject({ stream: false, outcome: 'complete', messageId: M, text: 'the whole answer', refused: [{ status: 503, code: 'DATABASE_UNAVAILABLE' }, { status: 0 }] });
    expect(trace.acknowledgedAt).toBeGreaterThanOrEqual(trace.refused[1]?.at ?? Infinity);
    expect(new Set(s.seen.map((r) => r.key)).size).toBe(1);
    expect(s.seen.map((r) => r.method)).toEqual(['POST', 'POST', 'POST']);
  });

  it('a non-streaming turn whose answer failed ends in that error and is not sent again', async () => {
    const s = await scripted([
      (_req, res) => res.writeHead(502, { 'content-type': 'application/json' }).end(JSON.stringify({ error: { code: 'UPSTREAM_INTERRUPTED', details: { messageId: M, chatId: 'c' } } })),
    ]);
    open = s.server;
    const trace = await runTurn({ origin: s.origin, token: 't', agentId: 'a', question: 'q', deadlineMs: 10_000, stream: false });
    expect(trace).toMatchObject({ outcome: 'error', errorCode: 'UPSTREAM_INTERRUPTED', refused: [] });
    expect(s.seen).toHaveLength(1);
  });

  it('gives up at the deadline: the turn counts as lost', async () => {
    const s = await scripted(Array.from({ length: 100 }, () => (_req: IncomingMessage, res: ServerResponse) => res.writeHead(503, { 'retry-after': '0' }).end()));
    open = s.server;
    const trace = await runTurn({ origin: s.origin, token: 't', agentId: 'a', question: 'q', deadlineMs: 600 });
    expect(trace.outcome).toBe('lost');
    expect(trace.refused.length).toBeGreaterThan(0);
  });
});

describe('the drill verdict', () => {
  const base = { agentId: 'a', stream: true, idempotencyKey: 'k', messageId: M, errorCode: undefined, startedAt: 0, firstChunkAt: 1, acknowledgedAt: 1, endedAt: 2, refused: [], reconnects: 0, resets: [], takeoverEventsAt: [], lostEvents: 0, duplicateEvents: 0, longestGapMs: 0 };
  const stored = (question: string, over: Partial<StoredTurn>): [string, StoredTurn] => [question, { question, copies: 1, messageId: M, status: 'complete', content: expectedAnswer(question, 3), ...over }];

  it('a complete turn is good only when the client and the database both hold the upstream\'s whole answer, once', () => {
    const good = { ...base, question: 'good', outcome: 'complete' as const, text: expectedAnswer('good', 3) };
    const partial = { ...base, question: 'partial', outcome: 'complete' as const, text: expectedAnswer('partial', 3).slice(0, 10) };
    const twice = { ...base, question: 'twice', outcome: 'complete' as const, text: expectedAnswer('twice', 3) };
    const unsaved = { ...base, question: 'unsaved', outcome: 'complete' as const, text: expectedAnswer('unsaved', 3) };
    const streaming = { ...base, question: 'streaming', outcome: 'complete' as const, text: expectedAnswer('streaming', 3) };
    const rows = new Map([stored('good', {}), stored('partial', {}), stored('twice', { copies: 2 }), stored('streaming', { status: 'streaming', content: '' })]);
    const verdict = verify([good, partial, twice, unsaved, streaming], rows, 3);
    expect(verdict).toMatchObject({ turns: 5, complete: 5, errors: 0, lost: 4, leftStreaming: 1 });
    expect(verdict.lostDetails.join('\n')).toMatch(/shown text differs[\s\S]*stored 2 times[\s\S]*not in the database[\s\S]*stored as streaming/);
  });

  it('counts the whole answers a fallback finished (a continued answer shows the client no reset), and no others', () => {
    const turn = (question: string) => ({ ...base, question, outcome: 'complete' as const, text: expectedAnswer(question, 3) });
    const rows = new Map([stored('primary', { servedBy: 0 }), stored('continued', { servedBy: 1 }), stored('cut short', { servedBy: 1, content: 'x' }), stored('unknown', {})]);
    const verdict = verify([turn('primary'), turn('continued'), turn('cut short'), turn('unknown')], rows, 3);
    expect(verdict).toMatchObject({ complete: 4, lost: 1, servedByFallback: 1, resets: 0 });
  });

  it('an error ending is counted as an error, not a loss, and refusals are counted by code', () => {
    const failed = { ...base, question: 'failed', outcome: 'error' as const, errorCode: 'UPSTREAM_ERROR', text: '', refused: [{ status: 503, code: 'DATABASE_UNAVAILABLE', at: 1 }, { status: 0, code: undefined, at: 1 }] };
    const verdict = verify([failed], new Map([stored('failed', { status: 'error', content: '' })]), 3);
    expect(verdict).toMatchObject({ errors: 1, errorCodes: { UPSTREAM_ERROR: 1 }, lost: 0, refusals: 2, refusalCodes: { '503 DATABASE_UNAVAILABLE': 1, 'no connection': 1 } });
  });
});
