import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { MockUpstream } from './index.js';
import { ANTHROPIC_AUTH, OPENAI_AUTH, json, parseSse, postJson, readFully, startMock } from './test-support.js';

let mock: MockUpstream;
beforeAll(async () => {
  mock = await startMock();
});
afterAll(async () => {
  await mock.close();
});

const weather = { type: 'function', function: { name: 'get_weather', description: 'Weather in a city', parameters: { type: 'object', properties: { city: { type: 'string' } } } } };
const clock = { type: 'function', function: { name: 'get_time', parameters: { type: 'object', properties: {} } } };

async function openai(body: Record<string, unknown>): Promise<Response> {
  return postJson(`${mock.url}/v1/chat/completions`, { model: 'gpt-test', messages: [{ role: 'user', content: 'Weather in Paris?' }], ...body }, OPENAI_AUTH);
}

async function anthropic(body: Record<string, unknown>): Promise<Response> {
  return postJson(`${mock.url}/v1/messages`, { model: 'claude-test', max_tokens: 256, messages: [{ role: 'user', content: 'Weather in Paris?' }], ...body }, ANTHROPIC_AUTH);
}

type Chunk = { choices: { delta: { content?: string | null; tool_calls?: { index: number; id?: string; type?: string; function: { name?: string; arguments?: string } }[] }; finish_reason: string | null }[] };

async function openaiChunks(body: Record<string, unknown>): Promise<Chunk[]> {
  const res = await openai({ stream: true, ...body });
  expect(res.status).toBe(200);
  const { text } = await readFully(res);
  return parseSse(text)
    .filter((e) => e.data !== '[DONE]')
    .map((e) => json<Chunk>(e.data));
}

describe('function calling, OpenAI wire form', () => {
  it('streams a call of the first offered function in pieces: id, type and name first, then the arguments', async () => {
    const chunks = await openaiChunks({ tools: [weather, clock] });
    const pieces = chunks.flatMap((c) => c.choices.flatMap((ch) => ch.delta.tool_calls ?? []));
    expect(pieces[0]).toMatchObject({ index: 0, type: 'function', function: { name: 'get_weather', arguments: '' } });
    expect(pieces[0]?.id).toMatch(/^call_/);
    const args = pieces.map((p) => p.function.arguments ?? '');
    expect(args.filter((a) => a !== '').length).toBeGreaterThan(1);
    expect(JSON.parse(args.join(''))).toEqual({ question: 'Weather in Paris?', call: 0 });
    expect(chunks.flatMap((c) => c.choices.map((ch) => ch.finish_reason)).filter(Boolean)).toEqual(['tool_calls']);
  });

  it('calls the function the tool fault names, as many times as toolCalls says, with increasing indexes', async () => {
    const chunks = await openaiChunks({ tools: [weather, clock], messages: [{ role: 'user', content: 'now [[mock tool=get_time,toolCalls=2]]' }] });
    const firsts = chunks.flatMap((c) => c.choices.flatMap((ch) => ch.delta.tool_calls ?? [])).filter((p) => p.id !== undefined);
    expect(firsts.map((p) => [p.index, p.function.name])).toEqual([[0, 'get_time'], [1, 'get_time']]);
  });

  it('answers blocking with tool_calls and null content; tool=none answers with text', async () => {
    const body = (await (await openai({ tools: [weather] })).json()) as { choices: { message: { content: string | null; tool_calls: unknown[] }; finish_reason: string }[] };
    expect(body.choices[0]?.message.content).toBeNull();
    expect(body.choices[0]?.message.tool_calls).toEqual([{ id: expect.stringMatching(/^call_/) as unknown, type: 'function', function: { name: 'get_weather', arguments: '{"question":"Weather in Paris?","call":0}' } }]);
    expect(body.choices[0]?.finish_reason).toBe('tool_calls');
    const text = (await (await openai({ tools: [weather], messages: [{ role: 'user', content: 'hi [[mock tool=none]]' }] })).json()) as { choices: { message: { content: string; tool_calls?: unknown }; finish_reason: string }[] };
    expect(text.choices[0]?.message.content).toContain('Simulated answer to: hi');
    expect(text.choices[0]?.message.tool_calls).toBeUndefined();
    expect(text.choices[0]?.finish_reason).toBe('stop');
  });

  it('echoes the tool results the request ends with, and refuses a tool message that answers no call', async () => {
    const history = [
      { role: 'user', content: 'Weather in Paris?' },
      { role: 'assistant', content: null, tool_calls: [{ id: 'call_1', type: 'function', function: { name: 'get_weather', arguments: '{"city":"Paris"}' } }] },
      { role: 'tool', tool_call_id: 'call_1', content: '21 °C' },
    ];
    const chunks = await openaiChunks({ tools: [weather], messages: history });
    expect(chunks.map((c) => c.choices[0]?.delta.content ?? '').join('')).toBe('Tool results: call_1 → 21 °C');
    const orphan = await openai({ messages: [{ role: 'user', content: 'x' }, { role: 'tool', tool_call_id: 'call_9', content: 'y' }] });
    expect(orphan.status).toBe(400);
    expect(((await orphan.json()) as { error: { message: string } }).error.message).toContain("role 'tool' must be a response");
  });
});

