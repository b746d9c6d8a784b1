import { Type } from '@sinclair/typebox';
import { Envelope, ErrorResponses, JsonOrEventStream, Nullable, OpenObject } from '../../http/response.js';

/**
 * What the chat routes answer, for the OpenAPI document and Fastify's
 * serializer. Objects stay open (OpenObject): the web app reads fields the
 * reference lists, and nothing it reads may be dropped.
 */

const TURN_EVENTS = 'events start, chunk, reasoning, toolCall, reset, error, end (README "Chat streaming"); `id: <messageId>:<n>` resumes with Last-Event-ID';

export const Completion = OpenObject({
  id: Type.String(),
  object: Type.Literal('chat.completion'),
  created: Type.Integer(),
  model: Type.String(),
  choices: Type.Array(OpenObject({ index: Type.Integer(), message: OpenObject({ role: Type.Literal('assistant'), content: Type.String() }), finish_reason: Type.String() })),
  usage: Type.Optional(OpenObject({ prompt_tokens: Type.Integer(), completion_tokens: Type.Integer(), total_tokens: Type.Integer() })),
  chatId: Type.String(),
  sessionId: Type.String(),
  messageId: Type.String(),
  status: Type.String(),
});

export const CompletionResponses = { 200: JsonOrEventStream(Envelope(Completion), TURN_EVENTS), ...ErrorResponses };
export const StreamResponses = { 200: { description: `A text/event-stream: ${TURN_EVENTS}`, content: { 'text/event-stream': { schema: Type.String() } } }, ...ErrorResponses };
export const StopResponses = { 200: Envelope(OpenObject({ messageId: Type.String(), stopped: Type.Boolean() })), ...ErrorResponses };

const Welcome = OpenObject({ chatId: Nullable(Type.String()), appId: Type.String(), welcomeText: Type.Unknown(), app: Type.Unknown() });
export const InitResponses = { 200: JsonOrEventStream(Envelope(Welcome), 'events start, chunk (the welcome text), complete, end'), ...ErrorResponses };

const HistoryItem = OpenObject({
  chatId: Type.String(),
  appId: Type.String(),
  agentId: Type.String(),
  title: Type.Unknown(),
  createdAt: Type.String(),
  updatedAt: Type.String(),
  messageCount: Type.Integer(),
});
export const HistoryListResponses = {
  200: Type.Object({ success: Type.Literal(true), data: Type.Array(HistoryItem), timestamp: Type.String(), total: Type.Integer(), page: Type.Integer(), pageSize: Type.Integer() }),
  ...ErrorResponses,
};

const HistoryMessage = OpenObject({ id: Type.String(), dataId: Type.String(), role: Type.String(), content: Type.Unknown(), status: Type.String(), createdAt: Type.String() });
export const HistoryResponses = {
  200: Envelope(OpenObject({ chatId: Type.String(), appId: Type.String(), agentId: Type.String(), title: Type.Unknown(), messages: Type.Array(HistoryMessage), metadata: Type.Unknown() })),
  ...ErrorResponses,
};
export const DeletedResponses = { 200: Envelope(Type.Null()), ...ErrorResponses };
export const DeletedCountResponses = { 200: Envelope(OpenObject({ deleted: Type.Integer() })), ...ErrorResponses };
export const FeedbackResponses = { 200: Envelope(OpenObject({ messageId: Type.String() })), ...ErrorResponses };

// /api/chat-sessions

