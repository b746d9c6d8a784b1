import { Type } from '@sinclair/typebox';
import type { FastifyInstance, FastifyReply } from 'fastify';
import type { RouteOptions } from '../../app.js';
import type { MessageRow } from '../../db/schema.js';
import { AppError, ErrorCodes, type ErrorCode } from '../../errors.js';
import { actsAsAdmin, principalOf } from '../../plugins/authenticate.js';
import { anthropicStopReasonOf } from '../providers/finish-reason.js';
import type { ChatContentPart, Usage } from '../providers/types.js';
import { estimatePromptTokens } from '../quotas/token-budgets.js';
import { errorForViewer } from '../resilience/failure-policy.js';
import { anthropicError, reshapeAnthropicErrorBody } from './anthropic-errors.js';
import type { TurnInput } from './chat-service.js';
import type { Generation, GenerationEvent } from './generation.js';
import { isErrorCode } from './openai-errors.js';
import { AnthropicMessageResponses } from './response-schema.js';
import { LIMITS } from './schema.js';
import { EventWriter, openEventStream } from './sse.js';
import { reshapeErrors, servedHeaders, startV1Turn } from './v1-turn.js';

/**
 * A content block as Anthropic's SDKs send it. Only `text` is answered;
 * every other type (image, document, tool_use, tool_result, thinking …) is
 * refused with a 400 naming it (refuseUnsupported), not dropped in silence.
 */
const ContentBlock = Type.Object(
  {
    type: Type.String({ minLength: 1, maxLength: 64 }),
    text: Type.Optional(Type.String({ maxLength: LIMITS.messageChars })),
  },
  { additionalProperties: true },
);

const Content = Type.Union([Type.String({ minLength: 1, maxLength: LIMITS.messageChars }), Type.Array(ContentBlock, { minItems: 1, maxItems: 50 })]);

/**
 * The Anthropic Messages request. Fields listed here are honoured or
 * refused with a 400 naming them; other Anthropic fields are accepted and
 * ignored (README, "/v1/messages").
 */
const AnthropicMessagesBody = Type.Object({
  model: Type.String({ minLength: 1, maxLength: 64, description: 'The agent id' }),
  max_tokens: Type.Integer({ minimum: 1, maximum: 200_000 }),
  messages: Type.Array(Type.Object({ role: Type.Union([Type.Literal('user'), Type.Literal('assistant')]), content: Content }, { additionalProperties: false }), { minItems: 1, maxItems: LIMITS.messages }),
  system: Type.Optional(Type.Union([Type.String({ maxLength: LIMITS.messageChars }), Type.Array(ContentBlock, { maxItems: 50 })])),
  stream: Type.Optional(Type.Boolean()),
  temperature: Type.Optional(Type.Number({ minimum: 0, maximum: 1 })),
  top_p: Type.Optional(Type.Number({ minimum: 0, maximum: 1 })),
  stop_sequences: Type.Optional(Type.Array(Type.String({ minLength: 1, maxLength: 256 }), { maxItems: 4 })),
  metadata: Type.Optional(Type.Object({ user_id: Type.Optional(Type.Union([Type.String({ maxLength: 256 }), Type.Null()])) }, { additionalProperties: false })),
});

type Block = { type: string; text?: string };

interface AnthropicMessagesBody {
  model: string;
  max_tokens: number;
  messages: { role: 'user' | 'assistant'; content: string | Block[] }[];
  system?: string | Block[];
  stream?: boolean;
  temperature?: number;
  top_p?: number;
  stop_sequences?: string[];
  metadata?: { user_id?: string | null };
  tools?: unknown;
  mcp_servers?: unknown;
}

/** Refuses what LLMChat does not do yet, rather than answering as if it had been ignored. */
function refuseUnsupported(body: AnthropicMessagesBody): void {
  for (const field of ['tools', 'mcp_servers'] as const) {
    const value = body[field];
    if (value !== undefined && !(Array.isArray(value) && value.length === 0)) {
      throw new AppError('VALIDATION_FAILED', `${field} (tool use) is not supported by this server yet`, [{ path: `/${field}`, message: 'is not supported' }]);
    }
  }
  const refuse = (path: string, type: string) => {
    throw new AppError('VALIDATION_FAILED', `${path}: content blocks of type '${type}' are not supported; send text blocks`, [{ path: `/${path.replaceAll('.', '/')}`, message: 'is not supported' }]);
  };
  if (Array.isArray(body.system)) body.system.forEach((b, i) => b.type !== 'text' && refuse(`system.${i}.type`, b.type));
  body.messages.forEach((m, i) => {
    if (Array.isArray(m.content)) m.content.forEach((b, j) => b.type !== 'text' && refuse(`messages.${i}.content.${j}.type`, b.type));
  });
}

const textOfBlocks = (blocks: Block[]) => blocks.map((b) => b.text ?? '').join('\n');

