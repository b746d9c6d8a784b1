import { createHash } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { anthropicBlockNotes, difyFileNotes, multipartFile, openAIPartNotes, withNotes } from './attachments.js';

const bytes = Buffer.from('%PDF-1.4 not much of a pdf');
const sha = createHash('sha256').update(bytes).digest('hex');

describe('what the mock says it received', () => {
  it('decodes OpenAI-style data URLs and names other links', () => {
    const notes = openAIPartNotes([
      { type: 'text', text: 'hi' },
      { type: 'image_url', image_url: { url: `data:image/png;base64,${bytes.toString('base64')}` } },
      { type: 'image_url', image_url: { url: 'https://example.com/a.png' } },
      { type: 'file_url', name: 'a.pdf', url: 'https://example.com/a.pdf' },
    ]);
    expect(notes).toEqual([`image image/png ${bytes.length} bytes sha256 ${sha}`, 'image url https://example.com/a.png', 'file url https://example.com/a.pdf']);
    expect(withNotes('the question', notes.slice(0, 1))).toBe(`the question [received image image/png ${bytes.length} bytes sha256 ${sha}]`);
    expect(withNotes('the question', [])).toBe('the question');
  });

  it('reads Anthropic image and document blocks of each source type', () => {
    const notes = anthropicBlockNotes([
      { type: 'document', source: { type: 'base64', media_type: 'application/pdf', data: bytes.toString('base64') } },
      { type: 'document', source: { type: 'text', media_type: 'text/plain', data: 'Meeting   notes\nline two' } },
      { type: 'image', source: { type: 'url', url: 'https://example.com/b.png' } },
    ]);
    expect(notes).toEqual([`document application/pdf ${bytes.length} bytes sha256 ${sha}`, 'document text/plain text "Meeting notes line two"', 'image url https://example.com/b.png']);
  });

  it('takes a file out of a multipart upload and finds it again by its Dify upload id', () => {
    const boundary = '----mockboundary';
    const body = Buffer.concat([
      Buffer.from(`--${boundary}\r\nContent-Disposition: form-data; name="user"\r\n\r\nu1\r\n--${boundary}\r\nContent-Disposition: form-data; name="file"; filename="plan.pdf"\r\nContent-Type: application/pdf\r\n\r\n`),
      bytes,
      Buffer.from(`\r\n--${boundary}--\r\n`),
    ]);
    const file = multipartFile(body, `multipart/form-data; boundary=${boundary}`);
    expect(file && { name: file.name, mediaType: file.mediaType, same: file.bytes.equals(bytes) }).toEqual({ name: 'plan.pdf', mediaType: 'application/pdf', same: true });
    expect(multipartFile(body, 'multipart/form-data')).toBeUndefined();
    const uploads = new Map([['id-1', file!]]);
    expect(difyFileNotes([{ type: 'document', transfer_method: 'local_file', upload_file_id: 'id-1' }, { type: 'image', transfer_method: 'local_file', upload_file_id: 'nope' }], uploads)).toEqual([
      `file application/pdf ${bytes.length} bytes sha256 ${sha}`,
      'image unknown upload nope',
    ]);
  });
});
