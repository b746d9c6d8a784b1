import type { ServerResponse } from 'node:http';
import { Type } from '@sinclair/typebox';
import type { FastifyInstance, FastifyReply } from 'fastify';
import type { RouteOptions } from '../../app.js';
import type { MessageRow } from '../../db/schema.js';
import type { ToolChoice } from '../providers/types.js';
import { storedToolCalls } from './chat-repository.js';
import { AppError, ErrorCodes, type ErrorCode } from '../../errors.js';
import { actsAsAdmin, principalOf } from '../../plugins/authenticate.js';
import { errorForViewer } from '../resilience/failure-policy.js';
import type { Generation, GenerationEvent, GenerationResult } from './generation.js';
import { ModelResponses, ModelsResponses, OpenAICompletionResponses } from './response-schema.js';
import { isErrorCode, openAIError, reshapeErrorBody } from './openai-errors.js';
import { MAX_TOOLS, V1Message, V1Tool, V1ToolChoice, assistantMessage, toolCallDelta, turnMessages, turnTools, type V1ToolFields } from './openai-function-calling.js';
import { LIMITS } from './schema.js';
import { EventWriter, openEventStream } from './sse.js';
import { reshapeErrors, servedHeaders, startV1Turn } from './v1-turn.js';
import { RepeatedPrefix } from './continuation.js';

/**
 * The OpenAI chat-completions request. Fields listed here are honoured or
 * refused with a 400 naming them; other OpenAI fields are accepted and
 * ignored (README, "/v1 coverage").
 */
const OpenAIChatBody = Type.Object({
  model: Type.String({ minLength: 1, maxLength: 64, description: 'The agent id' }),
  messages: Type.Array(V1Message, { minItems: 1, maxItems: LIMITS.messages }),
  stream: Type.Optional(Type.Boolean()),
  stream_options: Type.Optional(Type.Object({ include_usage: Type.Optional(Type.Boolean()) })),
  temperature: Type.Optional(Type.Number({ minimum: 0, maximum: 2 })),
  top_p: Type.Optional(Type.Number({ minimum: 0, maximum: 1 })),
  max_tokens: Type.Optional(Type.Integer({ minimum: 1, maximum: 200_000 })),
  max_completion_tokens: Type.Optional(Type.Integer({ minimum: 1, maximum: 200_000 })),
  stop: Type.Optional(Type.Union([Type.String({ minLength: 1, maxLength: 256 }), Type.Array(Type.String({ minLength: 1, maxLength: 256 }), { maxItems: 4 })])),
  seed: Type.Optional(Type.Integer({ minimum: -(2 ** 53) + 1, maximum: 2 ** 53 - 1 })),
  response_format: Type.Optional(
    Type.Object({ type: Type.Union([Type.Literal('text'), Type.Literal('json_object'), Type.Literal('json_schema')]), json_schema: Type.Optional(Type.Record(Type.String(), Type.Unknown())) }, { additionalProperties: false }),
  ),
  n: Type.Optional(Type.Integer({ minimum: 1, maximum: 128 })),
  user: Type.Optional(Type.String({ maxLength: 256 })),
  tools: Type.Optional(Type.Array(V1Tool, { maxItems: MAX_TOOLS })),
  tool_choice: Type.Optional(V1ToolChoice),
  parallel_tool_calls: Type.Optional(Type.Boolean()),
});

interface OpenAIChatBody {
  model: string;
  messages: V1Message[];
  stream?: boolean;
  stream_options?: { include_usage?: boolean };
  temperature?: number;
  top_p?: number;
  max_tokens?: number;
  max_completion_tokens?: number;
  stop?: string | string[];
  seed?: number;
  response_format?: { type: string; json_schema?: Record<string, unknown> };
  user?: string;
  n?: number;
  tools?: V1ToolFields['tools'];
  tool_choice?: ToolChoice;
  parallel_tool_calls?: boolean;
  functions?: unknown;
  function_call?: unknown;
}

function usageOf(row: MessageRow) {
  return row.total_tokens !== null ? { prompt_tokens: row.prompt_tokens ?? 0, completion_tokens: row.completion_tokens ?? 0, total_tokens: row.total_tokens } : undefined;
}

