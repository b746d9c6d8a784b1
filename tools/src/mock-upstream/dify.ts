/**
 * Dify chat apps: `data:`-only SSE with an `event` field in the JSON, task ids
 * that the stop API can end, conversation ids minted on the first turn.
 *
 * Dify keeps the system prompt in the app, so the mock accepts one in either
 * `inputs.system_prompt` (a non-empty string) or a first query line starting
 * with `[system]`; the rest of the query is then the user's question.
 */

import { randomUUID } from 'node:crypto';
import type { IncomingHttpHeaders } from 'node:http';
import type { AnswerDefaults, AnswerPlan } from './answer.js';
import type { ChatProtocol, ProviderModule, StreamControl, StreamScript, TurnRequest } from './protocol.js';
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
} from './protocol.js';
import { runTurn } from './turn.js';
import { difyFileNotes, multipartFile, withNotes, type UploadedFile } from './attachments.js';

export const DIFY_OPENING_STATEMENT = 'Hello from the mock Dify app.';

interface DifyTurn extends TurnRequest {
  conversationId: string;
  taskId: string;
  messageId: string;
  createdAt: number;
  startedAt: number;
}

function defaultCode(status: number): string {
  switch (status) {
    case 400:
      return 'invalid_param';
    case 401:
      return 'unauthorized';
    case 403:
      return 'forbidden';
    case 404:
      return 'not_found';
    case 413:
      return 'file_too_large';
    case 429:
      return 'too_many_requests';
    default:
      return status >= 500 ? 'internal_server_error' : 'bad_request';
  }
}

function errorBody(reply: ErrorReply): unknown {
  return { code: reply.code ?? defaultCode(reply.status), message: reply.message, status: reply.status };
}

function authenticate(headers: IncomingHttpHeaders): ErrorReply | undefined {
  const key = bearerToken(headers);
  if (key === undefined) {
    return new ErrorReply(401, 'Authorization header must be provided and start with Bearer', 'unauthorized');
  }
  if (key === BAD_KEY) return new ErrorReply(401, 'Access token is invalid', 'unauthorized');
  return undefined;
}

const SYSTEM_LINE = '[system]';

function parseTurn(body: unknown, uploads: ReadonlyMap<string, UploadedFile>): DifyTurn | ErrorReply {
  if (!isRecord(body)) return new ErrorReply(400, 'The request body must be a JSON object.');
  const { query, inputs, user } = body;
  if (typeof query !== 'string') return new ErrorReply(400, 'query is required');
  if (!isRecord(inputs)) return new ErrorReply(400, 'inputs is required');
  if (typeof user !== 'string' || user === '') return new ErrorReply(400, 'user is required');
  const mode = body.response_mode ?? 'blocking';
  if (mode !== 'streaming' && mode !== 'blocking') {
    return new ErrorReply(400, "response_mode must be 'streaming' or 'blocking'");
  }
  let userText = query;
  let systemPrompt = typeof inputs.system_prompt === 'string' && inputs.system_prompt.trim() !== '';
  let promptChars = query.length + (typeof inputs.system_prompt === 'string' ? inputs.system_prompt.length : 0);
  if (query.startsWith(SYSTEM_LINE)) {
    const newline = query.indexOf('\n');
    systemPrompt = true;
    userText = newline === -1 ? '' : query.slice(newline + 1);
    promptChars = query.length;
  }
  const conversationId = typeof body.conversation_id === 'string' && body.conversation_id !== '' ? body.conversation_id : randomUUID();
  return {
    stream: mode === 'streaming',
    model: '',
    userText: withNotes(userText, difyFileNotes(body.files, uploads)),
    systemPrompt,
    promptChars,
    conversationId,
    taskId: randomUUID(),
    messageId: randomUUID(),
    createdAt: Math.floor(Date.now() / 1000),
    startedAt: performance.now(),
  };
}

function usage(turn: DifyTurn, plan: AnswerPlan, completionTokens: number): Record<string, unknown> {
  return {
    prompt_tokens: plan.promptTokens,
    prompt_unit_price: '0',
    prompt_price_unit: '0',
    prompt_price: '0',
    completion_tokens: completionTokens,
    completion_unit_price: '0',
    completion_price_unit: '0',
    completion_price: '0',
    total_tokens: plan.promptTokens + completionTokens,
    total_price: '0',
    currency: 'USD',
    latency: (performance.now() - turn.startedAt) / 1000,
  };
}

