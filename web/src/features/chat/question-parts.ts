import type { QuestionContent, QuestionPart } from '../../api/types';

/** An attachment as a question names it: its URL, its name, and whether it shows as an image. */
export interface AttachmentRef {
  url: string;
  name: string;
  kind: 'image' | 'file';
}

const ATTACHMENT_URL = /^\/api\/attachments\/[0-9a-f-]{36}$/;

/** The question to send: plain text, or parts when it carries attachments (the text first). */
export function questionContent(text: string, attachments: readonly AttachmentRef[]): QuestionContent {
  if (attachments.length === 0) return text;
  const parts: QuestionPart[] = text.trim() ? [{ type: 'text', text }] : [];
  for (const a of attachments) parts.push(a.kind === 'image' ? { type: 'image_url', image_url: { url: a.url } } : { type: 'file_url', name: a.name, url: a.url });
  return parts;
}

/** The stored form of a question's content (what the history holds): text as is, parts as their JSON. */
export function storedForm(content: QuestionContent): string {
  return typeof content === 'string' ? content : JSON.stringify(content);
}

/**
 * A stored question back as its text and attachments. A question with
 * attachments is stored as its parts' JSON; anything else is plain text
 * (a question that merely starts with `[` stays text unless it parses as parts).
 */
export function parseQuestion(stored: string): { text: string; attachments: AttachmentRef[] } {
  if (!stored.startsWith('[{')) return { text: stored, attachments: [] };
  let parsed: unknown;
  try {
    parsed = JSON.parse(stored);
  } catch {
    return { text: stored, attachments: [] };
  }
  if (!Array.isArray(parsed) || !parsed.every((p) => typeof p === 'object' && p !== null && 'type' in p)) return { text: stored, attachments: [] };
  const texts: string[] = [];
  const attachments: AttachmentRef[] = [];
  for (const part of parsed as QuestionPart[]) {
    if (part.type === 'text' && typeof part.text === 'string') texts.push(part.text);
    else if (part.type === 'image_url' && typeof part.image_url?.url === 'string') attachments.push({ url: part.image_url.url, name: nameOf(part.image_url.url), kind: 'image' });
    else if (part.type === 'file_url' && typeof part.url === 'string') attachments.push({ url: part.url, name: part.name ?? nameOf(part.url), kind: 'file' });
  }
  return { text: texts.join('\n'), attachments };
}

function nameOf(url: string): string {
  return url.split('/').pop() ?? url;
}

/** Only our own attachments are fetched (with the access token); an outside link is shown as a link. */
export function isOwnAttachment(url: string): boolean {
  return ATTACHMENT_URL.test(url);
}

/** A stored question as content to send again (a failed question retried). */
export function contentOf(stored: string): QuestionContent {
  const { text, attachments } = parseQuestion(stored);
  return attachments.length === 0 ? stored : questionContent(text, attachments);
}
