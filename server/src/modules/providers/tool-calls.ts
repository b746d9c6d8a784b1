import type { ChatMessage, ProviderEvent, ToolCall, ToolChoice, ToolDefinition } from './types.js';

/**
 * Function calling on the wire. The platform keeps tools, tool choices and
 * calls in OpenAI's form, so OpenAI-compatible endpoints get them unchanged;
 * this file spells them in Anthropic's Messages API and reads both
 * providers' answers back into `toolCall` events.
 */

/** The providers whose APIs have function calling; FastGPT and Dify run their own tools inside their apps. */
export function providerCallsTools(provider: string): boolean {
  return provider === 'openai' || provider === 'anthropic';
}

/** A message that is part of a function-calling exchange (an assistant's calls, or a tool's result). */
export function isToolMessage(m: Pick<ChatMessage, 'role' | 'toolCalls'>): boolean {
  return m.role === 'tool' || (m.toolCalls !== undefined && m.toolCalls.length > 0);
}

// ---- OpenAI ----

/** One message in OpenAI's wire form with its tool fields: `tool_calls` (content null when there is none), `tool_call_id`. */
export function openAIToolMessage(m: ChatMessage, content: unknown): Record<string, unknown> {
  if (m.role === 'tool') return { role: 'tool', tool_call_id: m.toolCallId, content };
  if (m.toolCalls && m.toolCalls.length > 0) return { role: m.role, content: content === '' ? null : content, tool_calls: m.toolCalls };
  return { role: m.role, content };
}

/** One entry of a streamed chunk's `delta.tool_calls`. */
export interface OpenAIToolCallDelta {
  index?: unknown;
  id?: unknown;
  function?: { name?: unknown; arguments?: unknown } | null;
}

/**
 * Reads the `delta.tool_calls` of one stream's chunks as events. A piece
 * without an `index` (some OpenAI-compatible servers send each call whole,
 * without one) opens a new call when it has an id, else continues the last.
 */
export class OpenAIToolCallPieces {
  private calls = 0;

  read(deltas: readonly OpenAIToolCallDelta[]): ProviderEvent[] {
    const events: ProviderEvent[] = [];
    for (const d of deltas) {
      const id = typeof d.id === 'string' && d.id !== '' ? d.id : undefined;
      const name = typeof d.function?.name === 'string' && d.function.name !== '' ? d.function.name : undefined;
      const args = typeof d.function?.arguments === 'string' ? d.function.arguments : '';
      if (id === undefined && name === undefined && args === '') continue;
      const index = typeof d.index === 'number' && Number.isInteger(d.index) && d.index >= 0 ? d.index : id !== undefined ? this.calls : Math.max(0, this.calls - 1);
      this.calls = Math.max(this.calls, index + 1);
      events.push({ type: 'toolCall', index, id, name, arguments: args });
    }
    return events;
  }
}

/** A blocking answer's `message.tool_calls`, the well-formed ones. */
export function toolCallsOfMessage(value: unknown): ToolCall[] | undefined {
  if (!Array.isArray(value)) return undefined;
  const calls: ToolCall[] = [];
  for (const c of value as { id?: unknown; function?: { name?: unknown; arguments?: unknown } }[]) {
    if (typeof c?.id !== 'string' || typeof c.function?.name !== 'string') continue;
    calls.push({ id: c.id, type: 'function', function: { name: c.function.name, arguments: typeof c.function.arguments === 'string' ? c.function.arguments : '' } });
  }
  return calls.length > 0 ? calls : undefined;
}

/** Joins `toolCall` pieces into whole calls, by index (a Generation's and a test's view of a streamed answer). */
export function addToolCallPiece(calls: ToolCall[], piece: Extract<ProviderEvent, { type: 'toolCall' }>): void {
  let call = calls[piece.index];
  if (call === undefined) {
    call = { id: '', type: 'function', function: { name: '', arguments: '' } };
    calls[piece.index] = call;
  }
  if (piece.id !== undefined) call.id = piece.id;
  if (piece.name !== undefined) call.function.name += piece.name;
  call.function.arguments += piece.arguments;
}

// ---- Anthropic ----

