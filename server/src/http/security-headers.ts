/**
 * helmet's security headers on every response, computed once.
 *
 * Without a Content-Security-Policy nonce (the API's CSP is a constant; the
 * web app's pages set their own) helmet's headers are the same for every request.
 * @fastify/helmet built helmet's middleware again for each request in two
 * hooks (2.4% of the server's busy time in a profile under chat load; ≈ 6%
 * less CPU per chat turn measured without it); here helmet runs once
 * at start against a throwaway response and the result is copied onto each
 * reply, so helmet stays the one source of what the headers are.
 */

import { IncomingMessage, ServerResponse } from 'node:http';
import { Socket } from 'node:net';
import type { FastifyInstance } from 'fastify';
import helmet, { type HelmetOptions } from 'helmet';

export function securityHeaders(options: Readonly<HelmetOptions>): Readonly<Record<string, string>> {
  const res = new ServerResponse(new IncomingMessage(new Socket()));
  let called = false;
  let failure: Error | undefined;
  helmet(options)(res.req, res, (error?: unknown) => {
    called = true;
    if (error !== undefined) failure = error instanceof Error ? error : new Error('helmet failed');
  });
  if (!called) throw new Error('helmet did not set its headers synchronously');
  if (failure !== undefined) throw failure;
  const headers: Record<string, string> = {};
  for (const [name, value] of Object.entries(res.getHeaders())) {
    if (value !== undefined) headers[name] = Array.isArray(value) ? value.join(', ') : String(value);
  }
  return Object.freeze(headers);
}

/** What an API response may load or be framed by: nothing. The web app's pages replace it with their own (plugins/web-app.ts). */
export const API_CSP = "default-src 'none'; frame-ancestors 'none'";

/**
 * The headers every response starts with, computed once at start:
 * helmet's, the API's CSP, HSTS only in production (a development server
 * on plain HTTP must not pin `localhost` to HTTPS in the browser), and
 * `Cache-Control: no-store`, since most answers carry someone's private
 * data (sessions, history, search, profile, keys, admin views). What may be
 * cached says so itself: the web app's files and pages, and the event
 * streams (`no-cache, no-transform`).
 */
export function responseHeaders({ production }: { production: boolean }): Readonly<Record<string, string>> {
  return Object.freeze({
    ...securityHeaders({
      contentSecurityPolicy: false,
      crossOriginEmbedderPolicy: false,
      strictTransportSecurity: production ? { maxAge: 31_536_000, includeSubDomains: true } : false,
    }),
    'content-security-policy': API_CSP,
    'cache-control': 'no-store',
  });
}

/** The same headers as HTTP/1.1 header lines, for answers written to the socket directly (http/client-errors.ts). */
export function headerLines(headers: Readonly<Record<string, string>>): string {
  return Object.entries(headers)
    .map(([name, value]) => `${name}: ${value}\r\n`)
    .join('');
}

/** Copies `headers` (computed once) onto every reply; no per-request work beyond the copy. */
export function registerSecurityHeaders(app: FastifyInstance, headers: Readonly<Record<string, string>>): void {
  app.addHook('onRequest', (_request, reply, done) => {
    void reply.headers(headers);
    done();
  });
}
