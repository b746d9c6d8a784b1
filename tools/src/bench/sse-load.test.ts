import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { performance } from 'node:perf_hooks';
import { setTimeout as sleep } from 'node:timers/promises';
import { Client } from 'undici';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { LoadTarget, StreamProtocol, TurnOutcome } from './sse-load.js';
import { ABANDONED, runLoad, runTurn } from './sse-load.js';

/** How long the test server holds the first text chunk back after it sent the headers and a first event. */
const HOLD_MS = 40;

const sse = (event: string, data: unknown): string => `id: t:1\nevent: ${event}\ndata: ${JSON.stringify(data)}\n\n`;
const openAiChunk = (content: string): string => `data: ${JSON.stringify({ choices: [{ index: 0, delta: { content } }] })}\n\n`;

/** Per path: when the first text chunk was released, relative to when the request arrived (ms). */
const holds = new Map<string, number>();
let alternate = 0;
const served = { alternate: 0, alternateFailed: 0 };

function openStream(res: ServerResponse): void {
  res.writeHead(200, { 'content-type': 'text/event-stream' });
}

async function handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
  const arrived = performance.now();
  for await (const _ of req) {
    // drain the request body
  }
  const route = req.url ?? '';
  switch (route) {
    case '/llmchat/held': {
      openStream(res);
      res.write(sse('start', { id: 'x' }));
      res.write(': ping\n\n');
      await sleep(HOLD_MS);
      holds.set(route, performance.now() - arrived);
      res.write(sse('chunk', { content: 'Hel' }));
      res.write(sse('chunk', { content: 'lo' }));
      res.write(sse('chunk', { content: '!' }));
      res.end(sse('end', { status: 'complete' }));
      return;
    }
    case '/openai/held': {
      openStream(res);
      // The role chunk is sent at once but carries no text: it must not count as the first token.
      res.write(`data: ${JSON.stringify({ choices: [{ index: 0, delta: { role: 'assistant', content: '' } }] })}\n\n`);
      await sleep(HOLD_MS);
      holds.set(route, performance.now() - arrived);
      res.write(openAiChunk('Hel'));
      res.write(openAiChunk('lo'));
      res.write(openAiChunk('!'));
      res.end('data: [DONE]\n\n');
      return;
    }
    case '/llmchat/crlf': {
      openStream(res);
      res.write('event: chunk\r\ndata: {"content":"Hel"}\r\n\r\nevent: chunk\r\ndata: {"content":"lo"}\r\n\r\n');
      res.end('event: chunk\r\ndata: {"content":"!"}\r\n\r\nevent: end\r\ndata: {"status":"complete"}\r\n\r\n');
      return;
    }
    case '/llmchat/split': {
      // One event split across writes, in the middle of a line.
      openStream(res);
      res.write('event: chu');
      await sleep(5);
      res.write('nk\ndata: {"content":"Hel"}\n');
      await sleep(5);
      res.end(`\n${sse('chunk', { content: 'lo' })}${sse('chunk', { content: '!' })}${sse('end', { status: 'complete' })}`);
      return;
    }
    case '/status500':
      res.writeHead(500, { 'content-type': 'application/json' });
      res.end('{"error":{"code":"INTERNAL","message":"boom"}}');
      return;
    case '/llmchat/error-event':
      openStream(res);
      res.write(sse('chunk', { content: 'Hel' }));
      res.write(sse('error', { code: 'UPSTREAM_ERROR', message: 'upstream broke' }));
      res.end(sse('end', { status: 'error' }));
      return;
    case '/llmchat/end-not-complete':
      openStream(res);
      res.write(sse('chunk', { content: 'Hel' }));
      res.end(sse('end', { status: 'stopped' }));
      return;
    case '/llmchat/no-chunk':
      openStream(res);
      res.write(sse('start', { id: 'x' }));
      res.end(sse('end', { status: 'complete' }));
      return;
    case '/llmchat/no-end':
      openStream(res);
      res.end(sse('chunk', { content: 'Hel' }));
      return;
    case '/llmchat/cut':
      openStream(res);
      res.write(sse('chunk', { content: 'Hel' }));
      await sleep(5);
      res.socket?.destroy();
      return;
    case '/llmchat/two-chunks':
      openStream(res);
      res.write(sse('chunk', { content: 'Hel' }));
      res.write(sse('chunk', { content: 'lo!' }));
      res.end(sse('end', { status: 'complete' }));
      return;
    case '/openai/no-done':
      openStream(res);
      res.end(openAiChunk('Hel'));
      return;
    case '/llmchat/alternate': {
      served.alternate++;
      if (alternate++ % 2 === 1) {
        served.alternateFailed++;
        res.writeHead(503);
        res.end();
        return;
      }
      openStream(res);
      res.end(sse('chunk', { content: 'Hel' }) + sse('chunk', { content: 'lo' }) + sse('chunk', { content: '!' }) + sse('end', { status: 'complete' }));
      return;
    }
    case '/llmchat/stall':
      openStream(res);
      res.write(sse('start', { id: 'x' }));
      return; // never ends
    default:
      res.writeHead(404);
      res.end();
  }
}

