import type { ChatContentPart, ChatMessage } from '../providers/types.js';

/**
 * A stored question back as content. A question with parts (attachments) is
 * stored as its parts' JSON; anything else, a question that merely starts
 * with `[` included, is text.
 */
export function storedContent(stored: string): ChatMessage['content'] {
  if (!stored.startsWith('[')) return stored;
  try {
    const parsed: unknown = JSON.parse(stored);
    const isParts = Array.isArray(parsed) && parsed.length > 0 && parsed.every((p) => typeof p === 'object' && p !== null && 'type' in p);
    return isParts ? (parsed as ChatContentPart[]) : stored;
  } catch {
    return stored;
  }
}

/** What a reader sees of a stored question: its text and, when it has any, its attachments by kind and name. */
export function readableQuestion(stored: string): { text: string; attachments: Array<{ kind: 'image' | 'file'; name: string | null; url: string }> } {
  const content = storedContent(stored);
  if (typeof content === 'string') return { text: content, attachments: [] };
  const texts: string[] = [];
  const attachments: Array<{ kind: 'image' | 'file'; name: string | null; url: string }> = [];
  for (const part of content) {
    if (part.type === 'text') texts.push(part.text);
    else if (part.type === 'image_url') attachments.push({ kind: 'image', name: null, url: part.image_url.url });
    else attachments.push({ kind: 'file', name: part.name ?? null, url: part.url });
  }
  return { text: texts.join('\n'), attachments };
}

/** A stored question as plain text, its attachments named on lines of their own (export, share links). */
export function questionAsText(stored: string): string {
  const { text, attachments } = readableQuestion(stored);
  if (attachments.length === 0) return text;
  const lines = attachments.map((a) => (a.kind === 'image' ? '[Attached image]' : `[Attached file${a.name ? `: ${a.name}` : ''}]`));
  return text ? `${text}\n\n${lines.join('\n')}` : lines.join('\n');
}
