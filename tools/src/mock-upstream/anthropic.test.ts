import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { MockUpstream } from './index.js';
import { ANTHROPIC_AUTH, json, parseSse, postJson, readFully, startMock } from './test-support.js';

let mock: MockUpstream;
beforeAll(async () => {
  mock = await startMock();
});
afterAll(async () => {
  await mock.close();
});

const messages = (body: Record<string, unknown>, headers: Record<string, string> = ANTHROPIC_AUTH) =>
  postJson(
    `${mock.url}/v1/messages`,
    { model: 'claude-test', max_tokens: 256, messages: [{ role: 'user', content: 'Hello' }], ...body },
    headers,
  );

interface Event {
  name: string | undefined;
  data: Record<string, unknown>;
}

async function stream(body: Record<string, unknown>): Promise<Event[]> {
  const res = await messages({ stream: true, ...body });
  expect(res.status).toBe(200);
  const { text } = await readFully(res);
  return parseSse(text).map((e) => ({ name: e.event, data: json(e.data) }));
}

const textOf = (events: Event[]): string =>
  events
    .filter((e) => e.name === 'content_block_delta')
    .map((e) => e.data.delta as { type: string; text?: string })
    .filter((d) => d.type === 'text_delta')
    .map((d) => d.text)
    .join('');

describe('anthropic messages', () => {
  it('streams the Messages API event sequence with usage', async () => {
    const events = await stream({});
    expect(events.map((e) => e.name)).toEqual([
      'message_start',
      'content_block_start',
      'ping',
      'content_block_delta',
      'content_block_delta',
      'content_block_delta',
      'content_block_delta',
      'content_block_stop',
      'message_delta',
      'message_stop',
    ]);
    for (const event of events) expect(event.data.type).toBe(event.name);
    expect(events[0]?.data.message).toMatchObject({
      type: 'message',
      role: 'assistant',
      model: 'claude-test',
      content: [],
      usage: { input_tokens: 2 },
    });
    expect(events[1]?.data).toMatchObject({ index: 0, content_block: { type: 'text', text: '' } });
    expect(events[3]?.data).toMatchObject({ index: 0, delta: { type: 'text_delta' } });
    expect(events[8]?.data).toMatchObject({ delta: { stop_reason: 'end_turn' }, usage: { output_tokens: 4 } });
    expect(textOf(events)).toMatch(/^Simulated answer to: Hello /);
  });

  it('marks answers that received a top-level system prompt (string or blocks)', async () => {
    expect(textOf(await stream({ system: 'Be terse.' }))).toMatch(/^\[system prompt received\] Simulated answer/);
    expect(textOf(await stream({ system: [{ type: 'text', text: 'Be terse.' }] }))).toMatch(/^\[system prompt received\] /);
  });

  it('streams a thinking block with thinking_delta before the text block', async () => {
    const events = await stream({ messages: [{ role: 'user', content: [{ type: 'text', text: 'Hmm [[mock reasoning=2]]' }] }] });
    const starts = events.filter((e) => e.name === 'content_block_start').map((e) => e.data);
    expect(starts).toMatchObject([
      { index: 0, content_block: { type: 'thinking' } },
      { index: 1, content_block: { type: 'text' } },
    ]);
    const deltas = events.filter((e) => e.name === 'content_block_delta').map((e) => e.data);
    expect(deltas.filter((d) => (d.delta as { type: string }).type === 'thinking_delta')).toHaveLength(2);
    expect(deltas.filter((d) => (d.delta as { type: string }).type === 'text_delta').every((d) => d.index === 1)).toBe(true);
    expect(textOf(events)).toMatch(/^Simulated answer to: Hmm /);
  });

  it('answers a blocking request with a message', async () => {
    const res = await messages({ system: 'Sys' });
    expect(res.status).toBe(200);
    const body = json(await res.text());
    expect(body).toMatchObject({
      type: 'message',
      role: 'assistant',
      model: 'claude-test',
      stop_reason: 'end_turn',
      usage: { input_tokens: 2, output_tokens: 4 },
    });
    expect(body.id).toMatch(/^msg_/);
    expect((body.content as { type: string; text: string }[])[0]?.text).toMatch(/^\[system prompt received\] Simulated/);
  });

  it('needs x-api-key and anthropic-version; bad-key gets 401 in the Anthropic error format', async () => {
    const bad = await messages({}, { ...ANTHROPIC_AUTH, 'x-api-key': 'bad-key' });
    expect(bad.status).toBe(401);
    expect(json(await bad.text())).toEqual({ type: 'error', error: { type: 'authentication_error', message: 'invalid x-api-key' } });
    const bearerOnly = await messages({}, { authorization: 'Bearer sk-x', 'anthropic-version': '2023-06-01' });
    expect(bearerOnly.status).toBe(401);
    const noVersion = await messages({}, { 'x-api-key': 'sk-x' });
    expect(noVersion.status).toBe(400);
    expect(json(await noVersion.text())).toMatchObject({ type: 'error', error: { type: 'invalid_request_error' } });
  });

  it('rejects a request without max_tokens', async () => {
    const res = await postJson(`${mock.url}/v1/messages`, { model: 'c', messages: [{ role: 'user', content: 'x' }] }, ANTHROPIC_AUTH);
    expect(res.status).toBe(400);
  });

  it('answers status faults with error.type from the status or from code', async () => {
    const overloaded = await messages({ stream: true }, { ...ANTHROPIC_AUTH, 'x-mock-fault': 'status=529' });
    expect(overloaded.status).toBe(529);
    expect(json(await overloaded.text())).toMatchObject({ type: 'error', error: { type: 'overloaded_error' } });
    const coded = await messages({}, { ...ANTHROPIC_AUTH, 'x-mock-fault': 'status=400,code=context_window_exceeded' });
    expect(json(await coded.text())).toMatchObject({ error: { type: 'context_window_exceeded' } });
  });

  it('ends without message_stop on noDone and emits an error event on errorAfter', async () => {
    const noDone = await stream({ messages: [{ role: 'user', content: 'x [[mock noDone=1]]' }] });
    expect(noDone.at(-1)?.name).toBe('message_delta');
    const errored = await stream({ messages: [{ role: 'user', content: 'x [[mock errorAfter=1 code=overloaded_error]]' }] });
    expect(errored.at(-1)).toMatchObject({ name: 'error', data: { type: 'error', error: { type: 'overloaded_error' } } });
    expect(errored.filter((e) => e.name === 'content_block_delta')).toHaveLength(1);
  });

  it('continues a prefilled answer (a trailing assistant message), and refuses one that ends in whitespace', async () => {
    const whole = textOf(await stream({}));
    const prefill = whole.slice(0, 12).trimEnd();
    const continued = await stream({ messages: [{ role: 'user', content: 'Hello' }, { role: 'assistant', content: prefill }] });
    expect(prefill + textOf(continued)).toBe(whole);
    const spaced = await messages({ stream: true, messages: [{ role: 'user', content: 'Hello' }, { role: 'assistant', content: 'Simulated ' }] });
    expect(spaced.status).toBe(400);
    const refusal = json<{ type: string; error: { type: string; message: string } }>(await spaced.text());
    expect(refusal).toMatchObject({ type: 'error', error: { type: 'invalid_request_error' } });
    expect(refusal.error.message).toContain('trailing whitespace');
  });
});
