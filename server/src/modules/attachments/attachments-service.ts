import crypto from 'node:crypto';
import { AppError } from '../../errors.js';
import type { AgentFeatureFlags } from '../agents/types.js';
import type { AttachedFile, ChatContentPart, ChatMessage } from '../providers/types.js';
import { createAttachmentRepository } from './attachment-repository.js';
import type { DatabaseHandle } from '../../db/database.js';
import { agreedType, sniffContentType } from './content-type.js';
import { extractText } from './text-extraction.js';

/** Where an attachment is served; content parts name attachments by this URL. */
export const attachmentUrl = (id: string) => `/api/attachments/${id}`;
/** Where a signed link serves an attachment without sign-in (routes.ts, attachmentLinkRoutes). */
export const attachmentLinkPath = (id: string) => `/api/attachment-links/${id}`;
const ATTACHMENT_URL = /^\/api\/attachments\/([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})$/;

/** Largest browser-made thumbnail taken. */
export const MAX_THUMBNAIL_BYTES = 64 * 1024;
const MAX_NAME_CHARS = 200;

/** The id of the attachment a content part names, if it names one. */
export function attachmentIdOf(part: ChatContentPart): string | undefined {
  const url = part.type === 'image_url' ? part.image_url.url : part.type === 'file_url' ? part.url : undefined;
  return url === undefined ? undefined : ATTACHMENT_URL.exec(url)?.[1];
}

/** True when any message has a part naming an attachment: the one check a text-only turn pays. */
export function namesAttachments(messages: readonly ChatMessage[]): boolean {
  for (const m of messages) if (typeof m.content !== 'string' && m.content.some((p) => attachmentIdOf(p) !== undefined)) return true;
  return false;
}

/** A name safe to show and to put in a Content-Disposition header: no path, no control characters, bounded. */
export function cleanName(raw: string | undefined, contentType: string): string {
  // eslint-disable-next-line no-control-regex
  const base = (raw ?? '').split(/[\\/]/).pop()!.replace(/[\u0000-\u001f\u007f]/g, '').trim().slice(0, MAX_NAME_CHARS);
  if (base !== '') return base;
  return contentType.startsWith('image/') ? `image.${contentType.slice(6)}` : contentType === 'application/pdf' ? 'file.pdf' : 'file.txt';
}

export interface AttachmentView {
  id: string;
  name: string;
  contentType: string;
  kind: 'image' | 'file';
  size: number;
  sha256: string;
  url: string;
  createdAt: string;
}

function view(row: { id: string; name: string; content_type: string; size: number; sha256: string; created_at: Date }): AttachmentView {
  return { id: row.id, name: row.name, contentType: row.content_type, kind: row.content_type.startsWith('image/') ? 'image' : 'file', size: row.size, sha256: row.sha256, url: attachmentUrl(row.id), createdAt: row.created_at.toISOString() };
}

const notFound = () => new AppError('ATTACHMENT_NOT_FOUND', 'The attachment does not exist or is not yours');

/**
 * Attachments of questions: upload (type decided by content, size and
 * quota checked), serving to their owner only, and what a chat turn needs:
 * the check that the agent takes them and their bytes for the provider.
 */
