/**
 * Function calling as each provider checks it: the tools offered, the calls
 * in the history and the results the request ends with. The checks are the
 * ones the real APIs make (a tool result must answer a call of the message
 * before it, Anthropic's tools need `input_schema`), so a test that reaches
 * the mock proves what reached the provider.
 */

import type { MockToolResult } from './answer.js';
import { ErrorReply, contentText, isRecord } from './protocol.js';

export interface ToolTurn {
  tools: string[];
  toolResults: MockToolResult[];
}

function functionNames(tools: unknown, nameOf: (tool: Record<string, unknown>, index: number) => string | ErrorReply): string[] | ErrorReply {
  if (tools === undefined) return [];
  if (!Array.isArray(tools)) return new ErrorReply(400, "'tools' must be an array");
  const names: string[] = [];
  for (const [index, tool] of tools.entries()) {
    if (!isRecord(tool)) return new ErrorReply(400, `'tools[${index}]' must be an object`);
    const name = nameOf(tool, index);
    if (name instanceof ErrorReply) return name;
    names.push(name);
  }
  return names;
}

/** OpenAI: `tools[].function`, `tool_choice`, assistant `tool_calls` and the `tool` messages answering them. */
export function openAiToolTurn(body: Record<string, unknown>): ToolTurn | ErrorReply {
  const tools = functionNames(body.tools, (tool, i) => {
    const fn = tool.function;
    if (tool.type !== 'function' || !isRecord(fn) || typeof fn.name !== 'string') return new ErrorReply(400, `Missing required parameter: 'tools[${i}].function.name'.`);
    if (fn.parameters !== undefined && !isRecord(fn.parameters)) return new ErrorReply(400, `Invalid 'tools[${i}].function.parameters': expected an object.`);
    return fn.name;
  });
  if (tools instanceof ErrorReply) return tools;
  const choice = body.tool_choice;
  if (isRecord(choice) && !(isRecord(choice.function) && typeof choice.function.name === 'string' && tools.includes(choice.function.name))) {
    return new ErrorReply(400, "Invalid value for 'tool_choice': it must name a function in 'tools'.");
  }
  const messages = Array.isArray(body.messages) ? (body.messages as unknown[]) : [];
  let open = new Set<string>();
  let toolResults: MockToolResult[] = [];
  for (const [index, m] of messages.entries()) {
    if (!isRecord(m)) continue;
    if (m.role === 'tool') {
      if (typeof m.tool_call_id !== 'string') return new ErrorReply(400, `Missing parameter 'tool_call_id': messages[${index}] with role 'tool' must have a 'tool_call_id'.`);
      if (!open.has(m.tool_call_id)) return new ErrorReply(400, "Invalid parameter: messages with role 'tool' must be a response to a preceeding message with 'tool_calls'.");
      toolResults.push({ id: m.tool_call_id, content: contentText(m.content) });
      continue;
    }
    toolResults = [];
    open = new Set();
    if (m.role === 'assistant' && m.tool_calls !== undefined) {
      if (!Array.isArray(m.tool_calls)) return new ErrorReply(400, `Invalid 'messages[${index}].tool_calls': expected an array.`);
      for (const call of m.tool_calls as unknown[]) {
        if (!isRecord(call) || typeof call.id !== 'string' || call.type !== 'function' || !isRecord(call.function) || typeof call.function.name !== 'string' || typeof call.function.arguments !== 'string') {
          return new ErrorReply(400, `Invalid 'messages[${index}].tool_calls': each needs id, type 'function' and function.name and function.arguments.`);
        }
        open.add(call.id);
      }
    }
  }
  return { tools, toolResults };
}

const ANTHROPIC_CHOICES = ['auto', 'any', 'tool', 'none'];

/** Anthropic: `tools[]` with `input_schema`, `tool_choice`, assistant `tool_use` blocks answered by the next user message's `tool_result` blocks. */
export function anthropicToolTurn(body: Record<string, unknown>): ToolTurn | ErrorReply {
  const tools = functionNames(body.tools, (tool, i) => {
    if (typeof tool.name !== 'string') return new ErrorReply(400, `tools.${i}.name: Field required`);
    if (!isRecord(tool.input_schema)) return new ErrorReply(400, `tools.${i}.input_schema: Field required`);
    return tool.name;
  });
  if (tools instanceof ErrorReply) return tools;
  const choice = body.tool_choice;
  if (choice !== undefined) {
    if (!isRecord(choice) || !ANTHROPIC_CHOICES.includes(String(choice.type))) return new ErrorReply(400, "tool_choice.type: Input should be 'auto', 'any', 'tool' or 'none'");
    if (choice.type === 'tool' && (typeof choice.name !== 'string' || !tools.includes(choice.name))) return new ErrorReply(400, 'tool_choice.name: must name one of the tools');
  }
  const messages = Array.isArray(body.messages) ? (body.messages as unknown[]) : [];
  let pending = new Set<string>();
  let toolResults: MockToolResult[] = [];
  for (const [index, m] of messages.entries()) {
    if (!isRecord(m)) continue;
    if (m.role !== 'user' && m.role !== 'assistant') return new ErrorReply(400, `messages.${index}.role: Input should be 'user' or 'assistant'`);
    const blocks = Array.isArray(m.content) ? (m.content as unknown[]).filter(isRecord) : [];
    toolResults = [];
    if (m.role === 'user') {
      for (const block of blocks) {
        if (block.type !== 'tool_result') continue;
        if (typeof block.tool_use_id !== 'string' || !pending.has(block.tool_use_id)) {
          return new ErrorReply(400, `messages.${index}.content: unexpected \`tool_use_id\` found in \`tool_result\` blocks. Each \`tool_result\` block must have a corresponding \`tool_use\` block in the previous message.`);
        }
        pending.delete(block.tool_use_id);
        toolResults.push({ id: block.tool_use_id, content: contentText(block.content) });
      }
      if (pending.size > 0) return new ErrorReply(400, `messages.${index}: \`tool_use\` ids were found without \`tool_result\` blocks immediately after: ${[...pending].join(', ')}`);
      continue;
    }
    if (pending.size > 0) return new ErrorReply(400, `messages.${index}: \`tool_use\` ids were found without \`tool_result\` blocks immediately after: ${[...pending].join(', ')}`);
    pending = new Set();
    for (const block of blocks) {
      if (block.type !== 'tool_use') continue;
      if (typeof block.id !== 'string' || typeof block.name !== 'string' || !isRecord(block.input)) return new ErrorReply(400, `messages.${index}.content: a tool_use block needs id, name and an object input`);
      pending.add(block.id);
    }
  }
  return { tools, toolResults };
}
