/** Anthropic Messages API: named SSE events, content blocks, thinking blocks. */

import { randomUUID } from 'node:crypto';
import type { IncomingHttpHeaders } from 'node:http';
import { finishOf, type AnswerDefaults, type AnswerPlan } from './answer.js';
import type { ChatProtocol, ProviderModule, StreamScript, TurnRequest } from './protocol.js';
import {
  BAD_KEY,
  ErrorReply,
  IN_STREAM_ERROR_MESSAGE,
  MALFORMED_JSON,
  SSE_HEADERS,
  contentText,
  isRecord,
  quote,
  sseEvent,
  summariseMessages,
} from './protocol.js';
import { anthropicToolTurn } from './tool-calls.js';
import { runTurn } from './turn.js';
import { anthropicBlockNotes, withNotes } from './attachments.js';

const SIGNATURE = 'bW9jay10aGlua2luZy1zaWduYXR1cmU=';

function errorType(status: number): string {
  switch (status) {
    case 400:
      return 'invalid_request_error';
    case 401:
      return 'authentication_error';
    case 402:
      return 'billing_error';
    case 403:
      return 'permission_error';
    case 404:
      return 'not_found_error';
    case 413:
      return 'request_too_large';
    case 429:
      return 'rate_limit_error';
    case 504:
      return 'timeout_error';
    case 529:
      return 'overloaded_error';
    default:
      return status >= 500 ? 'api_error' : 'invalid_request_error';
  }
}

/** Anthropic has no separate code: `code=X` becomes `error.type`. */
function errorBody(reply: ErrorReply): unknown {
  return { type: 'error', error: { type: reply.code ?? errorType(reply.status), message: reply.message } };
}

function authenticate(headers: IncomingHttpHeaders): ErrorReply | undefined {
  const key = headers['x-api-key'];
  if (typeof key !== 'string' || key === '') return new ErrorReply(401, 'x-api-key header is required');
  if (key === BAD_KEY) return new ErrorReply(401, 'invalid x-api-key');
  if (typeof headers['anthropic-version'] !== 'string') {
    return new ErrorReply(400, 'anthropic-version: header is required');
  }
  return undefined;
}

function parseTurn(body: unknown): TurnRequest | ErrorReply {
  if (!isRecord(body)) return new ErrorReply(400, 'The request body must be a JSON object.');
  if (typeof body.model !== 'string' || body.model === '') return new ErrorReply(400, 'model: Field required');
  if (typeof body.max_tokens !== 'number') return new ErrorReply(400, 'max_tokens: Field required');
  const summary = summariseMessages(body.messages, []);
  if (typeof summary === 'string') return new ErrorReply(400, summary);
  const tools = anthropicToolTurn(body);
  if (tools instanceof ErrorReply) return tools;
  const system = contentText(body.system);
  if (summary.lastAssistant !== undefined && /\s$/.test(summary.lastAssistant)) {
    return new ErrorReply(400, 'messages: final assistant content cannot end with trailing whitespace');
  }
  return {
    ...summary,
    userText: withNotes(summary.userText, anthropicBlockNotes(summary.userContent)),
    prefill: summary.lastAssistant,
    ...tools,
    systemPrompt: system.trim() !== '',
    promptChars: summary.promptChars + system.length,
    stream: body.stream === true,
    model: body.model,
  };
}

function usageStart(plan: AnswerPlan): string {
  return `{"input_tokens":${plan.promptTokens},"cache_creation_input_tokens":0,"cache_read_input_tokens":0,"output_tokens":1}`;
}