export function createAttachmentsService(deps: {
  database: DatabaseHandle;
  maxBytes: number;
  userQuotaBytes: number;
  /** Signed links: where providers reach this server, for how long a link works, and the key that signs them. */
  links?: { baseUrl: string; ttlSeconds: number; secret: string } | undefined;
}) {
  const repo = createAttachmentRepository(deps.database);
  // A key of its own, derived from the secret: a link's signature says nothing about any other use of it.
  const linkKey = deps.links ? crypto.createHmac('sha256', deps.links.secret).update('llmchat attachment links').digest() : undefined;
  const sign = (id: string, expires: number) => (linkKey ? crypto.createHmac('sha256', linkKey).update(`${id}.${expires}`).digest('base64url') : '');

  /** A link to an attachment that needs no sign-in and stops working after the TTL (undefined without a base URL). */
  function signedLink(id: string, nowMs = Date.now()): string | undefined {
    if (!deps.links) return undefined;
    const expires = Math.floor(nowMs / 1000) + deps.links.ttlSeconds;
    return `${deps.links.baseUrl}${attachmentLinkPath(id)}?expires=${expires}&signature=${sign(id, expires)}`;
  }

  return {
    maxBytes: deps.maxBytes,
    signedLink,

    /** The bytes a signed link names, while it has not expired; anything else (forged, expired, gone) is a 404. */
    async linked(id: string, expires: number, signature: string, nowMs = Date.now()) {
      const expected = Buffer.from(sign(id, expires));
      const given = Buffer.from(signature);
      if (!deps.links || expires * 1000 < nowMs || expected.length !== given.length || !crypto.timingSafeEqual(expected, given)) throw notFound();
      const row = await repo.dataById(id);
      if (!row) throw notFound();
      return { name: row.name, contentType: row.content_type, data: row.data };
    },

    async upload(userId: string, file: { name: string | undefined; claimedType: string | undefined; bytes: Uint8Array }): Promise<AttachmentView> {
      const { bytes } = file;
      if (bytes.length > deps.maxBytes) throw new AppError('ATTACHMENT_TOO_LARGE', `An attachment may be at most ${deps.maxBytes} bytes`);
      const sniffed = sniffContentType(bytes);
      if (!sniffed) throw new AppError('ATTACHMENT_TYPE_REFUSED', 'Attachments may be PNG, JPEG, GIF or WebP images, PDFs or UTF-8 text files; this file is none of them');
      const contentType = agreedType(sniffed, file.claimedType);
      if (contentType === undefined) throw new AppError('ATTACHMENT_TYPE_MISMATCH', `The file's content is ${sniffed.contentType}, not the ${file.claimedType ?? ''} it was sent as`);
      const textContent = await extractText(contentType, bytes);
      const row = await repo.insertWithinQuota(
        { userId, name: cleanName(file.name, contentType), contentType, size: bytes.length, sha256: crypto.createHash('sha256').update(bytes).digest('hex'), data: bytes, textContent },
        deps.userQuotaBytes,
      );
      if (!row) throw new AppError('ATTACHMENT_QUOTA_EXCEEDED', `Your attachments may take at most ${deps.userQuotaBytes} bytes in all; remove some first`);
      return view(row);
    },

    async info(userId: string, id: string): Promise<AttachmentView> {
      const row = await repo.info(id, userId);
      if (!row) throw notFound();
      return view(row);
    },

    async content(userId: string, id: string) {
      const row = await repo.data(id, userId);
      if (!row) throw notFound();
      return { name: row.name, contentType: row.content_type, data: row.data };
    },

    /** The thumbnail, or the image itself while it has none. */
    async thumbnail(userId: string, id: string) {
      const row = await repo.thumbnail(id, userId);
      if (!row || !row.content_type.startsWith('image/')) throw notFound();
      if (row.thumbnail) return { name: row.name, contentType: sniffContentType(row.thumbnail)?.contentType ?? 'image/png', data: row.thumbnail };
      return this.content(userId, id);
    },

    /** Keeps the browser-made thumbnail of an image attachment, once its bytes prove it is an image. */
    async setThumbnail(userId: string, id: string, bytes: Uint8Array): Promise<void> {
      if (bytes.length > MAX_THUMBNAIL_BYTES) throw new AppError('ATTACHMENT_TOO_LARGE', `A thumbnail may be at most ${MAX_THUMBNAIL_BYTES} bytes`);
      if (sniffContentType(bytes)?.kind !== 'image') throw new AppError('ATTACHMENT_TYPE_REFUSED', 'A thumbnail must be a PNG, JPEG, GIF or WebP image');
      if (!(await repo.setThumbnail(id, userId, bytes))) throw notFound();
    },

    async remove(userId: string, id: string): Promise<void> {
      if (!(await repo.remove(id, userId))) throw notFound();
    },

    /** The owner's attachments (newest first, at most `limit`) and how much of the quota they take. */
    async list(userId: string, limit: number) {
      const [usedBytes, rows] = await Promise.all([repo.usedBytes(userId), repo.list(userId, limit)]);
      return { usedBytes, quotaBytes: deps.userQuotaBytes, maxBytes: deps.maxBytes, items: rows.map(view) };
    },

    /**
     * Checks a new question's attachments before anything is written: each
     * must be the asker's (else 404), images need an agent with
     * `supportsImages`, other files one with `supportsFiles`. Parts with
     * outside URLs are held to the same feature flags.
     */
    async checkQuestion(userId: string, content: ChatMessage['content'], features: Pick<AgentFeatureFlags, 'supportsImages' | 'supportsFiles'>, agentId: string): Promise<void> {
      if (typeof content === 'string') return;
      const ids: string[] = [];
      for (const part of content) {
        if (part.type === 'text') continue;
        const id = attachmentIdOf(part);
        if (id !== undefined) ids.push(id);
        else if (part.type === 'image_url' && !features.supportsImages) throw noImages(agentId);
        else if (part.type === 'file_url' && !features.supportsFiles) throw noFiles(agentId);
      }
      if (ids.length === 0) return;
      const found = new Map((await repo.infos(ids, userId)).map((row) => [row.id, row]));
      for (const id of ids) {
        const row = found.get(id);
        if (!row) throw notFound();
        if (row.content_type.startsWith('image/') ? !features.supportsImages : !features.supportsFiles) throw row.content_type.startsWith('image/') ? noImages(agentId) : noFiles(agentId);
      }
    },

    /**
     * The messages with their attachments loaded for the provider call.
     * What the agent does not take (its flags changed, or an earlier turn
     * went to another agent) becomes a text note; one the user removed, too.
     */
    async load(userId: string, messages: ChatMessage[], features: Pick<AgentFeatureFlags, 'supportsImages' | 'supportsFiles'>): Promise<ChatMessage[]> {
      const ids = new Set<string>();
      for (const m of messages) if (typeof m.content !== 'string') for (const p of m.content) {
        const id = attachmentIdOf(p);
        if (id !== undefined) ids.add(id);
      }
      if (ids.size === 0) return messages;
      const files = new Map<string, AttachedFile>();
      for (const row of await repo.contents([...ids], userId)) {
        files.set(row.id, { id: row.id, name: row.name, contentType: row.content_type, size: row.size, sha256: row.sha256, data: row.data, text: row.text_content, link: signedLink(row.id) });
      }
      return messages.map((m) => {
        if (typeof m.content === 'string') return m;
        const content = m.content.map((part): ChatContentPart => {
          const id = attachmentIdOf(part);
          if (id === undefined || part.type === 'text') return part;
          const file = files.get(id);
          if (!file) return { type: 'text', text: '[an attachment that was removed]' };
          const isImage = file.contentType.startsWith('image/');
          if (isImage ? !features.supportsImages : !features.supportsFiles) return { type: 'text', text: `[attachment ${file.name}, not sent: this agent does not take ${isImage ? 'images' : 'files'}]` };
          return isImage ? { type: 'image_url', image_url: { url: part.type === 'image_url' ? part.image_url.url : part.url }, attachment: file } : { type: 'file_url', name: file.name, url: attachmentUrl(id), attachment: file };
        });
        return { ...m, content };
      });
    },
  };
}

function noImages(agentId: string): AppError {
  return new AppError('AGENT_TAKES_NO_IMAGES', `Agent '${agentId}' does not take images; remove them or pick an agent that does`);
}

function noFiles(agentId: string): AppError {
  return new AppError('AGENT_TAKES_NO_FILES', `Agent '${agentId}' does not take files; remove them or pick an agent that does`);
}

export type AttachmentsService = ReturnType<typeof createAttachmentsService>;