let server: Server;
let origin: string;
let client: Client;

beforeAll(async () => {
  server = createServer((req, res) => {
    handle(req, res).catch(() => res.destroy());
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  origin = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  client = new Client(origin);
});

afterAll(async () => {
  await client.close();
  server.closeAllConnections();
  await new Promise<void>((resolve) => server.close(() => resolve()));
});

function target(path: string, protocol: StreamProtocol = 'llmchat', expected?: LoadTarget['expected']): LoadTarget {
  return { name: 'test', origin, path, headers: {}, body: '{}', protocol, expected };
}

const helloExpected = { chunks: 3, first: 'Hel', last: '!' };

async function turn(path: string, protocol: StreamProtocol = 'llmchat', expected?: LoadTarget['expected']): Promise<TurnOutcome> {
  return runTurn(client, target(path, protocol, expected));
}

describe('runTurn: time to first token is the first text chunk, not the first byte', () => {
  it('llmchat: start event and comments before the first chunk do not count', async () => {
    const outcome = await turn('/llmchat/held', 'llmchat', helloExpected);
    expect(outcome.error).toBeUndefined();
    expect(outcome.chunks).toBe(3);
    expect(outcome.firstChunk).toBe('Hel');
    expect(outcome.lastChunk).toBe('!');
    // The chunk left the server only after it had held it this long since the request arrived.
    expect(outcome.ttftMs).toBeGreaterThanOrEqual(holds.get('/llmchat/held') ?? Number.POSITIVE_INFINITY);
    expect(outcome.totalMs).toBeGreaterThanOrEqual(outcome.ttftMs ?? Number.POSITIVE_INFINITY);
  });

  it('openai: the role chunk with empty content does not count', async () => {
    const outcome = await turn('/openai/held', 'openai', helloExpected);
    expect(outcome.error).toBeUndefined();
    expect(outcome.chunks).toBe(3);
    expect(outcome.ttftMs).toBeGreaterThanOrEqual(holds.get('/openai/held') ?? Number.POSITIVE_INFINITY);
  });

  it('parses CRLF line endings', async () => {
    const outcome = await turn('/llmchat/crlf', 'llmchat', helloExpected);
    expect(outcome.error).toBeUndefined();
    expect(outcome.chunks).toBe(3);
  });

  it('parses an event split across network writes', async () => {
    const outcome = await turn('/llmchat/split', 'llmchat', helloExpected);
    expect(outcome.error).toBeUndefined();
    expect(outcome.firstChunk).toBe('Hel');
  });
});

describe('runTurn: errors', () => {
  it('counts a non-200 status, with the body as detail', async () => {
    const outcome = await turn('/status500');
    expect(outcome.error).toBe('HTTP 500');
    expect(outcome.errorDetail).toContain('boom');
  });

  it('counts an error event', async () => {
    expect((await turn('/llmchat/error-event')).error).toBe('error event');
  });

  it('counts an end whose status is not complete', async () => {
    expect((await turn('/llmchat/end-not-complete')).error).toBe('end status stopped');
  });

  it('counts a stream without any text chunk', async () => {
    const outcome = await turn('/llmchat/no-chunk');
    expect(outcome.error).toBe('no chunk');
    expect(outcome.ttftMs).toBeUndefined();
  });

  it('counts a stream that closes without an end event', async () => {
    expect((await turn('/llmchat/no-end')).error).toBe('no end');
  });

  it('counts an OpenAI stream that closes without [DONE]', async () => {
    expect((await turn('/openai/no-done', 'openai')).error).toBe('no end');
  });

  it('counts a connection cut mid-stream', async () => {
    const own = new Client(origin);
    const outcome = await runTurn(own, target('/llmchat/cut'));
    await own.destroy();
    expect(outcome.error).toMatch(/^connection: /);
  });

  it('counts a refused connection', async () => {
    const closed = createServer();
    await new Promise<void>((resolve) => closed.listen(0, '127.0.0.1', resolve));
    const port = (closed.address() as AddressInfo).port;
    await new Promise<void>((resolve) => closed.close(() => resolve()));
    const deadClient = new Client(`http://127.0.0.1:${port}`);
    const outcome = await runTurn(deadClient, { ...target('/x'), origin: `http://127.0.0.1:${port}` });
    await deadClient.close();
    expect(outcome.error).toBe('connection: ECONNREFUSED');
  });

  it('counts an answer with the wrong number of chunks when an answer is expected', async () => {
    const outcome = await turn('/llmchat/two-chunks', 'llmchat', helloExpected);
    expect(outcome.error).toBe('chunk count mismatch');
    expect(outcome.errorDetail).toBe('2 chunks, expected 3');
  });

  it('counts an answer with the wrong text when an answer is expected', async () => {
    const outcome = await turn('/llmchat/held', 'llmchat', { ...helloExpected, first: 'Bye' });
    expect(outcome.error).toBe('wrong text');
  });
});

describe('runLoad', () => {
  it('reports every turn the server saw, and exactly the failed ones as errors', async () => {
    const result = await runLoad(target('/llmchat/alternate', 'llmchat', helloExpected), {
      concurrency: 4,
      warmupMs: 0,
      durationMs: 150,
      drainTimeoutMs: 5_000,
      errorBackoffMs: 0,
    });
    const errors = result.samples.filter((s) => s.error !== undefined);
    expect(result.samples.length).toBe(served.alternate);
    expect(errors.length).toBe(served.alternateFailed);
    expect(errors.every((s) => s.error === 'HTTP 503')).toBe(true);
    expect(result.samples.length - errors.length).toBeGreaterThan(0);
    expect(result.abandoned).toBe(0);
  });

  it('abandons turns still running at the drain cap and counts them as errors', async () => {
    const result = await runLoad(target('/llmchat/stall'), {
      concurrency: 3,
      warmupMs: 0,
      durationMs: 20,
      drainTimeoutMs: 50,
    });
    expect(result.samples.length).toBe(3);
    expect(result.abandoned).toBe(3);
    expect(result.samples.every((s) => s.error === ABANDONED)).toBe(true);
    expect(result.completedInWindow).toBe(0);
  });

  it('leaves warm-up turns out of the samples', async () => {
    const result = await runLoad(target('/llmchat/held', 'llmchat', helloExpected), {
      concurrency: 2,
      warmupMs: 100,
      durationMs: 100,
      drainTimeoutMs: 5_000,
    });
    expect(result.warmupTurns).toBeGreaterThan(0);
    expect(result.samples.every((s) => s.endMs >= 100)).toBe(true);
  });
});