/** The request as the chat service takes a turn: `system` first, text blocks as text parts. */
function turnInputOf(body: AnthropicMessagesBody): TurnInput {
  const system = typeof body.system === 'string' ? body.system : body.system && textOfBlocks(body.system);
  const messages: TurnInput['messages'] = body.messages.map((m) => ({
    role: m.role,
    content: typeof m.content === 'string' ? m.content : m.content.map((b): ChatContentPart => ({ type: 'text', text: b.text ?? '' })),
  }));
  return {
    agentId: body.model,
    messages: system ? [{ role: 'system', content: system }, ...messages] : messages,
    temperature: body.temperature,
    maxTokens: body.max_tokens,
    sampling: { topP: body.top_p, stop: body.stop_sequences, endUser: body.metadata?.user_id ?? undefined },
  };
}

const usageOf = (u: Pick<Usage, 'promptTokens' | 'completionTokens'> | undefined, inputEstimate: number) => ({ input_tokens: u?.promptTokens ?? inputEstimate, output_tokens: u?.completionTokens ?? 0 });

function message(id: string, model: string, text: string, stopReason: string, usage: { input_tokens: number; output_tokens: number }) {
  return { id, type: 'message', role: 'assistant', model, content: text ? [{ type: 'text', text }] : [], stop_reason: stopReason, stop_sequence: null, usage };
}

/** The error a failed answer gets on `/v1/messages`, with Retry-After where the caller may try again. */
function sendFailure(reply: FastifyReply, error: { code: string; message: string; retryAfterSeconds?: number }, requestId: string): FastifyReply {
  const { status, body } = anthropicError(isErrorCode(error.code) ? error.code : 'UPSTREAM_ERROR', error.message, requestId);
  if (status === 429 || status === 529) void reply.header('retry-after', String(error.retryAfterSeconds ?? 1));
  return reply.status(status).send(body);
}

function storedFailure(row: MessageRow): { code: ErrorCode; message: string } {
  const code = (row.error_code && row.error_code in ErrorCodes ? row.error_code : 'UPSTREAM_ERROR') as ErrorCode;
  return { code, message: row.error_message ?? 'The answer failed' };
}

/** `/v1/messages`: Anthropic's Messages API, so Anthropic's SDKs and tools can use an agent by its id as the model name. */
export async function anthropicCompatRoutes(app: FastifyInstance, { deps, guards }: RouteOptions): Promise<void> {
  const { chat, config } = deps;
  app.addHook('onRequest', guards.requireUserOrXApiKey);
  // Anthropic's SDKs read the request id from `request-id`.
  app.addHook('onSend', async (request, reply) => {
    void reply.header('request-id', request.id);
  });
  reshapeErrors(app, reshapeAnthropicErrorBody);

  app.post('/messages', { schema: { body: AnthropicMessagesBody, response: AnthropicMessageResponses } }, async (request, reply) => {
    const body = request.body as AnthropicMessagesBody;
    refuseUnsupported(body);
    const requestId = String(request.id);
    const input = turnInputOf(body);
    const inputEstimate = estimatePromptTokens(input.messages);
    const turn = await startV1Turn(chat, request, reply, input, { route: '/v1/messages', body, stream: body.stream === true });

    if (turn.kind === 'stored') {
      // A repeated Idempotency-Key whose answer has settled (or runs elsewhere): the stored answer.
      const row = turn.row;
      servedHeaders(reply, body.model, row.endpoint_id);
      if (row.status === 'error') return sendFailure(reply, errorForViewer(storedFailure(row), actsAsAdmin(principalOf(request))), requestId);
      const stored = message(`msg_${row.id}`, row.model ?? body.model, row.content, 'end_turn', usageOf(row.total_tokens === null ? undefined : { promptTokens: row.prompt_tokens ?? 0, completionTokens: row.completion_tokens ?? 0 }, inputEstimate));
      if (!body.stream) return stored;
      const w = new EventWriter(openEventStream(reply));
      const { content, stop_reason, usage, ...start } = stored;
      w.write(sse('message_start', { message: { ...start, content: [], stop_reason: null, usage: { ...usage, output_tokens: 0 } } }), false);
      textBlock(w, content[0]?.text ?? '');
      w.end(messageEnd(stop_reason, usage));
      return reply;
    }

    const generation = turn.generation;
    if (!body.stream) {
      const result = await generation.done;
      servedHeaders(reply, body.model, result.endpointId);
      if (result.status === 'error' && result.error) return sendFailure(reply, result.error, requestId);
      return message(`msg_${generation.turnId}`, result.model ?? body.model, result.content, anthropicStopReasonOf(generation.providerFinishReason), usageOf(result.usage, inputEstimate));
    }
    streamMessage(reply, generation, { agentId: body.model, inputEstimate, holdMs: config.v1StreamHoldMs, requestId });
    return reply;
  });
}

/** One Anthropic SSE event: the `event:` name is repeated as `type` in the data, as Anthropic sends it. */
function sse(type: string, data: Record<string, unknown> = {}): string {
  return `event: ${type}\ndata: ${JSON.stringify({ type, ...data })}\n\n`;
}