function usageOfResult(result: GenerationResult) {
  return result.usage ? { prompt_tokens: result.usage.promptTokens, completion_tokens: result.usage.completionTokens, total_tokens: result.usage.totalTokens } : undefined;
}

/** Refuses what LLMChat does not do, rather than answering as if it had been ignored. */
function refuseUnsupported(body: OpenAIChatBody): void {
  if ((body.n ?? 1) > 1) throw new AppError('VALIDATION_FAILED', 'n above 1 is not supported: send one request per completion', [{ path: '/n', message: 'must be 1' }]);
  const functions = body.functions;
  if (functions !== undefined && !(Array.isArray(functions) && functions.length === 0)) {
    throw new AppError('VALIDATION_FAILED', 'functions (the deprecated form of function calling) is not supported: send tools instead', [{ path: '/functions', message: 'is not supported; use tools' }]);
  }
  if (body.function_call !== undefined) {
    throw new AppError('VALIDATION_FAILED', 'function_call (the deprecated form of tool_choice) is not supported: send tool_choice instead', [{ path: '/function_call', message: 'is not supported; use tool_choice' }]);
  }
}

/** The error a failed answer gets on `/v1`, with Retry-After for a rate-limited provider. */
function sendFailure(reply: FastifyReply, error: { code: string; message: string; retryAfterSeconds?: number }, requestId: string): FastifyReply {
  const code: ErrorCode = isErrorCode(error.code) ? error.code : 'UPSTREAM_ERROR';
  const { status, body } = openAIError(code, error.message, requestId);
  if (status === 429 || status === 503) void reply.header('retry-after', String(error.retryAfterSeconds ?? 1));
  return reply.status(status).send(body);
}

