/**
 * Runs in a worker thread (text-extraction.ts): reads the text of one PDF
 * and posts it back, or null when it has none or does not parse. Kept free
 * of imports from this codebase and of TypeScript-only syntax, so Node can
 * run the source file itself under the tests (type stripping) as well as
 * the built one.
 */
import { parentPort, workerData } from 'node:worker_threads';

interface Job {
  bytes: Uint8Array;
  maxPages: number;
  maxChars: number;
}

async function pdfText({ bytes, maxPages, maxChars }: Job): Promise<string | null> {
  const { getDocumentProxy } = await import('unpdf');
  const pdf = await getDocumentProxy(bytes);
  try {
    // Page by page, stopping once enough text is in hand: a huge PDF costs no more than the text kept.
    let text = '';
    for (let n = 1; n <= Math.min(pdf.numPages, maxPages) && text.length < maxChars; n++) {
      const content = await (await pdf.getPage(n)).getTextContent();
      const page = content.items.map((item) => ('str' in item ? item.str + (item.hasEOL ? '\n' : '') : '')).join('');
      text += text === '' ? page : `\n\n${page}`;
    }
    const trimmed = text.trim();
    return trimmed === '' ? null : trimmed.slice(0, maxChars);
  } finally {
    await pdf.loadingTask.destroy();
  }
}

pdfText(workerData as Job).then(
  (text) => parentPort?.postMessage(text),
  () => parentPort?.postMessage(null),
);
