import fs from 'node:fs';
import path from 'node:path';
import fastifyStatic from '@fastify/static';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import type { PageFallback } from './error-handler.js';

/** Paths the SPA never answers: an unknown API route must stay a JSON 404, not a page. */
const API_PREFIXES = ['/api/', '/v1/', '/health/', '/assets/', '/docs/'];
const API_EXACT = new Set(['/api', '/v1', '/health', '/docs', '/openapi.json']);

/**
 * The page may run only the app's own scripts: even if model output slipped
 * past the renderer as HTML, no inline script or foreign origin would run.
 * Inline style attributes stay allowed (the virtualized list positions rows with them).
 */
export const WEB_CSP = [
  "default-src 'self'",
  "script-src 'self'",
  "style-src 'self' 'unsafe-inline'",
  // blob: attachments' images, fetched with the access token and shown from memory (features/chat/question-attachments.tsx).
  "img-src 'self' data: blob:",
  "connect-src 'self'",
  "font-src 'self' data:",
  "object-src 'none'",
  "base-uri 'self'",
  "frame-ancestors 'none'",
  "form-action 'self'",
].join('; ');

/** Hashed build output: the name changes with the content, so it may be cached for good. */
export const IMMUTABLE = 'public, max-age=31536000, immutable';

function isReservedPath(url: string): boolean {
  const pathname = url.split('?')[0] ?? '';
  return API_EXACT.has(pathname) || API_PREFIXES.some((p) => pathname.startsWith(p));
}

/**
 * Serves the built web app from `dir` on the same port as the API. Files
 * under /assets are cached for a year; index.html is revalidated every time
 * so a deploy takes effect on the next load. Returns the fallback for
 * unknown routes: any other GET that is not an API path gets index.html, so
 * client routes (/c/…, /admin/…) survive a reload.
 */
export async function registerWebApp(app: FastifyInstance, dir: string): Promise<PageFallback> {
  const indexHtml = await fs.promises.readFile(path.join(dir, 'index.html'));

  const sendIndex = (reply: FastifyReply) =>
    reply.status(200).type('text/html; charset=utf-8').header('cache-control', 'no-cache').header('content-security-policy', WEB_CSP).send(indexHtml);
  // A shared conversation's page (`/s/<token>`): the link is a secret, so neither caches nor search engines keep it.
  const sendSharePage = (reply: FastifyReply) => sendIndex(reply.header('x-robots-tag', 'noindex, nofollow')).header('cache-control', 'no-store');

  await app.register(fastifyStatic, {
    root: dir,
    prefix: '/',
    // One route per file that exists at start (the build is immutable while the process runs).
    wildcard: false,
    index: false,
    decorateReply: false,
    cacheControl: false,
    // @fastify/static 10 hands over the reply (9 gave the raw response), and what is set here wins over its own headers.
    setHeaders(reply, filePath) {
      const rel = path.relative(dir, filePath).split(path.sep).join('/');
      reply.header('cache-control', rel.startsWith('assets/') ? IMMUTABLE : 'no-cache');
      if (rel.endsWith('.html')) reply.header('content-security-policy', WEB_CSP);
    },
  });
  app.get('/', async (_request, reply) => sendIndex(reply));

  return (request: FastifyRequest, reply: FastifyReply) => {
    if ((request.method === 'GET' || request.method === 'HEAD') && !isReservedPath(request.url)) return request.url.startsWith('/s/') ? sendSharePage(reply) : sendIndex(reply);
    return undefined;
  };
}