function streamScript(turn: DifyTurn, plan: AnswerPlan): StreamScript {
  const ids = `"conversation_id":${quote(turn.conversationId)},"message_id":"${turn.messageId}","created_at":${turn.createdAt},"task_id":"${turn.taskId}"`;
  const messageHead = `{"event":"message",${ids},"id":"${turn.messageId}","answer":`;
  return {
    headers: SSE_HEADERS,
    // Dify opens its streams with a bare ping event.
    open: 'event: ping\n\n',
    reasoning: (piece, index) =>
      sseData(
        `{"event":"agent_thought",${ids},"id":"${randomUUID()}","position":${index + 1},"thought":${quote(piece)},"observation":"","tool":"","tool_labels":{},"tool_input":"","message_files":[]}`,
      ),
    text: (piece) => sseData(`${messageHead}${quote(piece)},"from_variable_selector":null}`),
    malformed: () => sseData(MALFORMED_JSON),
    error: (code) =>
      sseData(`{"event":"error",${ids},"status":500,"code":${quote(code ?? 'internal_server_error')},"message":${quote(IN_STREAM_ERROR_MESSAGE)}}`),
    end: (sent, withMarker) =>
      withMarker
        ? sseData(
            `{"event":"message_end",${ids},"id":"${turn.messageId}","metadata":{"usage":${JSON.stringify(usage(turn, plan, sent))},"retriever_resources":[]},"files":null}`,
          )
        : '',
  };
}

function blockingBody(turn: DifyTurn, plan: AnswerPlan): unknown {
  return {
    event: 'message',
    task_id: turn.taskId,
    id: turn.messageId,
    message_id: turn.messageId,
    conversation_id: turn.conversationId,
    mode: 'chat',
    answer: plan.text,
    metadata: { usage: usage(turn, plan, plan.completionTokens), retriever_resources: [] },
    created_at: turn.createdAt,
  };
}

const parameters = {
  opening_statement: DIFY_OPENING_STATEMENT,
  suggested_questions: [],
  suggested_questions_after_answer: { enabled: false },
  speech_to_text: { enabled: false },
  text_to_speech: { enabled: false },
  retriever_resource: { enabled: false },
  annotation_reply: { enabled: false },
  more_like_this: { enabled: false },
  sensitive_word_avoidance: { enabled: false },
  user_input_form: [],
  file_upload: { image: { enabled: false, number_limits: 3, transfer_methods: ['remote_url', 'local_file'] } },
  system_parameters: { file_size_limit: 15, image_file_size_limit: 10, audio_file_size_limit: 50, video_file_size_limit: 100 },
};

export function createDifyProvider(defaults: AnswerDefaults): ProviderModule {
  // Running streams by task id, so the stop API can end them.
  const tasks = new Map<string, StreamControl>();
  // Files taken by the upload API, by id (kept for the mock's life: tests upload a few).
  const uploads = new Map<string, UploadedFile>();
  const protocol: ChatProtocol<DifyTurn> = {
    parseTurn: (body) => parseTurn(body, uploads),
    streamScript,
    blockingBody,
    onTurnStart: (turn, _plan, control) => {
      if (control === undefined) return undefined;
      tasks.set(turn.taskId, control);
      return () => tasks.delete(turn.taskId);
    },
  };
  const success = { result: 'success' };
  const provider: ProviderModule = {
    provider: 'dify',
    authenticate,
    errorBody,
    routes: [
      { method: 'POST', path: '/v1/chat-messages', chat: true, handle: (ctx) => runTurn(ctx, provider, protocol, defaults) },
      {
        method: 'POST',
        path: '/v1/chat-messages/:taskId/stop',
        chat: false,
        handle: (ctx) => {
          if (!isRecord(ctx.body) || typeof ctx.body.user !== 'string') {
            ctx.exchange.json(400, errorBody(new ErrorReply(400, 'user is required')));
            return;
          }
          tasks.get(ctx.params.taskId ?? '')?.stop();
          ctx.exchange.json(200, success);
        },
      },
      {
        method: 'POST',
        path: '/v1/messages/:messageId/feedbacks',
        chat: false,
        handle: (ctx) => {
          const body = ctx.body;
          if (!isRecord(body) || typeof body.user !== 'string') {
            ctx.exchange.json(400, errorBody(new ErrorReply(400, 'user is required')));
            return;
          }
          if (body.rating !== undefined && body.rating !== null && body.rating !== 'like' && body.rating !== 'dislike') {
            ctx.exchange.json(400, errorBody(new ErrorReply(400, "rating must be 'like', 'dislike' or null")));
            return;
          }
          ctx.exchange.json(200, success);
        },
      },
      { method: 'GET', path: '/v1/parameters', chat: false, handle: (ctx) => ctx.exchange.json(200, parameters) },
      {
        method: 'POST',
        path: '/v1/files/upload',
        chat: false,
        handle: (ctx) => {
          const file = ctx.raw === undefined ? undefined : multipartFile(ctx.raw.bytes, ctx.raw.contentType);
          if (file === undefined) {
            ctx.exchange.json(400, errorBody(new ErrorReply(400, 'no file uploaded', 'no_file_uploaded')));
            return;
          }
          const id = randomUUID();
          uploads.set(id, file);
          const extension = file.name.includes('.') ? file.name.slice(file.name.lastIndexOf('.') + 1) : '';
          ctx.exchange.json(201, { id, name: file.name, size: file.bytes.length, extension, mime_type: file.mediaType, created_by: 'mock', created_at: Math.floor(Date.now() / 1000) });
        },
      },
    ],
  };
  return provider;
}