const Session = OpenObject({
  id: Type.String(),
  agentId: Type.String(),
  title: Type.Unknown(),
  messageCount: Type.Integer(),
  archived: Type.Boolean(),
  hidden: Type.Boolean({ description: 'A /v1 call\'s session, left out of the chat list unless asked for (hidden=include)' }),
  createdAt: Type.String(),
  updatedAt: Type.String(),
});
export const SessionResponses = { 200: Envelope(Session), ...ErrorResponses };
export const SessionCreatedResponses = { 201: Envelope(Session), ...ErrorResponses };
export const SessionListResponses = { 200: Envelope(OpenObject({ items: Type.Array(Session), total: Type.Integer(), page: Type.Integer(), pageSize: Type.Integer() })), ...ErrorResponses };
export const SearchResponses = {
  200: Envelope(Type.Array(OpenObject({ sessionId: Type.String(), agentId: Type.String(), title: Type.Unknown(), messageId: Nullable(Type.String()), snippet: Type.String({ description: 'Escaped HTML with the matches in <mark>' }), updatedAt: Type.String() }))),
  ...ErrorResponses,
};
const SessionMessage = OpenObject({
  id: Type.String(),
  seq: Type.Integer(),
  role: Type.String(),
  content: Type.Unknown(),
  status: Type.String(),
  createdAt: Type.String(),
  versions: Nullable(Type.Array(Type.String(), { description: 'Every version of this message, oldest first, when it has more than one (regenerated or edited); null otherwise' })),
});
export const VersionShownResponses = { 200: Envelope(OpenObject({ sessionId: Type.String(), messageId: Type.String() })), ...ErrorResponses };
export const SessionMessagesResponses = { 200: Envelope(OpenObject({ id: Type.String(), agentId: Type.String(), messages: Type.Array(SessionMessage), hasMore: Type.Boolean() })), ...ErrorResponses };

// /v1 (the OpenAI wire format; errors in OpenAI's shape: openai-errors.ts)

// The app's error handler serializes our envelope here first; the /v1 onSend hook then rewrites it into OpenAI's.
const OpenAIError = Type.Object({
  error: OpenObject({
    message: Type.String(),
    type: Type.Optional(Type.String()),
    param: Type.Optional(Nullable(Type.String())),
    code: Type.Optional(Nullable(Type.String())),
    requestId: Type.Optional(Type.String()),
  }),
});
const OpenAIErrors = { '4xx': OpenAIError, '5xx': OpenAIError };
const Model = OpenObject({ id: Type.String(), object: Type.Literal('model'), created: Type.Integer(), owned_by: Type.String() });
export const ModelsResponses = {
  200: OpenObject({ object: Type.Literal('list'), data: Type.Array(Model) }),
  ...OpenAIErrors,
};
export const ModelResponses = { 200: Model, ...OpenAIErrors };
export const OpenAICompletionResponses = {
  200: JsonOrEventStream(
    OpenObject({ id: Type.String(), object: Type.Literal('chat.completion'), created: Type.Integer(), model: Type.String(), choices: Type.Array(Type.Unknown()), usage: Type.Optional(Type.Unknown()) }),
    'data: lines of chat.completion.chunk objects, then data: [DONE] (OpenAI streaming)',
  ),
  ...OpenAIErrors,
};

// /v1/messages (Anthropic's Messages API; errors in Anthropic's shape: anthropic-errors.ts)

// The app's error handler serializes our envelope here first; the onSend hook then rewrites it into Anthropic's.
const AnthropicError = Type.Object({
  type: Type.Optional(Type.Literal('error')),
  error: OpenObject({ type: Type.Optional(Type.String()), message: Type.String(), code: Type.Optional(Type.String({ description: 'Our stable error code' })) }),
  request_id: Type.Optional(Type.String()),
});
export const AnthropicMessageResponses = {
  200: JsonOrEventStream(
    OpenObject({
      id: Type.String(),
      type: Type.Literal('message'),
      role: Type.Literal('assistant'),
      model: Type.String(),
      content: Type.Array(OpenObject({ type: Type.String(), text: Type.Optional(Type.String()) })),
      stop_reason: Nullable(Type.String()),
      stop_sequence: Nullable(Type.String()),
      usage: OpenObject({ input_tokens: Type.Integer(), output_tokens: Type.Integer() }),
    }),
    'Anthropic streaming events: message_start, ping, content_block_start, content_block_delta (text_delta), content_block_stop, message_delta (stop_reason, usage), message_stop; error after a failure mid-answer',
  ),
  '4xx': AnthropicError,
  '5xx': AnthropicError,
};
