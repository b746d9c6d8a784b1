/**
 * The floor: the least a streaming chat proxy does, run by the bench beside
 * LLMChat to show what this machine allows. It takes LLMChat's chat request,
 * calls the mock's OpenAI-compatible endpoint over pooled keep-alive
 * connections, parses the upstream SSE and each chunk's JSON, and sends the
 * text on as LLMChat's `start`/`chunk`/`end` events with ids, gathered for
 * up to 20 ms per write as LLMChat does (the first text at once).
 *
 * Nothing else: no authentication, validation, storage, shared event buffer,
 * retries or deadlines. What LLMChat costs above this line is the price of
 * those; what this line costs against the mock called directly is the
 * machine's (two shared cores run the load generator, the mock and the proxy).
 *
 *   node tools/dist/bench/floor-proxy.js <upstream origin> [port]
 *
 * Prints its base URL as the first stdout line.
 */

import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { fileURLToPath } from 'node:url';
import { Pool } from 'undici';

/** As LLMChat's SSE writer (server/src/modules/chat/sse.ts COALESCE_MS). */
const COALESCE_MS = 20;
const MAX_BODY_BYTES = 1024 * 1024;

export interface FloorProxy {
  url: string;
  close(): Promise<void>;
}

/** Text of an OpenAI-style stream chunk, or undefined. */
function deltaText(data: string): string | undefined {
  const chunk = JSON.parse(data) as { choices?: { delta?: { content?: unknown } }[] };
  const content = chunk.choices?.[0]?.delta?.content;
  return typeof content === 'string' && content !== '' ? content : undefined;
}

function readBody(req: IncomingMessage): Promise<string> {
  return new Promise((resolve, reject) => {
    let body = '';
    req.setEncoding('utf8');
    req.on('data', (piece: string) => {
      body += piece;
      if (body.length > MAX_BODY_BYTES) req.destroy(new Error('body too large'));
    });
    req.on('end', () => resolve(body));
    req.on('error', reject);
  });
}

async function relay(pool: Pool, req: IncomingMessage, res: ServerResponse): Promise<void> {
  const question = JSON.parse(await readBody(req)) as { messages?: unknown };
  const abort = new AbortController();
  res.on('close', () => abort.abort());
  const upstream = await pool.request({
    path: '/v1/chat/completions',
    method: 'POST',
    headers: { 'content-type': 'application/json', authorization: 'Bearer bench-key' },
    body: JSON.stringify({ model: 'mock-model', messages: question.messages, stream: true }),
    signal: abort.signal,
  });
  if (upstream.statusCode !== 200) {
    await upstream.body.dump();
    res.writeHead(502, { 'content-type': 'application/json' }).end('{"error":"upstream"}');
    return;
  }
  res.writeHead(200, { 'content-type': 'text/event-stream; charset=utf-8', 'cache-control': 'no-cache' });
  let id = 0;
  let pending = `id: ${++id}\nevent: start\ndata: {}\n\n`;
  let timer: NodeJS.Timeout | undefined;
  let textSent = false;
  let length = 0;
  const flush = (): void => {
    timer = undefined;
    res.write(pending);
    pending = '';
  };
  let buffered = '';
  upstream.body.setEncoding('utf8');
  for await (const piece of upstream.body as AsyncIterable<string>) {
    buffered += piece;
    for (let at = buffered.indexOf('\n\n'); at >= 0; at = buffered.indexOf('\n\n')) {
      const frame = buffered.slice(0, at);
      buffered = buffered.slice(at + 2);
      if (!frame.startsWith('data: ')) continue;
      const data = frame.slice(6);
      if (data === '[DONE]') continue;
      const text = deltaText(data);
      if (text === undefined) continue;
      length += text.length;
      pending += `id: ${++id}\nevent: chunk\ndata: ${JSON.stringify({ content: text })}\n\n`;
      if (!textSent) {
        textSent = true;
        if (timer !== undefined) clearTimeout(timer);
        flush();
      } else {
        timer ??= setTimeout(flush, COALESCE_MS);
      }
    }
  }
  if (timer !== undefined) clearTimeout(timer);
  res.end(`${pending}id: ${id + 1}\nevent: end\ndata: ${JSON.stringify({ status: 'complete', length })}\n\n`);
}

export async function startFloorProxy(upstreamOrigin: string, port = 0): Promise<FloorProxy> {
  const pool = new Pool(upstreamOrigin, { connections: 2000 });
  const server: Server = createServer((req, res) => {
    relay(pool, req, res).catch(() => {
      if (!res.headersSent) res.writeHead(500, { 'content-type': 'application/json' }).end('{"error":"proxy"}');
      else res.end('event: error\ndata: {}\n\n');
    });
  });
  server.keepAliveTimeout = 60_000;
  await new Promise<void>((resolve) => server.listen(port, '127.0.0.1', resolve));
  const { port: bound } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${bound}`,
    close: async () => {
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
      await pool.close();
    },
  };
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const [origin, port] = process.argv.slice(2);
  if (origin === undefined || !/^https?:\/\//.test(origin) || (port !== undefined && !/^\d+$/.test(port))) {
    console.error('usage: floor-proxy.js <upstream origin> [port]');
    process.exit(2);
  }
  const proxy = await startFloorProxy(origin, port === undefined ? 0 : Number(port));
  console.log(proxy.url);
  const stop = (): void => {
    proxy.close().then(
      () => process.exit(0),
      () => process.exit(1),
    );
  };
  process.once('SIGINT', stop);
  process.once('SIGTERM', stop);
}
