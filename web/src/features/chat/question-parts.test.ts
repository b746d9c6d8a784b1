import { describe, expect, it } from 'vitest';
import { contentOf, parseQuestion, questionContent, storedForm } from './question-parts';

const IMAGE = '/api/attachments/0b6b3e4e-6d43-4a43-9b55-1d7f7d0c9a10';
const FILE = '/api/attachments/7c1f2a9e-2b1e-4d5e-8f9a-3b2c1d0e9f87';

describe('a question with attachments', () => {
  it('is sent as parts (text first) and stored as their JSON, which reads back as the same text and attachments', () => {
    const content = questionContent('look at these', [{ url: IMAGE, name: 'cat.png', kind: 'image' }, { url: FILE, name: 'report.pdf', kind: 'file' }]);
    expect(content).toEqual([{ type: 'text', text: 'look at these' }, { type: 'image_url', image_url: { url: IMAGE } }, { type: 'file_url', name: 'report.pdf', url: FILE }]);
    const back = parseQuestion(storedForm(content));
    expect(back.text).toBe('look at these');
    expect(back.attachments.map((a) => [a.kind, a.url])).toEqual([['image', IMAGE], ['file', FILE]]);
    expect(contentOf(storedForm(content))).toEqual(content);
  });

  it('without attachments stays plain text, and text that only looks like JSON stays text', () => {
    expect(questionContent('just text', [])).toBe('just text');
    for (const stored of ['[1, 2, 3]', '[{"not": "a part"}]', '[{ broken', 'plain']) {
      expect(parseQuestion(stored)).toEqual({ text: stored, attachments: [] });
      expect(contentOf(stored)).toBe(stored);
    }
  });

  it('may carry attachments and no text', () => {
    expect(questionContent('  ', [{ url: IMAGE, name: 'cat.png', kind: 'image' }])).toEqual([{ type: 'image_url', image_url: { url: IMAGE } }]);
  });
});
