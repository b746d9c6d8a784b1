import { isTextType } from './content-type.js';

/** The most text kept of one file (what a provider gets in place of the file). */
export const MAX_EXTRACTED_CHARS = 100_000;
/** The most pages read of one PDF. */
const MAX_PAGES = 500;

function clip(text: string): string {
  return text.length > MAX_EXTRACTED_CHARS ? text.slice(0, MAX_EXTRACTED_CHARS) : text;
}

/**
 * The text of a text file or PDF, for providers that take no files; null
 * for images and for a PDF with no text layer (a scan) or one that does not
 * parse. unpdf (pdf.js built for servers, pure JS) is loaded on the first PDF only.
 */
export async function extractText(contentType: string, bytes: Uint8Array): Promise<string | null> {
  if (isTextType(contentType)) return clip(new TextDecoder().decode(bytes));
  if (contentType !== 'application/pdf') return null;
  try {
    const { getDocumentProxy } = await import('unpdf');
    // pdf.js takes ownership of (detaches) the buffer it is given: hand it a copy.
    const pdf = await getDocumentProxy(new Uint8Array(bytes));
    try {
      // Page by page, stopping once enough text is in hand: a huge PDF costs no more than the text kept.
      let text = '';
      for (let n = 1; n <= Math.min(pdf.numPages, MAX_PAGES) && text.length < MAX_EXTRACTED_CHARS; n++) {
        const content = await (await pdf.getPage(n)).getTextContent();
        const page = content.items.map((item) => ('str' in item ? item.str + (item.hasEOL ? '\n' : '') : '')).join('');
        text += text === '' ? page : `\n\n${page}`;
      }
      const trimmed = text.trim();
      return trimmed === '' ? null : clip(trimmed);
    } finally {
      await pdf.loadingTask.destroy();
    }
  } catch {
    return null;
  }
}