type AnthropicEvent = { name: string | undefined; data: Record<string, unknown> };

describe('function calling, Anthropic wire form', () => {
  const tool = { name: 'get_weather', description: 'Weather in a city', input_schema: { type: 'object', properties: { city: { type: 'string' } } } };

  it('streams a tool_use block with its input as input_json_delta pieces and stops for tool_use', async () => {
    const res = await anthropic({ stream: true, tools: [tool] });
    expect(res.status).toBe(200);
    const events: AnthropicEvent[] = parseSse((await readFully(res)).text).map((e) => ({ name: e.event, data: json(e.data) }));
    const start = events.find((e) => e.name === 'content_block_start' && (e.data.content_block as { type: string }).type === 'tool_use');
    expect(start?.data.content_block).toMatchObject({ type: 'tool_use', name: 'get_weather', input: {} });
    const index = start?.data.index;
    const partial = events
      .filter((e) => e.name === 'content_block_delta' && e.data.index === index)
      .map((e) => e.data.delta as { type: string; partial_json: string });
    expect(partial.length).toBeGreaterThan(1);
    expect(partial.every((d) => d.type === 'input_json_delta')).toBe(true);
    expect(JSON.parse(partial.map((d) => d.partial_json).join(''))).toEqual({ question: 'Weather in Paris?', call: 0 });
    expect(events.filter((e) => e.name === 'content_block_stop').map((e) => e.data.index)).toContain(index);
    expect((events.find((e) => e.name === 'message_delta')?.data.delta as { stop_reason: string }).stop_reason).toBe('tool_use');
  });

  it('answers blocking with a tool_use block whose input is an object', async () => {
    const body = (await (await anthropic({ tools: [tool] })).json()) as { content: { type: string; input?: unknown }[]; stop_reason: string };
    expect(body.content.find((b) => b.type === 'tool_use')).toMatchObject({ name: 'get_weather', input: { question: 'Weather in Paris?', call: 0 } });
    expect(body.stop_reason).toBe('tool_use');
  });

  it('echoes tool_result blocks and refuses what Anthropic refuses', async () => {
    const history = [
      { role: 'user', content: 'Weather in Paris?' },
      { role: 'assistant', content: [{ type: 'tool_use', id: 'toolu_1', name: 'get_weather', input: { city: 'Paris' } }] },
      { role: 'user', content: [{ type: 'tool_result', tool_use_id: 'toolu_1', content: '21 °C' }] },
    ];
    const echo = (await (await anthropic({ tools: [tool], messages: history })).json()) as { content: { type: string; text?: string }[] };
    expect(echo.content[0]?.text).toBe('Tool results: toolu_1 → 21 °C');
    const refusals: [Record<string, unknown>, string][] = [
      [{ tools: [{ name: 'get_weather', parameters: {} }] }, 'input_schema'],
      [{ tools: [tool], tool_choice: { type: 'required' } }, 'tool_choice'],
      [{ messages: [{ role: 'user', content: 'x' }, { role: 'tool', content: 'y' }] }, 'role'],
      [{ messages: [history[0], history[1], { role: 'user', content: 'no result' }] }, 'without `tool_result`'],
      [{ messages: [history[0], { role: 'user', content: [{ type: 'tool_result', tool_use_id: 'toolu_9', content: 'y' }] }] }, 'tool_use_id'],
    ];
    for (const [body, words] of refusals) {
      const res = await anthropic(body);
      expect(res.status, words).toBe(400);
      expect(JSON.stringify(await res.json()), words).toContain(words);
    }
  });
});