/** `/v1`: the OpenAI wire format, so any OpenAI SDK can use an agent by its id as the model name. */
export async function openaiCompatRoutes(app: FastifyInstance, { deps, guards }: RouteOptions): Promise<void> {
  const { chat, agents, config } = deps;
  app.addHook('onRequest', guards.requireUser);
  // Every error of these routes in OpenAI's shape: the app's error handler writes ours, this rewrites it.
  reshapeErrors(app, reshapeErrorBody);

  const model = (a: { id: string; name: string }, created: number) => ({ id: a.id, object: 'model', created, owned_by: 'llmchat', name: a.name });

  app.get('/models', { schema: { response: ModelsResponses } }, async () => {
    const created = Math.floor(Date.now() / 1000);
    return { object: 'list', data: agents.listActive().map((a) => model(a, created)) };
  });

  app.get('/models/:id', { schema: { params: Type.Object({ id: Type.String({ minLength: 1, maxLength: 64 }) }), response: ModelResponses } }, async (request) => {
    const { id } = request.params as { id: string };
    const agent = agents.listActive().find((a) => a.id === id);
    if (!agent) throw new AppError('AGENT_NOT_FOUND', `The model '${id}' does not exist or is not available`);
    return model(agent, Math.floor(Date.now() / 1000));
  });

  app.post('/chat/completions', { schema: { body: OpenAIChatBody, response: OpenAICompletionResponses } }, async (request, reply) => {
    const body = request.body as OpenAIChatBody;
    refuseUnsupported(body);
    const principal = principalOf(request);
    const requestId = String(request.id);
    const turn = await startV1Turn(
      chat,
      request,
      reply,
      {
        agentId: body.model,
        messages: turnMessages(body.messages),
        tools: turnTools(body),
        temperature: body.temperature,
        maxTokens: body.max_completion_tokens ?? body.max_tokens,
        sampling: {
          topP: body.top_p,
          stop: typeof body.stop === 'string' ? [body.stop] : body.stop,
          seed: body.seed,
          responseFormat: body.response_format,
          endUser: body.user,
        },
      },
      { route: '/v1/chat/completions', body, stream: body.stream === true },
    );
    const created = Math.floor(Date.now() / 1000);
    if (turn.kind === 'stored') {
      // A repeated Idempotency-Key whose answer has settled (or runs elsewhere): the stored answer.
      const row = turn.row;
      const id = `chatcmpl-${row.id}`;
      servedHeaders(reply, body.model, row.endpoint_id);
      if (row.status === 'error') {
        const code = (row.error_code && row.error_code in ErrorCodes ? row.error_code : 'UPSTREAM_ERROR') as ErrorCode;
        return sendFailure(reply, errorForViewer({ code, message: row.error_message ?? 'The answer failed' }, actsAsAdmin(principal)), requestId);
      }
      const served = row.model ?? body.model;
      const toolCalls = storedToolCalls(row.metadata);
      // The finish reason is not stored: an answer that called functions ended for them.
      const finishReason = toolCalls ? 'tool_calls' : 'stop';
      if (!body.stream) return { id, object: 'chat.completion', created, model: served, choices: [{ index: 0, message: assistantMessage(row.content, row.reasoning, toolCalls), finish_reason: finishReason }], usage: usageOf(row) };
      const raw = openEventStream(reply);
      const frame = (choices: unknown[], extra: Record<string, unknown> = {}) => `data: ${JSON.stringify({ id, object: 'chat.completion.chunk', created, model: served, choices, ...extra })}\n\n`;
      raw.write(frame([{ index: 0, delta: { role: 'assistant', content: row.content }, finish_reason: null }]));
      toolCalls?.forEach((c, index) => raw.write(frame([{ index: 0, delta: toolCallDelta({ index, id: c.id, name: c.function.name, arguments: c.function.arguments }), finish_reason: null }])));
      raw.write(frame([{ index: 0, delta: {}, finish_reason: finishReason }]));
      if (body.stream_options?.include_usage && usageOf(row)) raw.write(frame([], { usage: usageOf(row) }));
      raw.end('data: [DONE]\n\n');
      return reply;
    }
    const generation = turn.generation;
    const id = `chatcmpl-${generation.turnId}`;

    if (!body.stream) {
      const result = await generation.done;
      servedHeaders(reply, body.model, result.endpointId);
      if (result.status === 'error' && result.error) return sendFailure(reply, result.error, requestId);
      return {
        id,
        object: 'chat.completion',
        created,
        model: result.model ?? body.model,
        choices: [{ index: 0, message: assistantMessage(result.content, result.reasoning, result.toolCalls), finish_reason: result.finishReason }],
        usage: usageOfResult(result),
      };
    }

    streamCompletion(reply, generation, { id, created, agentId: body.model, includeUsage: body.stream_options?.include_usage === true, holdMs: config.v1StreamHoldMs, requestId });
    return reply;
  });
}

interface StreamOptions {
  id: string;
  created: number;
  agentId: string;
  includeUsage: boolean;
  /** Headers wait this long for the first token, so a failure before it gets an HTTP status. */
  holdMs: number;
  requestId: string;
}

/**
 * Streams an answer as `chat.completion.chunk` events. The response's
 * headers leave with the first token (or after `holdMs`): until then a
 * failure can still be an HTTP error that the SDKs raise as their error
 * classes (a 429 their retry loop honours), not a 200 with an error inside.
 *
 * Text sent cannot be taken back. An answer that broke off is continued
 * (continuation.ts) and streams on seamlessly; one that had to start over
 * (`reset`) is followed while it repeats the text already sent, and goes
 * on past it; a restart that says something else ends the stream with an
 * error (the restarted answer is still finished and stored).
 */
