/**
 * The type of an attachment, decided from its bytes (magic numbers), never
 * from its name or the client's header. What is not recognised is refused.
 */

export type AttachmentKind = 'image' | 'file';

export interface SniffedType {
  kind: AttachmentKind;
  contentType: string;
}

const IMAGE_SIGNATURES: ReadonlyArray<{ contentType: string; test: (b: Uint8Array) => boolean }> = [
  { contentType: 'image/png', test: (b) => startsWith(b, [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]) },
  { contentType: 'image/jpeg', test: (b) => startsWith(b, [0xff, 0xd8, 0xff]) },
  { contentType: 'image/gif', test: (b) => ascii(b, 0, 'GIF87a') || ascii(b, 0, 'GIF89a') },
  { contentType: 'image/webp', test: (b) => ascii(b, 0, 'RIFF') && ascii(b, 8, 'WEBP') },
];

/** Text types a client may claim for a text file; the stored type keeps the claim when it is one of these. */
const TEXT_TYPES = new Set(['text/plain', 'text/markdown', 'text/csv', 'text/x-markdown', 'application/json', 'text/html', 'text/xml', 'application/xml', 'text/x-python', 'text/javascript', 'application/x-yaml', 'text/yaml']);
/** A claim that says nothing: the browser did not know the type. */
const NO_CLAIM = new Set(['', 'application/octet-stream']);

function startsWith(bytes: Uint8Array, signature: readonly number[]): boolean {
  if (bytes.length < signature.length) return false;
  for (let i = 0; i < signature.length; i++) if (bytes[i] !== signature[i]) return false;
  return true;
}

function ascii(bytes: Uint8Array, offset: number, text: string): boolean {
  if (bytes.length < offset + text.length) return false;
  for (let i = 0; i < text.length; i++) if (bytes[offset + i] !== text.charCodeAt(i)) return false;
  return true;
}

const utf8 = new TextDecoder('utf-8', { fatal: true });

/** UTF-8 without NUL bytes or other control characters than tab, newline, carriage return and form feed. */
function isText(bytes: Uint8Array): boolean {
  let text: string;
  try {
    text = utf8.decode(bytes);
  } catch {
    return false;
  }
  // eslint-disable-next-line no-control-regex
  return !/[\u0000-\u0008\u000b\u000e-\u001f\u007f]/.test(text);
}

/** The type the bytes show, or undefined for anything we do not take. */
export function sniffContentType(bytes: Uint8Array): SniffedType | undefined {
  if (bytes.length === 0) return undefined;
  for (const image of IMAGE_SIGNATURES) if (image.test(bytes)) return { kind: 'image', contentType: image.contentType };
  if (ascii(bytes, 0, '%PDF-')) return { kind: 'file', contentType: 'application/pdf' };
  if (isText(bytes)) return { kind: 'file', contentType: 'text/plain' };
  return undefined;
}

/** The claim's media type, lower-cased, without parameters. */
export function mediaType(claimed: string | undefined): string {
  return (claimed ?? '').split(';')[0]!.trim().toLowerCase();
}

/**
 * The type to store when the client's claim agrees with the bytes, else
 * undefined (a mismatch is refused). A text file keeps the text type the
 * client named (text/markdown, text/csv); `image/jpg` is JPEG's common misspelling.
 */
export function agreedType(sniffed: SniffedType, claimed: string | undefined): string | undefined {
  const claim = mediaType(claimed);
  if (NO_CLAIM.has(claim)) return sniffed.contentType;
  if (claim === sniffed.contentType) return claim;
  if (sniffed.contentType === 'image/jpeg' && claim === 'image/jpg') return sniffed.contentType;
  if (sniffed.contentType === 'text/plain' && TEXT_TYPES.has(claim)) return claim;
  return undefined;
}

export function isTextType(contentType: string): boolean {
  return contentType === 'text/plain' || TEXT_TYPES.has(contentType);
}
