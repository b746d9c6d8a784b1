/**
 * The HTTP side: routing, authentication, request recording and counters.
 * Plain node:http so that a thousand concurrent streams stay cheap.
 */

import type { IncomingHttpHeaders, IncomingMessage, Server, ServerResponse } from 'node:http';
import { createServer } from 'node:http';
import type { Http2SecureServer } from 'node:http2';
import { createSecureServer } from 'node:http2';
import type { Socket } from 'node:net';
import type { TLSSocket } from 'node:tls';
import type { AnswerDefaults } from './answer.js';
import { createAnthropicProvider } from './anthropic.js';
import { createDifyProvider } from './dify.js';
import { Exchange } from './exchange.js';
import { createFastGptProvider } from './fastgpt.js';
import type { FaultSpec, ParsedFaults } from './faults.js';
import { FaultSchedule, mergeFaults, parseFaultSpec, splitFaultPrefix } from './faults.js';
import { createOpenAiProvider } from './openai.js';
import type { ProviderModule, ProviderName, Route, RouteContext } from './protocol.js';
import { ErrorReply } from './protocol.js';
import { faultReply, sendError } from './turn.js';

/** One request as the mock saw it, with secrets masked. */
export interface RecordedRequest {
  method: string;
  /** The URL as received, fault prefix and query included. */
  path: string;
  /** The provider whose route matched, if any. */
  provider: ProviderName | undefined;
  /** Lower-case header names; `authorization`, `x-api-key` and similar values are masked. */
  headers: Record<string, string>;
  /** Parsed JSON body; the raw text when it is not JSON; undefined when empty. */
  body: unknown;
  /** The faults in effect (URL prefix, header and message directive merged). */
  fault: FaultSpec;
  /** Epoch milliseconds. */
  receivedAt: number;
}

export interface MockUpstreamStats {
  /** Requests received, every route included. */
  requests: number;
  /** Responses not yet finished (streams in progress, delays, stalls). */
  inFlight: number;
  /** Responses that finished normally. */
  completed: number;
  /** Responses that ended early: the client went away or a `cutAfter` fault dropped the socket. */
  aborted: number;
  /** Requests per provider route. */
  byProvider: Record<ProviderName, number>;
  /** Connections open now (TCP, or TLS: over HTTP/2 many requests share one). */
  connections: number;
  /** Requests per HTTP version (`1.1`, `2.0`). */
  byHttpVersion: Record<string, number>;
}

export interface MockServerSettings extends AnswerDefaults {
  maxRecordedRequests: number;
  /** Serve TLS with this key and certificate (PEM), offering HTTP/2 and HTTP/1.1 (ALPN); plain HTTP/1.1 without. */
  tls?: { key: string; cert: string } | undefined;
}

export interface MockServer {
  server: Server | Http2SecureServer;
  requests(): RecordedRequest[];
  clearRequests(): void;
  stats(): MockUpstreamStats;
  /** Ends every open response (streams included) so the server can close at once. */
  dropAll(): void;
  /** Closes every connection, idle ones included (HTTP/2 sessions too). */
  closeConnections(): void;
}

const MAX_BODY_BYTES = 8 * 1024 * 1024;
const SECRET_HEADERS = new Set(['authorization', 'proxy-authorization', 'x-api-key', 'api-key', 'cookie']);

function maskSecret(name: string, value: string): string {
  if (name.endsWith('authorization')) {
    const space = value.indexOf(' ');
    return space === -1 ? '***' : `${value.slice(0, space)} ***`;
  }
  return '***';
}

export function maskHeaders(headers: IncomingHttpHeaders): Record<string, string> {
  const masked: Record<string, string> = {};
  for (const [name, value] of Object.entries(headers)) {
    if (value === undefined) continue;
    const text = Array.isArray(value) ? value.join(', ') : value;
    masked[name] = SECRET_HEADERS.has(name) ? maskSecret(name, text) : text;
  }
  return masked;
}

interface CompiledRoute {
  route: Route;
  provider: ProviderModule;
  segments: string[];
}

class Router {
  private readonly routes: CompiledRoute[] = [];

  add(provider: ProviderModule): void {
    for (const route of provider.routes) this.routes.push({ route, provider, segments: route.path.split('/') });
  }