function streamScript(turn: TurnRequest, plan: AnswerPlan): StreamScript {
  const messageStart = sseEvent(
    'message_start',
    `{"type":"message_start","message":{"id":"msg_mock${randomUUID().replaceAll('-', '')}","type":"message","role":"assistant","model":${quote(turn.model)},"content":[],"stop_reason":null,"stop_sequence":null,"usage":${usageStart(plan)}}}`,
  );
  const blockStart = (index: number, block: string): string =>
    sseEvent('content_block_start', `{"type":"content_block_start","index":${index},"content_block":${block}}`);
  const blockStop = (index: number): string =>
    sseEvent('content_block_stop', `{"type":"content_block_stop","index":${index}}`);
  const delta = (index: number, body: string): string =>
    sseEvent('content_block_delta', `{"type":"content_block_delta","index":${index},"delta":${body}}`);
  const textBlock = '{"type":"text","text":""}';
  const thinks = plan.reasoning.length > 0;

  // Index of the open content block; thinking (if any) is block 0, text follows.
  let open: { index: number; type: 'thinking' | 'text' } = { index: 0, type: thinks ? 'thinking' : 'text' };
  let closed = false;
  // The tool_use block open now, if any: calls follow the text block, one block each.
  let toolBlock: number | undefined;
  const closeThinking = (): string => {
    if (open.type !== 'thinking') return '';
    const frames = delta(open.index, `{"type":"signature_delta","signature":"${SIGNATURE}"}`) + blockStop(open.index);
    open = { index: open.index + 1, type: 'text' };
    return frames + blockStart(open.index, textBlock);
  };

  return {
    headers: SSE_HEADERS,
    open:
      messageStart +
      blockStart(0, thinks ? '{"type":"thinking","thinking":"","signature":""}' : textBlock) +
      sseEvent('ping', '{"type": "ping"}'),
    reasoning: (piece) => delta(open.index, `{"type":"thinking_delta","thinking":${quote(piece)}}`),
    text: (piece) => closeThinking() + delta(open.index, `{"type":"text_delta","text":${quote(piece)}}`),
    toolCall: (call, index, piece) => {
      let frames = '';
      if (piece === 0) {
        if (!closed) frames += closeThinking() + blockStop(open.index);
        closed = true;
        if (toolBlock !== undefined) frames += blockStop(toolBlock);
        toolBlock = open.index + 1 + index;
        frames += blockStart(toolBlock, `{"type":"tool_use","id":"toolu_${call.id}","name":${quote(call.name)},"input":{}}`);
      }
      return frames + delta(toolBlock ?? 0, `{"type":"input_json_delta","partial_json":${quote(call.pieces[piece] ?? '')}}`);
    },
    malformed: () => sseEvent('content_block_delta', MALFORMED_JSON),
    error: (code) =>
      sseEvent('error', JSON.stringify({ type: 'error', error: { type: code ?? 'overloaded_error', message: IN_STREAM_ERROR_MESSAGE } })),
    end: (sent, withMarker) => {
      let frames = closed ? '' : closeThinking() + blockStop(open.index);
      closed = true;
      if (toolBlock !== undefined) frames += blockStop(toolBlock);
      toolBlock = undefined;
      frames += sseEvent(
        'message_delta',
        `{"type":"message_delta","delta":{"stop_reason":"${stopReason(plan)}","stop_sequence":null},"usage":{"output_tokens":${sent}}}`,
      );
      return withMarker ? frames + sseEvent('message_stop', '{"type":"message_stop"}') : frames;
    },
  };
}

/** The `finish` fault in Anthropic's words. */
function stopReason(plan: AnswerPlan): string {
  switch (finishOf(plan)) {
    case 'length':
      return 'max_tokens';
    case 'tool_calls':
      return 'tool_use';
    case 'content_filter':
      return 'refusal';
    case 'stop':
      return 'end_turn';
  }
}

function blockingBody(turn: TurnRequest, plan: AnswerPlan): unknown {
  const content: unknown[] = [];
  if (plan.reasoning.length > 0) content.push({ type: 'thinking', thinking: plan.reasoningText, signature: SIGNATURE });
  if (plan.text !== '' || plan.toolCalls.length === 0) content.push({ type: 'text', text: plan.text });
  for (const call of plan.toolCalls) content.push({ type: 'tool_use', id: `toolu_${call.id}`, name: call.name, input: JSON.parse(call.arguments) as unknown });
  return {
    id: `msg_mock${randomUUID().replaceAll('-', '')}`,
    type: 'message',
    role: 'assistant',
    model: turn.model,
    content,
    stop_reason: stopReason(plan),
    stop_sequence: null,
    usage: {
      input_tokens: plan.promptTokens,
      cache_creation_input_tokens: 0,
      cache_read_input_tokens: 0,
      output_tokens: plan.completionTokens,
    },
  };
}

const protocol: ChatProtocol<TurnRequest> = { parseTurn, streamScript, blockingBody };

export function createAnthropicProvider(defaults: AnswerDefaults): ProviderModule {
  const provider: ProviderModule = {
    provider: 'anthropic',
    authenticate,
    errorBody,
    routes: [{ method: 'POST', path: '/v1/messages', chat: true, handle: (ctx) => runTurn(ctx, provider, protocol, defaults) }],
  };
  return provider;
}
