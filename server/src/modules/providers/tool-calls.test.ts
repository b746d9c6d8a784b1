import { describe, expect, it } from 'vitest';
import { collect, never, textOf, useAdapterOnMock } from '../../test/providers.js';
import { AnthropicAdapter, toAnthropicMessages } from './anthropic-adapter.js';
import { OpenAIAdapter } from './openai-adapter.js';
import { OpenAIToolCallPieces, addToolCallPiece, anthropicToolChoice } from './tool-calls.js';
import type { ChatMessage, ProviderEvent, ToolCall, ToolDefinition } from './types.js';

const openai = useAdapterOnMock((http) => new OpenAIAdapter(http), (url) => ({ id: 'ep-openai', provider: 'openai', url: `${url}/v1/chat/completions`, apiKey: 'sk-test', appId: undefined, model: 'gpt-test' }));
const anthropic = useAdapterOnMock((http) => new AnthropicAdapter(http), (url) => ({ id: 'ep-anthropic', provider: 'anthropic', url, apiKey: 'sk-ant-test', appId: undefined, model: 'claude-test' }));

const weather: ToolDefinition = { type: 'function', function: { name: 'get_weather', description: 'Weather in a city', parameters: { type: 'object', properties: { city: { type: 'string' } }, required: ['city'] } } };
const clock: ToolDefinition = { type: 'function', function: { name: 'get_time' } };

/** The calls of a streamed answer, joined from their pieces as a Generation joins them. */
function callsOf(events: ProviderEvent[]): ToolCall[] {
  const calls: ToolCall[] = [];
  for (const e of events) if (e.type === 'toolCall') addToolCallPiece(calls, e);
  return calls;
}

/** A finished exchange: the question, the model's call, the tool's result. */
const history: ChatMessage[] = [
  { role: 'user', content: 'Weather in Paris?' },
  { role: 'assistant', content: '', toolCalls: [{ id: 'call_1', type: 'function', function: { name: 'get_weather', arguments: '{"city":"Paris"}' } }] },
  { role: 'tool', content: '21 °C', toolCallId: 'call_1' },
];

describe('function calling through the OpenAI adapter', () => {
  it('passes tools, tool_choice and parallel_tool_calls unchanged and joins the streamed call from its pieces', async () => {
    const events = await collect(openai.fx.adapter, openai.request('Weather in Paris?', { tools: [weather, clock], toolChoice: 'auto', parallelToolCalls: false }));
    expect(openai.lastBody()).toMatchObject({ tools: [weather, clock], tool_choice: 'auto', parallel_tool_calls: false });
    expect(events.filter((e) => e.type === 'toolCall').length).toBeGreaterThan(2);
    const calls = callsOf(events);
    expect(calls).toEqual([{ id: expect.stringMatching(/^call_/) as unknown, type: 'function', function: { name: 'get_weather', arguments: '{"question":"Weather in Paris?","call":0}' } }]);
    expect(textOf(events)).toBe('');
    expect(events.at(-1)).toEqual({ type: 'done', finishReason: 'tool_calls', sawDone: true });
  });

  it('keeps parallel calls apart by index', async () => {
    const events = await collect(openai.fx.adapter, openai.request('now [[mock tool=get_time,toolCalls=2]]', { tools: [weather, clock] }));
    expect(callsOf(events).map((c) => [c.function.name, JSON.parse(c.function.arguments) as unknown])).toEqual([
      ['get_time', { question: 'now', call: 0 }],
      ['get_time', { question: 'now', call: 1 }],
    ]);
  });

  it('sends an assistant\'s calls (content null) and the tool\'s result in OpenAI\'s wire form', async () => {
    const events = await collect(openai.fx.adapter, openai.request('', { messages: history, tools: [weather] }));
    expect(openai.lastBody().messages).toEqual([
      { role: 'user', content: 'Weather in Paris?' },
      { role: 'assistant', content: null, tool_calls: history[1]?.toolCalls },
      { role: 'tool', tool_call_id: 'call_1', content: '21 °C' },
    ]);
    // The mock echoes the results that reached it.
    expect(textOf(events)).toBe('Tool results: call_1 → 21 °C');
  });

  it('numbers calls sent whole without an index (some compatible servers) one after another', () => {
    const pieces = new OpenAIToolCallPieces();
    const calls: ToolCall[] = [];
    for (const delta of [
      [{ id: 'a', function: { name: 'get_time', arguments: '{}' } }],
      [{ id: 'b', function: { name: 'get_weather', arguments: '{"city"' } }],
      [{ function: { arguments: ':"Rome"}' } }],
    ]) {
      for (const e of pieces.read(delta)) if (e.type === 'toolCall') addToolCallPiece(calls, e);
    }
    expect(calls.map((c) => [c.id, c.function.name, c.function.arguments])).toEqual([
      ['a', 'get_time', '{}'],
      ['b', 'get_weather', '{"city":"Rome"}'],
    ]);
  });

  it('reads a blocking answer\'s tool_calls', async () => {
    const result = await openai.fx.adapter.complete(openai.request('Weather in Paris?', { tools: [weather] }), never);
    expect(result.toolCalls).toEqual([{ id: expect.stringMatching(/^call_/) as unknown, type: 'function', function: { name: 'get_weather', arguments: '{"question":"Weather in Paris?","call":0}' } }]);
    expect(result.text).toBe('');
    expect(result.finishReason).toBe('tool_calls');
  });
});