  /** The matching route, `'method'` when only the method is wrong, or undefined. */
  match(
    method: string,
    pathname: string,
  ): { route: Route; provider: ProviderModule; params: Record<string, string> } | 'method' | undefined {
    const segments = pathname.split('/');
    let wrongMethod = false;
    for (const candidate of this.routes) {
      const params = matchSegments(candidate.segments, segments);
      if (params === undefined) continue;
      if (candidate.route.method !== method) {
        wrongMethod = true;
        continue;
      }
      return { route: candidate.route, provider: candidate.provider, params };
    }
    return wrongMethod ? 'method' : undefined;
  }
}

function matchSegments(pattern: string[], actual: string[]): Record<string, string> | undefined {
  if (pattern.length !== actual.length) return undefined;
  const params: Record<string, string> = {};
  for (let i = 0; i < pattern.length; i++) {
    const expected = pattern[i] ?? '';
    const got = actual[i] ?? '';
    if (expected.startsWith(':')) {
      if (got === '') return undefined;
      try {
        params[expected.slice(1)] = decodeURIComponent(got);
      } catch {
        return undefined;
      }
    } else if (expected !== got) {
      return undefined;
    }
  }
  return params;
}

function readBody(req: IncomingMessage, done: (raw: Buffer | undefined) => void): void {
  const chunks: Buffer[] = [];
  let size = 0;
  req.on('data', (chunk: Buffer) => {
    size += chunk.length;
    if (size <= MAX_BODY_BYTES) chunks.push(chunk);
  });
  req.on('end', () => done(size > MAX_BODY_BYTES ? undefined : Buffer.concat(chunks)));
  // A client that goes away mid-body closes the response too; nothing to answer.
  req.on('error', () => undefined);
}

function parseBody(text: string): { ok: true; value: unknown } | { ok: false } {
  if (text === '') return { ok: true, value: undefined };
  try {
    return { ok: true, value: JSON.parse(text) as unknown };
  } catch {
    return { ok: false };
  }
}

function notFound(exchange: Exchange, status: 404 | 405, method: string, pathname: string): void {
  const message =
    status === 404 ? `mock upstream: no route for ${method} ${pathname}` : `mock upstream: ${method} is not allowed on ${pathname}`;
  exchange.json(status, { error: { message, type: 'invalid_request_error', param: null, code: status === 404 ? 'not_found' : 'method_not_allowed' } });
}

