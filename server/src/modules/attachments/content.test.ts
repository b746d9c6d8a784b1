import { describe, expect, it } from 'vitest';
import { agreedType, sniffContentType } from './content-type.js';
import { extractText, MAX_EXTRACTED_CHARS } from './text-extraction.js';
import { minimalPdf, ONE_PIXEL_PNG } from './test-files.js';

describe('the type of an attachment, by its bytes', () => {
  it('knows images, PDFs and UTF-8 text by their first bytes, whatever they are called', () => {
    expect(sniffContentType(ONE_PIXEL_PNG)).toEqual({ kind: 'image', contentType: 'image/png' });
    expect(sniffContentType(Buffer.from([0xff, 0xd8, 0xff, 0xe0, 0, 0x10]))?.contentType).toBe('image/jpeg');
    expect(sniffContentType(Buffer.from('GIF89a\x01\x00'))?.contentType).toBe('image/gif');
    expect(sniffContentType(Buffer.from('RIFF\x00\x00\x00\x00WEBPVP8 '))?.contentType).toBe('image/webp');
    expect(sniffContentType(minimalPdf('x'))).toEqual({ kind: 'file', contentType: 'application/pdf' });
    expect(sniffContentType(Buffer.from('# 标题\n\nplain text, tabs\tand all'))).toEqual({ kind: 'file', contentType: 'text/plain' });
  });

  it('takes nothing else: binary, invalid UTF-8, control characters, empty', () => {
    for (const bytes of [Buffer.from([0x50, 0x4b, 0x03, 0x04]), Buffer.from([0xc3, 0x28]), Buffer.from('text\u0000with a NUL'), Buffer.from('bell\u0007'), Buffer.alloc(0)]) {
      expect(sniffContentType(bytes), bytes.toString('hex')).toBeUndefined();
    }
  });

  it('keeps a claim the bytes agree with, takes a claim of nothing, and refuses one they contradict', () => {
    const png = sniffContentType(ONE_PIXEL_PNG)!;
    const text = sniffContentType(Buffer.from('a,b\n1,2'))!;
    expect(agreedType(png, 'image/png')).toBe('image/png');
    expect(agreedType(png, 'application/octet-stream')).toBe('image/png');
    expect(agreedType(png, undefined)).toBe('image/png');
    expect(agreedType(png, 'image/jpeg')).toBeUndefined();
    expect(agreedType(text, 'text/csv; charset=utf-8')).toBe('text/csv');
    expect(agreedType(text, 'image/png')).toBeUndefined();
    expect(agreedType(sniffContentType(Buffer.from([0xff, 0xd8, 0xff]))!, 'image/jpg')).toBe('image/jpeg');
  });
});

describe('text of a file', () => {
  it('reads a PDF\'s text layer and a text file as it is', async () => {
    expect(await extractText('application/pdf', minimalPdf('Hello (PDF) text'))).toBe('Hello (PDF) text');
    expect(await extractText('text/markdown', Buffer.from('# Notes'))).toBe('# Notes');
    expect(await extractText('text/plain', Buffer.alloc(MAX_EXTRACTED_CHARS + 10, 0x61))).toHaveLength(MAX_EXTRACTED_CHARS);
  });

  it('has none for an image or a PDF that does not parse', async () => {
    expect(await extractText('image/png', ONE_PIXEL_PNG)).toBeNull();
    expect(await extractText('application/pdf', Buffer.from('%PDF-1.4\nnot really'))).toBeNull();
  });

  it('gives a PDF up at its deadline: it is read in a worker thread, which is ended then', async () => {
    const pdf = minimalPdf('Hello (PDF) text');
    // A deadline already passed when the worker starts: no text, though the file has some (above).
    expect(await extractText('application/pdf', pdf, 0)).toBeNull();
    // The file given to the worker is a copy: the caller's bytes are whole after it (pdf.js detaches what it reads).
    expect(pdf.byteLength).toBeGreaterThan(0);
    expect(await extractText('application/pdf', pdf)).toBe('Hello (PDF) text');
  });

  it('reads many PDFs sent at once, a few at a time, each with its own text', async () => {
    const texts = Array.from({ length: 6 }, (_, i) => `File number ${i}`);
    expect(await Promise.all(texts.map((t) => extractText('application/pdf', minimalPdf(t))))).toEqual(texts);
  });
});
