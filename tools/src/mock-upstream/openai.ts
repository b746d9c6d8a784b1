/**
 * OpenAI chat completions (and the OpenAI-compatible crowd: DeepSeek, Qwen,
 * vLLM, Ollama). Reasoning is streamed DeepSeek-style as `delta.reasoning_content`.
 */

import { randomUUID } from 'node:crypto';
import type { IncomingHttpHeaders } from 'node:http';
import { finishOf, type AnswerDefaults, type AnswerPlan, type MockToolCall } from './answer.js';
import type { ChatProtocol, ProviderModule, StreamScript, TurnRequest } from './protocol.js';
import {
  BAD_KEY,
  ErrorReply,
  IN_STREAM_ERROR_MESSAGE,
  MALFORMED_JSON,
  SSE_HEADERS,
  bearerToken,
  isRecord,
  quote,
  sseData,
  summariseMessages,
} from './protocol.js';
import { openAiToolTurn } from './tool-calls.js';
import { runTurn } from './turn.js';
import { openAIPartNotes, withNotes } from './attachments.js';

export const MOCK_MODEL = 'mock-model';

interface OpenAiTurn extends TurnRequest {
  includeUsage: boolean;
}

function errorType(status: number): string {
  if (status === 429) return 'requests';
  if (status >= 500) return 'server_error';
  return 'invalid_request_error';
}

function defaultCode(status: number): string | null {
  if (status === 401) return 'invalid_api_key';
  if (status === 429) return 'rate_limit_exceeded';
  return null;
}

function errorBody(reply: ErrorReply): unknown {
  const code = reply.code === undefined ? defaultCode(reply.status) : reply.code;
  return {
    error: {
      message: reply.message,
      type: code === 'insufficient_quota' ? 'insufficient_quota' : errorType(reply.status),
      param: code === 'context_length_exceeded' ? 'messages' : null,
      code,
    },
  };
}

function authenticate(headers: IncomingHttpHeaders): ErrorReply | undefined {
  const key = bearerToken(headers);
  if (key === undefined) {
    return new ErrorReply(401, "You didn't provide an API key. You need to provide your API key in an Authorization header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY).", null);
  }
  if (key === BAD_KEY) return new ErrorReply(401, 'Incorrect API key provided: bad-key.', 'invalid_api_key');
  return undefined;
}

function parseTurn(body: unknown): OpenAiTurn | ErrorReply {
  if (!isRecord(body)) return new ErrorReply(400, 'The request body must be a JSON object.');
  if (typeof body.model !== 'string' || body.model === '') {
    return new ErrorReply(400, 'You must provide a model parameter.');
  }
  const summary = summariseMessages(body.messages, ['system', 'developer']);
  if (typeof summary === 'string') return new ErrorReply(400, summary);
  const tools = openAiToolTurn(body);
  if (tools instanceof ErrorReply) return tools;
  const streamOptions = body.stream_options;
  // vLLM's continuation: the last (assistant) message is continued, so no new assistant turn may be opened after it.
  if (body.continue_final_message === true && body.add_generation_prompt !== false) {
    return new ErrorReply(400, 'Cannot set both `continue_final_message` and `add_generation_prompt` to True.');
  }
  return {
    ...summary,
    userText: withNotes(summary.userText, openAIPartNotes(summary.userContent)),
    prefill: summary.lastAssistant,
    ...tools,
    stream: body.stream === true,
    model: body.model,
    includeUsage: isRecord(streamOptions) && streamOptions.include_usage === true,
  };
}

function usage(plan: AnswerPlan, completionTokens: number): string {
  return `{"prompt_tokens":${plan.promptTokens},"completion_tokens":${completionTokens},"total_tokens":${plan.promptTokens + completionTokens}}`;
}