function streamCompletion(reply: FastifyReply, generation: Generation, o: StreamOptions): void {
  let raw: ServerResponse | undefined;
  let writer: EventWriter | undefined;
  let model = o.agentId;
  let textSent = false;
  let usage: unknown;
  let gone = false;
  // What the client holds, and while a restarted answer repeats it, how far it has.
  let sentText = '';
  let sentReasoning = '';
  let repeat: { text: RepeatedPrefix; reasoning: RepeatedPrefix } | undefined;
  // Function-call pieces went out: their ids are the model's, so a restart can never repeat them.
  let callsSent = false;
  // Each chunk names the model of the call that produced it: after a fail-over mid-answer, the one that went on
  // with it, so the last chunks (finish reason, usage) name the model whose usage they carry.
  const servingModel = () => (model = generation.servedModel ?? model);
  const chunk = (delta: Record<string, unknown>, finishReason: string | null = null) =>
    `data: ${JSON.stringify({ id: o.id, object: 'chat.completion.chunk', created: o.created, model: servingModel(), choices: [{ index: 0, delta, finish_reason: finishReason }] })}\n\n`;
  const open = (): EventWriter => {
    if (writer) return writer;
    clearTimeout(hold);
    model = generation.servedModel ?? o.agentId;
    servedHeaders(reply, o.agentId, generation.servedEndpointId);
    raw = openEventStream(reply);
    writer = new EventWriter(raw);
    writer.write(chunk({ role: 'assistant', content: '' }), false);
    return writer;
  };
  const hold = setTimeout(() => open().flush(), o.holdMs);
  const text = (delta: Record<string, unknown>) => {
    const w = open();
    // The first text goes out at once; later text is coalesced (EventWriter).
    w.write(chunk(delta), !textSent);
    textSent = true;
  };
  const diverged = () => {
    if (!writer) return;
    const message = `The answer broke off upstream and was restarted differently; this stream cannot retract the text already sent. The complete answer is stored as message ${generation.turnId}.`;
    const { body } = openAIError('UPSTREAM_INTERRUPTED', message, o.requestId);
    writer.write(`data: ${JSON.stringify(body)}\n\n`, true);
    writer.end();
    gone = true;
    setImmediate(unsubscribe);
  };
  const unsubscribe = generation.subscribe(2, (event: GenerationEvent) => {
    if (gone) return;
    switch (event.event) {
      case 'chunk': {
        let content: string | undefined = (event.payload as { content: string }).content;
        if (repeat) {
          content = repeat.reasoning.passed ? repeat.text.accept(content) : undefined;
          if (content === undefined) return diverged();
          if (content === '') return;
        }
        sentText += content;
        text({ content });
        return;
      }
      case 'reasoning': {
        let content: string | undefined = (event.payload as { content: string }).content;
        if (repeat) {
          content = repeat.reasoning.accept(content);
          if (content === undefined) return diverged();
          if (content === '') return;
        }
        sentReasoning += content;
        text({ reasoning_content: content });
        return;
      }
      case 'toolCall': {
        // A restart still repeating the text sent has said something else.
        if (repeat && !(repeat.text.passed && repeat.reasoning.passed)) return diverged();
        callsSent = true;
        text(toolCallDelta(event.payload as { index: number; id?: string; name?: string; arguments: string }));
        return;
      }
      case 'usage':
        usage = event.payload;
        return;
      case 'error': {
        if (!writer) return; // Before the headers: the HTTP status tells it, at `end`.
        const e = event.payload as { code: string; message: string };
        const { body } = openAIError(isErrorCode(e.code) ? e.code : 'UPSTREAM_ERROR', e.message, o.requestId);
        writer.write(`data: ${JSON.stringify(body)}\n\n`, true);
        return;
      }
      case 'end': {
        clearTimeout(hold);
        setImmediate(unsubscribe);
        const { status, finishReason } = event.payload as { status: string; finishReason?: string };
        // A restart that ended before it repeated all the text sent: the client holds more than the answer.
        if (repeat && status !== 'error' && !(repeat.text.passed && repeat.reasoning.passed)) return diverged();
        if (!writer && status === 'error') {
          void generation.done.then((result) => sendFailure(reply, result.error ?? { code: 'UPSTREAM_ERROR', message: 'The answer failed' }, o.requestId));
          return;
        }
        const w = open();
        if (status !== 'error') w.write(chunk({}, finishReason ?? 'stop'), false);
        if (usage && o.includeUsage) {
          w.write(`data: ${JSON.stringify({ id: o.id, object: 'chat.completion.chunk', created: o.created, model: servingModel(), choices: [], usage })}\n\n`, false);
        }
        w.end('data: [DONE]\n\n');
        return;
      }
      case 'reset': {
        if (!textSent || !writer) return;
        if (callsSent) return diverged();
        // The OpenAI stream format cannot take text back: the restarted answer must first say what was sent.
        repeat = { text: new RepeatedPrefix(sentText), reasoning: new RepeatedPrefix(sentReasoning) };
        return;
      }
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
