/**
 * What the mock received of a request's attachments, in each provider's
 * form, spelled out so the answer can echo it: tests read in the answer
 * which type, how many bytes and which SHA-256 reached the provider, or the
 * start of a file's text.
 */

import { createHash } from 'node:crypto';
import { isRecord } from './protocol.js';

/** The answer's echo starts with this, then one note per attachment, `; `-separated, then `]`. */
export const RECEIVED_PREFIX = '[received ';

function bytesNote(kind: string, mediaType: string, bytes: Buffer): string {
  return `${kind} ${mediaType} ${bytes.length} bytes sha256 ${createHash('sha256').update(bytes).digest('hex')}`;
}

function textNote(kind: string, mediaType: string, text: string): string {
  return `${kind} ${mediaType} text "${text.slice(0, 40).replace(/\s+/g, ' ')}"`;
}

/** An `image_url` URL: a base64 data URL is decoded; any other URL is named. */
function imageUrlNote(url: string): string {
  const inline = /^data:([^;,]+);base64,(.*)$/s.exec(url);
  return inline ? bytesNote('image', inline[1]!, Buffer.from(inline[2]!, 'base64')) : `image url ${url}`;
}

/** OpenAI-style parts (OpenAI-compatible, FastGPT): `image_url`, `file_url`. */
export function openAIPartNotes(content: unknown): string[] {
  if (!Array.isArray(content)) return [];
  const notes: string[] = [];
  for (const part of content) {
    if (!isRecord(part)) continue;
    if (part.type === 'image_url' && isRecord(part.image_url) && typeof part.image_url.url === 'string') notes.push(imageUrlNote(part.image_url.url));
    if (part.type === 'file_url' && typeof part.url === 'string') notes.push(`file url ${part.url}`);
  }
  return notes;
}

/** Anthropic blocks: `image` and `document` with a base64, text or URL source. */
export function anthropicBlockNotes(content: unknown): string[] {
  if (!Array.isArray(content)) return [];
  const notes: string[] = [];
  for (const block of content) {
    if (!isRecord(block) || (block.type !== 'image' && block.type !== 'document') || !isRecord(block.source)) continue;
    const { source } = block;
    const mediaType = typeof source.media_type === 'string' ? source.media_type : '?';
    if (source.type === 'base64' && typeof source.data === 'string') notes.push(bytesNote(block.type, mediaType, Buffer.from(source.data, 'base64')));
    else if (source.type === 'text' && typeof source.data === 'string') notes.push(textNote(block.type, mediaType, source.data));
    else if (source.type === 'url' && typeof source.url === 'string') notes.push(`${block.type} url ${source.url}`);
  }
  return notes;
}

/** A file Dify's upload API took (the mock keeps them in memory, by id). */
export interface UploadedFile {
  name: string;
  mediaType: string;
  bytes: Buffer;
}

/** Dify `files`: `local_file` ids of earlier uploads are looked up; `remote_url` ones named. */
export function difyFileNotes(files: unknown, uploads: ReadonlyMap<string, UploadedFile>): string[] {
  if (!Array.isArray(files)) return [];
  const notes: string[] = [];
  for (const file of files) {
    if (!isRecord(file)) continue;
    const kind = file.type === 'image' ? 'image' : 'file';
    if (file.transfer_method === 'local_file' && typeof file.upload_file_id === 'string') {
      const upload = uploads.get(file.upload_file_id);
      notes.push(upload ? bytesNote(kind, upload.mediaType, upload.bytes) : `${kind} unknown upload ${file.upload_file_id}`);
    } else if (file.transfer_method === 'remote_url' && typeof file.url === 'string') {
      notes.push(`${kind} url ${file.url}`);
    }
  }
  return notes;
}

/** The question as echoed: its text, then what it carried. */
export function withNotes(text: string, notes: readonly string[]): string {
  return notes.length === 0 ? text : `${text} ${RECEIVED_PREFIX}${notes.join('; ')}]`;
}

/** The `file` part of a multipart/form-data body (Dify's upload API), or undefined. */
export function multipartFile(bytes: Buffer, contentType: string): UploadedFile | undefined {
  const boundary = /boundary=(?:"([^"]+)"|([^;]+))/i.exec(contentType);
  const marker = boundary?.[1] ?? boundary?.[2];
  if (!marker) return undefined;
  const delimiter = Buffer.from(`--${marker}`);
  let at = bytes.indexOf(delimiter);
  while (at !== -1) {
    const headStart = at + delimiter.length + 2;
    const headEnd = bytes.indexOf('\r\n\r\n', headStart);
    if (headEnd === -1) return undefined;
    const head = bytes.subarray(headStart, headEnd).toString('utf8');
    const next = bytes.indexOf(delimiter, headEnd);
    if (next === -1) return undefined;
    if (/name="file"/i.test(head)) {
      return {
        name: /filename="([^"]*)"/i.exec(head)?.[1] ?? 'file',
        mediaType: /content-type:\s*([^\r\n]+)/i.exec(head)?.[1]?.trim() ?? 'application/octet-stream',
        bytes: bytes.subarray(headEnd + 4, next - 2),
      };
    }
    at = next;
  }
  return undefined;
}