function streamScript(turn: OpenAiTurn, plan: AnswerPlan): StreamScript {
  const head = `{"id":"chatcmpl-${randomUUID().replaceAll('-', '')}","object":"chat.completion.chunk","created":${Math.floor(Date.now() / 1000)},"model":${quote(turn.model)},"system_fingerprint":null,"choices":[`;
  const tail = turn.includeUsage ? '],"usage":null}' : ']}';
  const choice = (delta: string, finish: string): string =>
    sseData(`${head}{"index":0,"delta":${delta},"logprobs":null,"finish_reason":${finish}}${tail}`);
  const roleChunk = choice('{"role":"assistant","content":"","refusal":null}', 'null');
  let started = false;
  // Real endpoints send the role chunk together with the first token.
  const start = (): string => {
    if (started) return '';
    started = true;
    return roleChunk;
  };
  return {
    headers: SSE_HEADERS,
    open: '',
    reasoning: (piece) => start() + choice(`{"content":null,"reasoning_content":${quote(piece)}}`, 'null'),
    text: (piece) => start() + choice(`{"content":${quote(piece)}}`, 'null'),
    // A call opens with its id, type and name (arguments ""), then its arguments come in pieces.
    toolCall: (call, index, piece) =>
      start() +
      (piece === 0 ? choice(`{"tool_calls":[{"index":${index},"id":"call_${call.id}","type":"function","function":{"name":${quote(call.name)},"arguments":""}}]}`, 'null') : '') +
      choice(`{"tool_calls":[{"index":${index},"function":{"arguments":${quote(call.pieces[piece] ?? '')}}}]}`, 'null'),
    malformed: () => sseData(MALFORMED_JSON),
    error: (code) =>
      sseData(JSON.stringify({ error: { message: IN_STREAM_ERROR_MESSAGE, type: 'server_error', param: null, code: code ?? null } })),
    end: (sent, withMarker) =>
      start() +
      choice('{}', `"${finishOf(plan)}"`) +
      (turn.includeUsage ? sseData(`${head}],"usage":${usage(plan, sent)}}`) : '') +
      (withMarker ? 'data: [DONE]\n\n' : ''),
  };
}

function blockingBody(turn: OpenAiTurn, plan: AnswerPlan): unknown {
  const message: Record<string, unknown> = { role: 'assistant', content: plan.toolCalls.length > 0 && plan.text === '' ? null : plan.text, refusal: null };
  if (plan.reasoning.length > 0) message.reasoning_content = plan.reasoningText;
  if (plan.toolCalls.length > 0) message.tool_calls = plan.toolCalls.map(openAiToolCall);
  return {
    id: `chatcmpl-${randomUUID().replaceAll('-', '')}`,
    object: 'chat.completion',
    created: Math.floor(Date.now() / 1000),
    model: turn.model,
    choices: [{ index: 0, message, logprobs: null, finish_reason: finishOf(plan) }],
    usage: {
      prompt_tokens: plan.promptTokens,
      completion_tokens: plan.completionTokens,
      total_tokens: plan.promptTokens + plan.completionTokens,
    },
    system_fingerprint: null,
  };
}

function openAiToolCall(call: MockToolCall): unknown {
  return { id: `call_${call.id}`, type: 'function', function: { name: call.name, arguments: call.arguments } };
}

const protocol: ChatProtocol<OpenAiTurn> = { parseTurn, streamScript, blockingBody };

const modelList = {
  object: 'list',
  data: [{ id: MOCK_MODEL, object: 'model', created: 1_700_000_000, owned_by: 'llmchat-mock' }],
};

export function createOpenAiProvider(defaults: AnswerDefaults): ProviderModule {
  const provider: ProviderModule = {
    provider: 'openai',
    authenticate,
    errorBody,
    routes: [
      { method: 'POST', path: '/v1/chat/completions', chat: true, handle: (ctx) => runTurn(ctx, provider, protocol, defaults) },
      { method: 'POST', path: '/chat/completions', chat: true, handle: (ctx) => runTurn(ctx, provider, protocol, defaults) },
      { method: 'GET', path: '/v1/models', chat: false, handle: (ctx) => ctx.exchange.json(200, modelList) },
    ],
  };
  return provider;
}