/** OpenAI tools as Anthropic's: `parameters` become `input_schema` (an object schema is required there). */
export function anthropicTools(tools: readonly ToolDefinition[]): Record<string, unknown>[] {
  return tools.map((t) => ({
    name: t.function.name,
    ...(t.function.description === undefined ? {} : { description: t.function.description }),
    input_schema: t.function.parameters ?? { type: 'object', properties: {} },
  }));
}

/**
 * OpenAI's tool_choice in Anthropic's words: auto → auto, required → any, a
 * named function → tool, none → none. `parallel_tool_calls: false` is
 * Anthropic's `disable_parallel_tool_use` (which needs a choice: auto).
 */
export function anthropicToolChoice(choice: ToolChoice | undefined, parallel: boolean | undefined): Record<string, unknown> | undefined {
  let out: Record<string, unknown> | undefined;
  if (choice === 'auto') out = { type: 'auto' };
  else if (choice === 'required') out = { type: 'any' };
  else if (choice === 'none') out = { type: 'none' };
  else if (choice !== undefined) out = { type: 'tool', name: choice.function.name };
  if (parallel === false && out?.type !== 'none') out = { ...(out ?? { type: 'auto' }), disable_parallel_tool_use: true };
  return out;
}

/**
 * A call's arguments as Anthropic's `input`, which must be an object.
 * Arguments that are not a JSON object (a model can write broken JSON, and
 * SDK loops send it back) go as `{}` rather than failing the whole turn.
 */
function inputOf(args: string): Record<string, unknown> {
  try {
    const parsed: unknown = JSON.parse(args);
    return typeof parsed === 'object' && parsed !== null && !Array.isArray(parsed) ? (parsed as Record<string, unknown>) : {};
  } catch {
    return {};
  }
}

/** An assistant message's calls as `tool_use` blocks, after its text if any. */
export function anthropicToolUseBlocks(calls: readonly ToolCall[]): Record<string, unknown>[] {
  return calls.map((c) => ({ type: 'tool_use', id: c.id, name: c.function.name, input: inputOf(c.function.arguments) }));
}

/** A tool message as the `tool_result` block of a user message. */
export function anthropicToolResult(m: ChatMessage, text: string): Record<string, unknown> {
  return { type: 'tool_result', tool_use_id: m.toolCallId ?? '', content: text };
}

/**
 * Reads tool_use blocks out of an Anthropic stream: `content_block_start`
 * with a `tool_use` block opens call N (the Nth tool_use block of the
 * answer), its `input_json_delta`s are call N's arguments.
 */
export class AnthropicToolBlocks {
  /** Anthropic block index → call index. */
  private readonly calls = new Map<number, number>();

  /** A `content_block_start`: the call's first piece when the block is a tool_use. */
  start(blockIndex: unknown, block: { type?: unknown; id?: unknown; name?: unknown } | null | undefined): ProviderEvent | undefined {
    if (block?.type !== 'tool_use' || typeof blockIndex !== 'number') return undefined;
    const index = this.calls.size;
    this.calls.set(blockIndex, index);
    return { type: 'toolCall', index, id: typeof block.id === 'string' ? block.id : undefined, name: typeof block.name === 'string' ? block.name : undefined, arguments: '' };
  }

  /** An `input_json_delta` of an open tool_use block. */
  delta(blockIndex: unknown, partialJson: unknown): ProviderEvent | undefined {
    const index = typeof blockIndex === 'number' ? this.calls.get(blockIndex) : undefined;
    if (index === undefined || typeof partialJson !== 'string' || partialJson === '') return undefined;
    return { type: 'toolCall', index, arguments: partialJson };
  }
}

/** A blocking answer's tool_use blocks as calls. */
export function toolCallsOfAnthropic(blocks: readonly { type?: string; id?: unknown; name?: unknown; input?: unknown }[]): ToolCall[] | undefined {
  const calls: ToolCall[] = [];
  for (const b of blocks) {
    if (b.type !== 'tool_use' || typeof b.id !== 'string' || typeof b.name !== 'string') continue;
    calls.push({ id: b.id, type: 'function', function: { name: b.name, arguments: JSON.stringify(b.input ?? {}) } });
  }
  return calls.length > 0 ? calls : undefined;
}