export function createMockServer(settings: MockServerSettings): MockServer {
  const providers = [
    createOpenAiProvider(settings),
    createFastGptProvider(settings),
    createAnthropicProvider(settings),
    createDifyProvider(settings),
  ];
  const router = new Router();
  for (const provider of providers) router.add(provider);

  let recorded: RecordedRequest[] = [];
  const schedule = new FaultSchedule();
  const open = new Set<Exchange>();
  const counters = { requests: 0, completed: 0, aborted: 0 };
  const byProvider: Record<ProviderName, number> = { openai: 0, fastgpt: 0, anthropic: 0, dify: 0 };
  const observer = {
    onClose(exchange: Exchange, aborted: boolean): void {
      open.delete(exchange);
      if (aborted) counters.aborted++;
      else counters.completed++;
    },
  };
  const byHttpVersion: Record<string, number> = {};
  let connections = 0;
  const stats = (): MockUpstreamStats => ({ ...counters, inFlight: open.size, byProvider: { ...byProvider }, connections, byHttpVersion: { ...byHttpVersion } });

  const record = (entry: RecordedRequest): void => {
    if (settings.maxRecordedRequests <= 0) return;
    recorded.push(entry);
    if (recorded.length > settings.maxRecordedRequests) recorded.shift();
  };

  const handleMockRoute = (exchange: Exchange, method: string, pathname: string): void => {
    if (method === 'GET' && pathname === '/_mock/health') exchange.json(200, { status: 'ok' });
    else if (method === 'GET' && pathname === '/_mock/stats') exchange.json(200, stats());
    else notFound(exchange, 404, method, pathname);
  };

  const handle = (req: IncomingMessage, res: ServerResponse): void => {
    counters.requests++;
    byHttpVersion[req.httpVersion] = (byHttpVersion[req.httpVersion] ?? 0) + 1;
    const exchange = new Exchange(res, observer);
    open.add(exchange);
    const method = req.method ?? 'GET';
    const rawUrl = req.url ?? '/';
    const { faults: prefixFaults, url } = splitFaultPrefix(rawUrl);
    const queryStart = url.indexOf('?');
    const pathname = queryStart === -1 ? url : url.slice(0, queryStart);
    const query = new URLSearchParams(queryStart === -1 ? '' : url.slice(queryStart + 1));

    if (pathname.startsWith('/_mock/')) {
      req.resume();
      handleMockRoute(exchange, method, pathname);
      return;
    }
    const match = router.match(method, pathname);
    if (match === undefined || match === 'method') {
      req.resume();
      notFound(exchange, match === undefined ? 404 : 405, method, pathname);
      return;
    }
    const { route, provider, params } = match;
    byProvider[provider.provider]++;

    readBody(req, (raw) => {
      // A file upload (Dify's /files/upload) is multipart: its route reads the bytes; anything else is JSON.
      const multipart = /^multipart\/form-data/i.test(req.headers['content-type'] ?? '');
      const text = raw === undefined ? undefined : multipart ? '' : raw.toString('utf8');
      const headerValue = req.headers['x-mock-fault'];
      const headerFaults = typeof headerValue === 'string' ? parseFaultSpec(headerValue) : undefined;
      const faults = mergeFaults(prefixFaults, headerFaults);
      const parsed = text === undefined ? undefined : parseBody(text);
      const entry: RecordedRequest = {
        method,
        path: rawUrl,
        provider: provider.provider,
        headers: maskHeaders(req.headers),
        body: parsed?.ok === true ? parsed.value : text,
        fault: faults.spec,
        receivedAt: Date.now(),
      };
      record(entry);

      const refusal = provider.authenticate(req.headers);
      if (refusal !== undefined) {
        sendError(exchange, provider, refusal);
        return;
      }
      if (parsed === undefined) {
        sendError(exchange, provider, new ErrorReply(413, `The request body exceeds ${MAX_BODY_BYTES} bytes.`));
        return;
      }
      if (!parsed.ok) {
        sendError(exchange, provider, new ErrorReply(400, 'The request body is not valid JSON.'));
        return;
      }
      const ctx: RouteContext = {
        exchange,
        body: parsed.value,
        raw: multipart ? { bytes: raw ?? Buffer.alloc(0), contentType: req.headers['content-type'] ?? '' } : undefined,
        query,
        params,
        faults,
        noteFaults: (effective: ParsedFaults) => {
          entry.fault = effective.spec;
        },
        schedule: (merged: ParsedFaults) => schedule.apply(merged),
      };
      if (route.chat) {
        route.handle(ctx);
        return;
      }
      if (faults.errors.length > 0) {
        sendError(exchange, provider, new ErrorReply(400, `mock upstream: ${faults.errors.join('; ')}`, 'mock_fault_invalid'));
        return;
      }
      const effective = schedule.apply(faults).spec;
      entry.fault = effective;
      exchange.after(effective.headersDelay ?? 0, () => {
        const reply = faultReply(effective);
        if (reply === undefined) route.handle(ctx);
        else sendError(exchange, provider, reply, effective.retryAfter);
      });
    });
  };

  let server: Server | Http2SecureServer;
  const tlsSockets = new Set<TLSSocket>();
  if (settings.tls) {
    // The compatibility API gives HTTP/2 streams the same request/response shape as node:http.
    server = createSecureServer({ ...settings.tls, allowHTTP1: true, settings: { maxConcurrentStreams: 1000 } }, handle as unknown as Parameters<typeof createSecureServer>[1]);
    // Stalled streams must be able to stay open as long as a test wants.
    server.setTimeout(0);
    server.on('secureConnection', (socket: TLSSocket) => {
      tlsSockets.add(socket);
      connections++;
      socket.once('close', () => {
        tlsSockets.delete(socket);
        connections--;
      });
    });
  } else {
    const plain = createServer({ keepAlive: true, noDelay: true }, handle);
    // Longer than the usual 60 s client pools, so the mock is never the side that drops a warm connection.
    plain.keepAliveTimeout = 65_000;
    plain.headersTimeout = 66_000;
    // Stalled streams must be able to stay open as long as a test wants.
    plain.requestTimeout = 0;
    plain.timeout = 0;
    plain.on('connection', (socket: Socket) => {
      connections++;
      socket.once('close', () => connections--);
    });
    server = plain;
  }

  return {
    server,
    requests: () => recorded.slice(),
    clearRequests: () => {
      recorded = [];
    },
    stats,
    dropAll: () => {
      for (const exchange of open) exchange.destroy();
    },
    closeConnections: () => {
      if ('closeAllConnections' in server) server.closeAllConnections();
      for (const socket of tlsSockets) socket.destroy();
    },
  };
}
