import { describe, expect, it } from 'vitest';
import { parseEventId, SseParser } from './sse';

describe('SseParser', () => {
  const stream = 'id: a:1\nevent: start\ndata: {"x":1}\n\n: ping\n\nid: a:2\nevent: chunk\ndata: {"content":"hi"}\n\n';

  it('parses whole frames and drops comments', () => {
    expect(new SseParser().feed(stream)).toEqual([
      { id: 'a:1', event: 'start', data: '{"x":1}' },
      { id: 'a:2', event: 'chunk', data: '{"content":"hi"}' },
    ]);
  });

  it('gives the same events whatever way the text is split', () => {
    for (let cut = 1; cut < stream.length; cut++) {
      const p = new SseParser();
      const events = [...p.feed(stream.slice(0, cut)), ...p.feed(stream.slice(cut))];
      expect(events.map((e) => e.id), `cut at ${cut}`).toEqual(['a:1', 'a:2']);
    }
  });

  it('handles CRLF split between reads, multi-line data and the default event name', () => {
    const p = new SseParser();
    const events = [...p.feed('data: one\r'), ...p.feed('\ndata: two\r\n\r\n')];
    expect(events).toEqual([{ id: undefined, event: 'message', data: 'one\ntwo' }]);
  });
});

describe('parseEventId', () => {
  it('reads <messageId>:<n> and nothing else', () => {
    expect(parseEventId('3F1E2B9A-0000-4000-8000-000000000000:12')).toEqual({ messageId: '3f1e2b9a-0000-4000-8000-000000000000', n: 12 });
    expect(parseEventId('init:1')).toBeUndefined();
    expect(parseEventId(undefined)).toBeUndefined();
  });
});
