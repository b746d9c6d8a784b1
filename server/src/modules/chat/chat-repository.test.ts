import { describe, expect, it } from 'vitest';
import { markSnippet } from './chat-repository.js';

describe('markSnippet', () => {
  it('escapes markup from answers and marks full-text matches', () => {
    expect(markSnippet('say <b>\u0002zebra\u0003</b> & go', 'zebra')).toBe('say &lt;b&gt;<mark>zebra</mark>&lt;/b&gt; &amp; go');
  });

  it('marks every occurrence of the needle when the database did not', () => {
    expect(markSnippet('今天天气好，天气真好 <script>', '天气')).toBe('今天<mark>天气</mark>好，<mark>天气</mark>真好 &lt;script&gt;');
    expect(markSnippet('Zebra zebra', 'zebra')).toBe('<mark>Zebra</mark> <mark>zebra</mark>');
  });
});