const BLOCK_START = sse('content_block_start', { index: 0, content_block: { type: 'text', text: '' } });
const BLOCK_STOP = sse('content_block_stop', { index: 0 });
const textDelta = (text: string) => sse('content_block_delta', { index: 0, delta: { type: 'text_delta', text } });

/** A whole text block at once (a stored answer). */
function textBlock(w: EventWriter, text: string): void {
  w.write(BLOCK_START + (text ? textDelta(text) : '') + BLOCK_STOP, false);
}

function messageEnd(stopReason: string, usage: { input_tokens: number; output_tokens: number }): string {
  return sse('message_delta', { delta: { stop_reason: stopReason, stop_sequence: null }, usage }) + sse('message_stop');
}

interface StreamOptions {
  agentId: string;
  inputEstimate: number;
  /** Headers wait this long for the first token, so a failure before it gets an HTTP status. */
  holdMs: number;
  requestId: string;
}

/**
 * Streams an answer as Anthropic's events: message_start and a ping, one
 * text block (content_block_start, text_delta, content_block_stop),
 * message_delta with stop_reason and usage, message_stop. As on
 * /v1/chat/completions the headers leave with the first token (or after
 * `holdMs`), so a failure before it is an HTTP error the SDKs raise as
 * their classes; a failure after it is Anthropic's `error` event.
 * Reasoning is not sent (a thinking block needs Anthropic's signature).
 */
function streamMessage(reply: FastifyReply, generation: Generation, o: StreamOptions): void {
  let writer: EventWriter | undefined;
  let blockOpen = false;
  let usage: { prompt_tokens: number; completion_tokens: number } | undefined;
  let gone = false;
  const open = (): EventWriter => {
    if (writer) return writer;
    clearTimeout(hold);
    servedHeaders(reply, o.agentId, generation.servedEndpointId);
    writer = new EventWriter(openEventStream(reply));
    const start = message(`msg_${generation.turnId}`, generation.servedModel ?? o.agentId, '', '', { input_tokens: o.inputEstimate, output_tokens: 0 });
    writer.write(sse('message_start', { message: { ...start, stop_reason: null } }) + sse('ping'), false);
    return writer;
  };
  const hold = setTimeout(() => open().flush(), o.holdMs);
  const failInStream = (code: ErrorCode, text: string) => {
    const { body } = anthropicError(code, text, o.requestId);
    writer?.write(sse('error', { error: body.error }), true);
  };
  const unsubscribe = generation.subscribe(2, (event: GenerationEvent) => {
    if (gone) return;
    switch (event.event) {
      case 'chunk': {
        const w = open();
        // The first text goes out at once; later text is coalesced (EventWriter).
        w.write((blockOpen ? '' : BLOCK_START) + textDelta((event.payload as { content: string }).content), !blockOpen);
        blockOpen = true;
        return;
      }
      case 'usage':
        usage = event.payload as typeof usage;
        return;
      case 'error': {
        if (!writer) return; // Before the headers: the HTTP status tells it, at `end`.
        const e = event.payload as { code: string; message: string };
        failInStream(isErrorCode(e.code) ? e.code : 'UPSTREAM_ERROR', e.message);
        return;
      }
      case 'end': {
        clearTimeout(hold);
        setImmediate(unsubscribe);
        const { status } = event.payload as { status: string };
        if (!writer && status === 'error') {
          void generation.done.then((result) => sendFailure(reply, result.error ?? { code: 'UPSTREAM_ERROR', message: 'The answer failed' }, o.requestId));
          return;
        }
        const w = open();
        if (status === 'error') {
          w.end();
          return;
        }
        const served = usageOf(usage && { promptTokens: usage.prompt_tokens, completionTokens: usage.completion_tokens }, o.inputEstimate);
        w.end((blockOpen ? '' : BLOCK_START) + BLOCK_STOP + messageEnd(anthropicStopReasonOf(generation.providerFinishReason), served));
        return;
      }
      case 'reset': {
        if (!blockOpen || !writer) return;
        // Anthropic's stream cannot take text back either: the client is told, and the stream ends.
        // The restarted answer goes on and is stored (GET /api/chat/stream replays it).
        failInStream('UPSTREAM_INTERRUPTED', `The answer broke off upstream and was restarted; this stream cannot retract the text already sent. The complete answer is stored as message ${generation.turnId}.`);
        writer.end();
        gone = true;
        setImmediate(unsubscribe);
        return;
      }
      // Tools are refused on /v1/messages (refuseUnsupported): its turns make no function calls.
      case 'toolCall':
      case 'reasoning':
      case 'start':
      case 'chatId':
      case 'status':
      case 'interactive':
        return;
    }
  });
  reply.raw.on('close', () => {
    gone = true;
    clearTimeout(hold);
    unsubscribe();
    writer?.abandon();
  });
}
