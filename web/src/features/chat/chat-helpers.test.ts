import { describe, expect, it } from 'vitest';
import { dateGroup, groupByDate } from './date-groups';
import { parseSnippet } from './snippet';
import { applyEvent, toTurnEvent, type UiMessage } from './turn-events';

describe('dateGroup', () => {
  const now = new Date(2026, 10, 22, 10, 0, 0);
  const at = (d: number, h = 12) => new Date(2026, 10, d, h).toISOString();
  it('puts dates in calendar-day groups', () => {
    expect(dateGroup(at(22, 1), now)).toBe('today');
    expect(dateGroup(at(21, 23), now)).toBe('yesterday');
    expect(dateGroup(at(16), now)).toBe('previous7');
    expect(dateGroup(at(1), now)).toBe('previous30');
    expect(dateGroup(new Date(2026, 5, 1).toISOString(), now)).toBe('older');
  });
  it('orders groups and items newest first and leaves empty groups out', () => {
    const groups = groupByDate([{ updatedAt: at(1) }, { updatedAt: at(22, 2) }, { updatedAt: at(22, 5) }], now);
    expect(groups.map((g) => g.group)).toEqual(['today', 'previous30']);
    expect(groups[0]?.items.map((i) => i.updatedAt)).toEqual([at(22, 5), at(22, 2)]);
  });
});

describe('parseSnippet', () => {
  it('splits marks into parts and unescapes text, so markup in answers stays text', () => {
    expect(parseSnippet('a &lt;b&gt; <mark>needle</mark> &amp; <mark>x</mark>')).toEqual([
      { text: 'a <b> ', match: false },
      { text: 'needle', match: true },
      { text: ' & ', match: false },
      { text: 'x', match: true },
    ]);
  });
  it('keeps a snippet without marks whole', () => {
    expect(parseSnippet('&lt;script&gt;alert(1)&lt;/script&gt;')).toEqual([{ text: '<script>alert(1)</script>', match: false }]);
  });
});

describe('applyEvent', () => {
  const base: UiMessage = { id: 'p', role: 'assistant', content: 'partial stored', reasoning: 'r', status: 'streaming', error: null, feedback: null, interactive: null, flow: null, createdAt: '' };
  it('rebuilds a resumed answer from the replay instead of appending to the stored text', () => {
    let m: UiMessage = { ...base, replay: true };
    m = applyEvent(m, { type: 'start', messageId: 'm1', userMessageId: undefined, sessionId: 's' });
    m = applyEvent(m, { type: 'chunk', content: 'partial ' });
    m = applyEvent(m, { type: 'chunk', content: 'stored and more' });
    m = applyEvent(m, { type: 'end', status: 'complete', messageId: 'm1', sessionId: 's' });
    expect(m).toMatchObject({ id: 'm1', content: 'partial stored and more', reasoning: '', status: 'complete', replay: false });
  });
  it('keeps reasoning, flow status and errors apart from the text', () => {
    let m = applyEvent({ ...base, content: '', reasoning: '' }, { type: 'reasoning', content: 'think' });
    m = applyEvent(m, { type: 'status', status: 'running', moduleName: 'AI chat' });
    expect(m.flow).toEqual({ moduleName: 'AI chat', status: 'running' });
    m = applyEvent(m, { type: 'error', code: 'UPSTREAM_ERROR', message: 'boom' });
    m = applyEvent(m, { type: 'end', status: 'error', messageId: 'p', sessionId: 's' });
    expect(m).toMatchObject({ reasoning: 'think', content: '', error: { code: 'UPSTREAM_ERROR', message: 'boom' }, status: 'error', flow: null });
  });
  it('drops the text so far on reset: the answer starts again (failover mid-answer or a takeover)', () => {
    let m = applyEvent({ ...base, content: '', reasoning: '' }, toTurnEvent({ event: 'chunk', data: '{"content":"half an ans"}', id: 't:3' }));
    m = applyEvent(m, toTurnEvent({ event: 'reasoning', data: '{"content":"hm"}', id: 't:4' }));
    m = applyEvent(m, toTurnEvent({ event: 'reset', data: '{"reason":"takeover"}', id: 't:1000001' }));
    expect(m).toMatchObject({ content: '', reasoning: '', status: 'streaming' });
    m = applyEvent(m, toTurnEvent({ event: 'chunk', data: '{"content":"the whole answer"}', id: 't:1000002' }));
    m = applyEvent(m, toTurnEvent({ event: 'end', data: '{"status":"complete","messageId":"p","sessionId":"s"}', id: 't:1000003' }));
    expect(m).toMatchObject({ content: 'the whole answer', status: 'complete' });
  });
  it('finishes an answer that only called functions (a /v1 turn with tools): its toolCall events change nothing', () => {
    let m = applyEvent({ ...base, content: '', reasoning: '' }, toTurnEvent({ event: 'start', data: '{"messageId":"m2","sessionId":"s"}', id: 'm2:1' }));
    m = applyEvent(m, toTurnEvent({ event: 'toolCall', data: '{"index":0,"id":"call_1","name":"get_weather","arguments":""}', id: 'm2:3' }));
    m = applyEvent(m, toTurnEvent({ event: 'toolCall', data: '{"index":0,"arguments":"{}"}', id: 'm2:4' }));
    m = applyEvent(m, toTurnEvent({ event: 'end', data: '{"status":"complete","messageId":"m2","sessionId":"s","finishReason":"tool_calls"}', id: 'm2:5' }));
    expect(m).toMatchObject({ id: 'm2', content: '', reasoning: '', error: null, status: 'complete' });
  });
});
