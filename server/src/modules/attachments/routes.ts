import type { IncomingMessage } from 'node:http';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import type { RouteOptions } from '../../app.js';
import { AppError } from '../../errors.js';
import { ok } from '../../http/response.js';
import { principalOf } from '../../plugins/authenticate.js';
import { MAX_THUMBNAIL_BYTES } from './attachments-service.js';
import { AttachmentParams, LinkQuery, DoneResponses, FileResponses, ThumbnailBody, UploadBody, UploadQuery, UploadResponses, ListQuery, ListResponses } from './schema.js';

/**
 * An attachment served back: never run or framed as a page, never cached
 * by a shared cache, never sniffed into another type; anything but an
 * image is a download.
 */
export const ATTACHMENT_CSP = "default-src 'none'; frame-ancestors 'none'; sandbox";

function contentDisposition(kind: 'inline' | 'attachment', name: string): string {
  const ascii = name.replace(/[^\x20-\x7e]/g, '_').replace(/["\\]/g, '_');
  return `${kind}; filename="${ascii}"; filename*=UTF-8''${encodeURIComponent(name)}`;
}

function sendFile(reply: FastifyReply, file: { name: string; contentType: string; data: Uint8Array }) {
  const image = file.contentType.startsWith('image/');
  return reply
    .header('content-type', image ? file.contentType : file.contentType.startsWith('text/') || file.contentType === 'application/json' ? `${file.contentType}; charset=utf-8` : file.contentType)
    .header('content-disposition', contentDisposition(image ? 'inline' : 'attachment', file.name))
    .header('x-content-type-options', 'nosniff')
    .header('cache-control', 'private, no-store')
    .header('content-security-policy', ATTACHMENT_CSP)
    .header('cross-origin-resource-policy', 'same-origin')
    .send(Buffer.from(file.data.buffer, file.data.byteOffset, file.data.byteLength));
}

/** Reads a raw body up to `limit` bytes; a longer one is refused as soon as it is seen to be. */
async function readBody(request: FastifyRequest, payload: AsyncIterable<Buffer>, limit: number, what: string): Promise<Buffer> {
  const declared = Number(request.headers['content-length']);
  const tooLarge = () => new AppError('ATTACHMENT_TOO_LARGE', `${what} may be at most ${limit} bytes`);
  if (Number.isFinite(declared) && declared > limit) throw tooLarge();
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of payload) {
    size += chunk.length;
    if (size > limit) throw tooLarge();
    chunks.push(chunk);
  }
  return Buffer.concat(chunks, size);
}

/**
 * `/api/attachments`: upload (the file's bytes as the body, any Content-Type),
 * the owner's file and thumbnail, removal, and how much of the quota is used.
 * Another user's id answers 404 like one that does not exist.
 */
export async function attachmentRoutes(app: FastifyInstance, { deps, guards }: RouteOptions): Promise<void> {
  const { attachments } = deps;
  app.addHook('onRequest', guards.requireUser);
  // In this scope only: every body is the file's raw bytes, whatever type the client names (a JSON or text file too).
  app.removeAllContentTypeParsers();
  app.addContentTypeParser('*', (request: FastifyRequest, payload: IncomingMessage) =>
    readBody(request, payload, request.method === 'PUT' ? MAX_THUMBNAIL_BYTES : attachments.maxBytes, request.method === 'PUT' ? 'A thumbnail' : 'An attachment'),
  );

  app.post('/', { schema: { querystring: UploadQuery, body: UploadBody, response: UploadResponses } }, async (request, reply) => {
    const { name } = request.query as { name?: string };
    const bytes = request.body as Buffer;
    const created = await attachments.upload(principalOf(request).userId, { name, claimedType: request.headers['content-type'], bytes });
    return reply.status(201).send(ok(created));
  });

  app.get('/', { schema: { querystring: ListQuery, response: ListResponses } }, async (request) => {
    const { limit } = request.query as { limit?: number };
    return ok(await attachments.list(principalOf(request).userId, limit ?? 200));
  });

  app.get('/:id', { schema: { params: AttachmentParams, response: FileResponses } }, async (request, reply) => {
    const { id } = request.params as { id: string };
    return sendFile(reply, await attachments.content(principalOf(request).userId, id));
  });

  app.get('/:id/thumbnail', { schema: { params: AttachmentParams, response: FileResponses } }, async (request, reply) => {
    const { id } = request.params as { id: string };
    return sendFile(reply, await attachments.thumbnail(principalOf(request).userId, id));
  });

  app.put('/:id/thumbnail', { schema: { params: AttachmentParams, body: ThumbnailBody, response: DoneResponses } }, async (request) => {
    const { id } = request.params as { id: string };
    await attachments.setThumbnail(principalOf(request).userId, id, request.body as Buffer);
    return ok({ id });
  });

  app.delete('/:id', { schema: { params: AttachmentParams, response: DoneResponses } }, async (request) => {
    const { id } = request.params as { id: string };
    await attachments.remove(principalOf(request).userId, id);
    return ok({ id });
  });
}

/**
 * `/api/attachment-links/:id`: an attachment by a signed, expiring link,
 * with no sign-in, for model providers that fetch files by URL (FastGPT).
 * A forged, altered or expired link is a 404 like an unknown id.
 */
export async function attachmentLinkRoutes(app: FastifyInstance, { deps }: RouteOptions): Promise<void> {
  const { attachments } = deps;
  app.get('/:id', { schema: { params: AttachmentParams, querystring: LinkQuery, response: FileResponses } }, async (request, reply) => {
    const { id } = request.params as { id: string };
    const { expires, signature } = request.query as { expires: number; signature: string };
    return sendFile(reply, await attachments.linked(id, expires, signature));
  });
}