describe('function calling through the Anthropic adapter', () => {
  it('offers the tools with input_schema and turns tool_use blocks and input_json_delta into call pieces', async () => {
    const events = await collect(anthropic.fx.adapter, anthropic.request('Weather in Paris?', { tools: [weather, clock], toolChoice: 'required' }));
    expect(anthropic.lastBody().tools).toEqual([
      { name: 'get_weather', description: 'Weather in a city', input_schema: weather.function.parameters },
      { name: 'get_time', input_schema: { type: 'object', properties: {} } },
    ]);
    expect(anthropic.lastBody().tool_choice).toEqual({ type: 'any' });
    expect(events.filter((e) => e.type === 'toolCall').length).toBeGreaterThan(2);
    expect(callsOf(events)).toEqual([{ id: expect.stringMatching(/^toolu_/) as unknown, type: 'function', function: { name: 'get_weather', arguments: '{"question":"Weather in Paris?","call":0}' } }]);
    expect(events.at(-1)).toEqual({ type: 'done', finishReason: 'tool_use', sawDone: true });
  });

  it('numbers parallel tool_use blocks 0, 1 whatever their block index', async () => {
    const events = await collect(anthropic.fx.adapter, anthropic.request('now [[mock tool=get_time,toolCalls=2]]', { tools: [clock] }));
    expect(events.filter((e) => e.type === 'toolCall' && e.id !== undefined).map((e) => (e.type === 'toolCall' ? e.index : -1))).toEqual([0, 1]);
    expect(callsOf(events).map((c) => JSON.parse(c.function.arguments) as unknown)).toEqual([{ question: 'now', call: 0 }, { question: 'now', call: 1 }]);
  });

  it('sends an assistant\'s calls as tool_use blocks and the results of parallel calls in one user message', async () => {
    const parallel: ChatMessage[] = [
      { role: 'user', content: 'Weather in Paris and Rome?' },
      {
        role: 'assistant',
        content: 'Looking both up.',
        toolCalls: [
          { id: 'toolu_a', type: 'function', function: { name: 'get_weather', arguments: '{"city":"Paris"}' } },
          { id: 'toolu_b', type: 'function', function: { name: 'get_weather', arguments: 'not json' } },
        ],
      },
      { role: 'tool', content: '21 °C', toolCallId: 'toolu_a' },
      { role: 'tool', content: [{ type: 'text', text: '25 °C' }], toolCallId: 'toolu_b' },
    ];
    const events = await collect(anthropic.fx.adapter, anthropic.request('', { messages: parallel, tools: [weather] }));
    expect(anthropic.lastBody().messages).toEqual([
      { role: 'user', content: 'Weather in Paris and Rome?' },
      {
        role: 'assistant',
        content: [
          { type: 'text', text: 'Looking both up.' },
          { type: 'tool_use', id: 'toolu_a', name: 'get_weather', input: { city: 'Paris' } },
          // Arguments that are not a JSON object go as an empty input rather than failing the turn.
          { type: 'tool_use', id: 'toolu_b', name: 'get_weather', input: {} },
        ],
      },
      {
        role: 'user',
        content: [
          { type: 'tool_result', tool_use_id: 'toolu_a', content: '21 °C' },
          { type: 'tool_result', tool_use_id: 'toolu_b', content: '25 °C' },
        ],
      },
    ]);
    expect(textOf(events)).toBe('Tool results: toolu_a → 21 °C; toolu_b → 25 °C');
  });

  it('reads a blocking answer\'s tool_use blocks as calls with JSON arguments', async () => {
    const result = await anthropic.fx.adapter.complete(anthropic.request('Weather in Paris?', { tools: [weather] }), never);
    expect(result.toolCalls).toEqual([{ id: expect.stringMatching(/^toolu_/) as unknown, type: 'function', function: { name: 'get_weather', arguments: '{"question":"Weather in Paris?","call":0}' } }]);
    expect(result.finishReason).toBe('tool_use');
  });

  it('maps tool_choice and parallel_tool_calls to Anthropic\'s words', () => {
    expect(anthropicToolChoice(undefined, undefined)).toBeUndefined();
    expect(anthropicToolChoice('auto', undefined)).toEqual({ type: 'auto' });
    expect(anthropicToolChoice('required', undefined)).toEqual({ type: 'any' });
    expect(anthropicToolChoice('none', false)).toEqual({ type: 'none' });
    expect(anthropicToolChoice({ type: 'function', function: { name: 'get_time' } }, undefined)).toEqual({ type: 'tool', name: 'get_time' });
    expect(anthropicToolChoice(undefined, false)).toEqual({ type: 'auto', disable_parallel_tool_use: true });
    expect(anthropicToolChoice('required', false)).toEqual({ type: 'any', disable_parallel_tool_use: true });
  });

  it('leaves messages without function calling as they were', () => {
    expect(toAnthropicMessages([{ role: 'user', content: 'hi' }, { role: 'assistant', content: 'hello' }], undefined).messages).toEqual([
      { role: 'user', content: 'hi' },
      { role: 'assistant', content: 'hello' },
    ]);
  });
});
