import { Type } from '@sinclair/typebox';
import { AppError } from '../../errors.js';
import type { ChatMessage, ToolCall, ToolChoice, ToolDefinition } from '../providers/types.js';
import type { TurnInput } from './chat-service.js';
import { paramFromPath } from './openai-errors.js';
import { ChatMessageInput, LIMITS } from './schema.js';

/**
 * Function calling on `/v1/chat/completions`, in OpenAI's wire form: the
 * request's tools, tool choice, assistant calls and tool messages (their
 * schemas, and the checks a schema cannot make), and the calls of an
 * answer as OpenAI sends them back. Providers translate them
 * (providers/tool-calls.ts).
 */

export const MAX_TOOLS = 128;

const V1ToolCall = Type.Object(
  {
    id: Type.String({ minLength: 1, maxLength: 256 }),
    type: Type.Literal('function'),
    function: Type.Object({ name: Type.String({ minLength: 1, maxLength: 64 }), arguments: Type.String({ maxLength: LIMITS.messageChars }) }, { additionalProperties: false }),
    // Kept by clients that accumulate streamed calls.
    index: Type.Optional(Type.Integer({ minimum: 0, maximum: MAX_TOOLS })),
  },
  { additionalProperties: false },
);

export const V1Message = Type.Object(
  {
    // `developer` is OpenAI's newer name for `system` (o1 and later); it reaches providers as a system message.
    role: Type.Union([Type.Literal('system'), Type.Literal('developer'), Type.Literal('user'), Type.Literal('assistant'), Type.Literal('tool')]),
    // Empty only for an assistant or a tool, null or absent only for an assistant's calls (checked in turnMessages).
    content: Type.Optional(Type.Union([Type.String({ maxLength: LIMITS.messageChars }), ChatMessageInput.properties.content.anyOf[1], Type.Null()])),
    name: Type.Optional(Type.String({ maxLength: 64 })),
    tool_calls: Type.Optional(Type.Array(V1ToolCall, { maxItems: MAX_TOOLS })),
    tool_call_id: Type.Optional(Type.String({ minLength: 1, maxLength: 256 })),
    // Sent back by clients that echo the assistant message they got.
    refusal: Type.Optional(Type.Union([Type.String({ maxLength: LIMITS.messageChars }), Type.Null()])),
  },
  { additionalProperties: false },
);

export const V1Tool = Type.Object(
  {
    // Only `function` tools are supported; another type (`custom`) is refused by name in turnTools.
    type: Type.String({ maxLength: 64 }),
    function: Type.Optional(Type.Object(
      {
        name: Type.String({ pattern: '^[a-zA-Z0-9_-]{1,64}$' }),
        description: Type.Optional(Type.String({ maxLength: 8_192 })),
        parameters: Type.Optional(Type.Record(Type.String(), Type.Unknown())),
        strict: Type.Optional(Type.Union([Type.Boolean(), Type.Null()])),
      },
      { additionalProperties: false },
    )),
  },
  // Other tool types carry their own fields (`custom`): refused by type, not by an unknown field.
  { additionalProperties: true },
);

export const V1ToolChoice = Type.Union([
  Type.Literal('none'),
  Type.Literal('auto'),
  Type.Literal('required'),
  Type.Object({ type: Type.Literal('function'), function: Type.Object({ name: Type.String({ minLength: 1, maxLength: 64 }) }, { additionalProperties: false }) }, { additionalProperties: false }),
]);

export type V1Message = {
  role: 'system' | 'developer' | 'user' | 'assistant' | 'tool';
  content?: ChatMessage['content'] | null;
  tool_calls?: (ToolCall & { index?: number })[];
  tool_call_id?: string;
};

function invalid(path: string, message: string): AppError {
  return new AppError('VALIDATION_FAILED', `${paramFromPath(path) ?? path} ${message}`, [{ path, message }]);
}

/**
 * The request's messages as the turn's, checked where the schema cannot:
 * a tool message answers a call (`tool_call_id`), only an assistant makes
 * calls, and only an assistant's calls may come without content.
 */
export function turnMessages(messages: V1Message[]): ChatMessage[] {
  return messages.map((m, i) => {
    const role = m.role === 'developer' ? 'system' : m.role;
    const calls = m.tool_calls !== undefined && m.tool_calls.length > 0 ? m.tool_calls.map((c) => ({ id: c.id, type: c.type, function: c.function })) : undefined;
    if (calls && role !== 'assistant') throw invalid(`/messages/${i}/tool_calls`, 'is only allowed on an assistant message');
    if (m.tool_call_id !== undefined && role !== 'tool') throw invalid(`/messages/${i}/tool_call_id`, 'is only allowed on a tool message');
    if (role === 'tool' && m.tool_call_id === undefined) throw invalid(`/messages/${i}/tool_call_id`, 'is required on a tool message: the id of the call it answers');
    const content = m.content ?? (calls ? '' : undefined);
    if (content === undefined) throw invalid(`/messages/${i}/content`, 'is required (it may be null only on an assistant message with tool_calls)');
    if (content === '' && (role === 'user' || role === 'system')) throw invalid(`/messages/${i}/content`, 'must not be empty');
    if (calls) return { role, content, toolCalls: calls };
    if (role === 'tool') return { role, content, toolCallId: m.tool_call_id };
    return { role, content };
  });
}

/** The function-calling fields of a `/v1` request. */
export interface V1ToolFields {
  tools?: { type: string; function?: ToolDefinition['function'] }[];
  tool_choice?: ToolChoice;
  parallel_tool_calls?: boolean;
}

/** The request's tools for the turn; a tool of another type than `function`, or a tool_choice that names no offered function, is refused. */
export function turnTools(body: V1ToolFields): TurnInput['tools'] {
  const tools: ToolDefinition[] | undefined = body.tools?.map((t, i) => {
    if (t.type !== 'function') throw invalid(`/tools/${i}/type`, `'${t.type}' is not supported: only function tools are`);
    if (t.function === undefined) throw invalid(`/tools/${i}/function`, 'is required');
    return { type: 'function', function: t.function };
  });
  const choice = body.tool_choice;
  if (typeof choice === 'object' && !tools?.some((t) => t.function.name === choice.function.name)) {
    throw invalid('/tool_choice', `names the function '${choice.function.name}', which is not in tools`);
  }
  if (tools === undefined || tools.length === 0) {
    if (choice === 'required') throw invalid('/tool_choice', "is 'required' but no tools are given");
    return undefined;
  }
  return { tools, toolChoice: choice, parallelToolCalls: body.parallel_tool_calls };
}

/** A function call's piece as OpenAI streams it: id, type and name in its first piece, then arguments. */
export function toolCallDelta(piece: { index: number; id?: string; name?: string; arguments: string }): Record<string, unknown> {
  const first = piece.id !== undefined || piece.name !== undefined;
  const fn = piece.name === undefined ? { arguments: piece.arguments } : { name: piece.name, arguments: piece.arguments };
  return { tool_calls: [first ? { index: piece.index, ...(piece.id === undefined ? {} : { id: piece.id }), type: 'function', function: fn } : { index: piece.index, function: fn }] };
}

/** The assistant message of a blocking answer: content null when the answer only calls functions, as OpenAI sends it. */
export function assistantMessage(content: string, reasoning: string | null | undefined, toolCalls: ToolCall[] | undefined): Record<string, unknown> {
  return {
    role: 'assistant',
    content: toolCalls && content === '' ? null : content,
    ...(reasoning ? { reasoning_content: reasoning } : {}),
    ...(toolCalls ? { tool_calls: toolCalls } : {}),
  };
}
