import { Worker } from 'node:worker_threads';
import { isTextType } from './content-type.js';

/** The most text kept of one file (what a provider gets in place of the file). */
export const MAX_EXTRACTED_CHARS = 100_000;
/** The most pages read of one PDF. */
const MAX_PAGES = 500;

function clip(text: string): string {
  return text.length > MAX_EXTRACTED_CHARS ? text.slice(0, MAX_EXTRACTED_CHARS) : text;
}

/** How long one PDF's text may take to read before it is given up (then the file has no text). */
export const PDF_TEXT_DEADLINE_MS = 20_000;
/** The most heap a PDF's reading may take: a hostile file ends its worker, never the server. */
const PDF_WORKER_HEAP_MB = 256;

/** PDFs read at once by this process; more wait their turn, so uploads of PDFs take at most these threads' worth of CPU. */
const PDF_WORKERS = 2;
let pdfWorkersBusy = 0;
const waitingForWorker: (() => void)[] = [];

async function withPdfWorker<T>(run: () => Promise<T>): Promise<T> {
  if (pdfWorkersBusy >= PDF_WORKERS) await new Promise<void>((resolve) => waitingForWorker.push(resolve));
  else pdfWorkersBusy++;
  try {
    return await run();
  } finally {
    // The slot passes straight to the next waiter, or is given back.
    const next = waitingForWorker.shift();
    if (next) next();
    else pdfWorkersBusy--;
  }
}

/** The worker's file beside this one: built JavaScript, or the source itself under the tests. */
const PDF_WORKER = new URL(import.meta.url.endsWith('.ts') ? './pdf-text-worker.ts' : './pdf-text-worker.js', import.meta.url);

/**
 * The text of a PDF, read by pdf.js (unpdf, pure JS) in a worker thread of
 * its own: parsing is CPU work that would otherwise hold the event loop,
 * and every answer this instance streams, for as long as one file takes.
 * At most PDF_WORKERS run at once (the deadline counts from the start of
 * each one's reading). The worker is ended at the deadline or when it runs out of its heap;
 * the file then has no text (null), as has one that does not parse.
 */
function pdfText(bytes: Uint8Array, deadlineMs: number): Promise<string | null> {
  return new Promise((resolve) => {
    // A copy: pdf.js takes ownership of (detaches) the buffer it is given, and the worker gets its own.
    const worker = new Worker(PDF_WORKER, {
      workerData: { bytes: new Uint8Array(bytes), maxPages: MAX_PAGES, maxChars: MAX_EXTRACTED_CHARS },
      resourceLimits: { maxOldGenerationSizeMb: PDF_WORKER_HEAP_MB },
      stdout: true,
      stderr: true,
    });
    const finish = (text: string | null): void => {
      clearTimeout(timer);
      worker.removeAllListeners();
      worker.on('error', () => undefined);
      void worker.terminate();
      resolve(text);
    };
    const timer = setTimeout(() => finish(null), deadlineMs);
    worker.once('message', (text: unknown) => finish(typeof text === 'string' ? clip(text) : null));
    worker.once('error', () => finish(null));
    worker.once('exit', () => finish(null));
  });
}

/**
 * The text of a text file or PDF, for providers that take no files; null
 * for images and for a PDF with no text layer (a scan), one that does not
 * parse, or one that takes longer than `deadlineMs` to read.
 */
export async function extractText(contentType: string, bytes: Uint8Array, deadlineMs = PDF_TEXT_DEADLINE_MS): Promise<string | null> {
  if (isTextType(contentType)) return clip(new TextDecoder().decode(bytes));
  if (contentType !== 'application/pdf') return null;
  return withPdfWorker(() => pdfText(bytes, deadlineMs));
}
