import { Type } from '@sinclair/typebox';
import type { FastifyInstance } from 'fastify';
import type { RouteOptions } from '../../app.js';
import type { MessageRow } from '../../db/schema.js';
import { AppError, ErrorCodes, type ErrorCode } from '../../errors.js';
import { actsAsAdmin, principalOf } from '../../plugins/authenticate.js';
import { errorForViewer } from '../resilience/failure-policy.js';
import type { Generation, GenerationEvent } from './generation.js';
import { idempotencyKeyOf, requestFingerprint } from './idempotency.js';
import { ChatMessageInput, LIMITS } from './schema.js';
import { EventWriter, openEventStream } from './sse.js';
import { setLimitHeaders } from './routes.js';

/** The OpenAI chat-completions request; unknown OpenAI fields are accepted and ignored. */
const OpenAIChatBody = Type.Object({
  model: Type.String({ minLength: 1, maxLength: 64, description: 'The agent id' }),
  messages: Type.Array(Type.Object({ role: ChatMessageInput.properties.role, content: ChatMessageInput.properties.content, name: Type.Optional(Type.String({ maxLength: 64 })) }, { additionalProperties: false }), { minItems: 1, maxItems: LIMITS.messages }),
  stream: Type.Optional(Type.Boolean()),
  stream_options: Type.Optional(Type.Object({ include_usage: Type.Optional(Type.Boolean()) })),
  temperature: Type.Optional(Type.Number({ minimum: 0, maximum: 2 })),
  max_tokens: Type.Optional(Type.Integer({ minimum: 1, maximum: 200_000 })),
  max_completion_tokens: Type.Optional(Type.Integer({ minimum: 1, maximum: 200_000 })),
  user: Type.Optional(Type.String({ maxLength: 256 })),
});

interface OpenAIChatBody {
  model: string;
  messages: { role: 'user' | 'assistant' | 'system'; content: string | { type: 'text'; text: string }[] }[];
  stream?: boolean;
  stream_options?: { include_usage?: boolean };
  temperature?: number;
  max_tokens?: number;
  max_completion_tokens?: number;
}

const REPEAT_WAIT_MS = 10 * 60_000;

function usageOf(row: MessageRow) {
  return row.total_tokens !== null ? { prompt_tokens: row.prompt_tokens ?? 0, completion_tokens: row.completion_tokens ?? 0, total_tokens: row.total_tokens } : undefined;
}

/** `/v1`: the OpenAI wire format, so any OpenAI SDK can use an agent by its id as the model name. */
export async function openaiCompatRoutes(app: FastifyInstance, { deps, guards }: RouteOptions): Promise<void> {
  const { chat, agents } = deps;
  app.addHook('onRequest', guards.requireUser);

  app.get('/models', async () => {
    const created = Math.floor(Date.now() / 1000);
    return { object: 'list', data: agents.listActive().map((a) => ({ id: a.id, object: 'model', created, owned_by: 'llmchat', name: a.name })) };
  });

  app.post('/chat/completions', { schema: { body: OpenAIChatBody } }, async (request, reply) => {
    const body = request.body as OpenAIChatBody;
    const principal = principalOf(request);
    const key = idempotencyKeyOf(request.headers['idempotency-key']);
    const started = await chat.startTurnOnce(
      principal,
      {
        agentId: body.model,
        messages: body.messages.map((m) => ({ role: m.role, content: m.content })),
        temperature: body.temperature,
        maxTokens: body.max_completion_tokens ?? body.max_tokens,
      },
      key === undefined ? undefined : { key, fingerprint: requestFingerprint('/v1/chat/completions', body) },
    );
    const created = Math.floor(Date.now() / 1000);
    const model = body.model;
    let generation: Generation;
    if (started.kind === 'started') {
      generation = started.generation;
      setLimitHeaders(reply, generation);
    } else {
      // A repeated Idempotency-Key: the same turn again, never a second generation.
      reply.header('idempotent-replayed', 'true');
      const local = chat.localGeneration(started.turnId);
      if (local && body.stream) {
        if (local.plan.userId !== principal.userId) throw new AppError('MESSAGE_NOT_FOUND', 'No such answer');
        generation = local;
      } else {
        const row = await chat.settledAnswer(principal, started.turnId, REPEAT_WAIT_MS);
        const id = `chatcmpl-${row.id}`;
        if (row.status === 'error') {
          const code = (row.error_code && row.error_code in ErrorCodes ? row.error_code : 'UPSTREAM_ERROR') as ErrorCode;
          const shown = errorForViewer({ code, message: row.error_message ?? 'The answer failed' }, actsAsAdmin(principal));
          return reply.status(ErrorCodes[code]).send({ error: { code, message: shown.message, requestId: String(request.id), type: 'upstream_error' } });
        }
        const message = { role: 'assistant', content: row.content, ...(row.reasoning ? { reasoning_content: row.reasoning } : {}) };
        if (!body.stream) return { id, object: 'chat.completion', created, model, choices: [{ index: 0, message, finish_reason: 'stop' }], usage: usageOf(row) };
        const raw = openEventStream(reply);
        const frame = (choices: unknown[], extra: Record<string, unknown> = {}) => `data: ${JSON.stringify({ id, object: 'chat.completion.chunk', created, model, choices, ...extra })}\n\n`;
        raw.write(frame([{ index: 0, delta: { role: 'assistant', content: row.content }, finish_reason: null }]));
        raw.write(frame([{ index: 0, delta: {}, finish_reason: 'stop' }]));
        if (body.stream_options?.include_usage && usageOf(row)) raw.write(frame([], { usage: usageOf(row) }));
        raw.end('data: [DONE]\n\n');
        return reply;
      }
    }
    const id = `chatcmpl-${generation.turnId}`;

    if (!body.stream) {
      const result = await generation.done;
      if (result.status === 'error' && result.error) {
        const code = (result.error.code in ErrorCodes ? result.error.code : 'UPSTREAM_ERROR') as ErrorCode;
        return reply.status(ErrorCodes[code]).send({ error: { code, message: result.error.message, requestId: String(request.id), type: 'upstream_error' } });
      }
      return {
        id,
        object: 'chat.completion',
        created,
        model,
        choices: [{ index: 0, message: { role: 'assistant', content: result.content, ...(result.reasoning ? { reasoning_content: result.reasoning } : {}) }, finish_reason: 'stop' }],
        usage: result.usage ? { prompt_tokens: result.usage.promptTokens, completion_tokens: result.usage.completionTokens, total_tokens: result.usage.totalTokens } : undefined,
      };
    }

    const raw = openEventStream(reply);
    const writer = new EventWriter(raw);
    let textSent = false;
    const chunk = (delta: Record<string, unknown>, finishReason: string | null = null) =>
      `data: ${JSON.stringify({ id, object: 'chat.completion.chunk', created, model, choices: [{ index: 0, delta, finish_reason: finishReason }] })}\n\n`;
    writer.write(chunk({ role: 'assistant', content: '' }), true);
    let usage: unknown;
    const text = (frame: string) => {
      writer.write(frame, !textSent);
      textSent = true;
    };
    const unsubscribe = generation.subscribe(2, (event: GenerationEvent) => {
      switch (event.event) {
        case 'chunk':
          text(chunk({ content: (event.payload as { content: string }).content }));
          return;
        case 'reasoning':
          text(chunk({ reasoning_content: (event.payload as { content: string }).content }));
          return;
        case 'usage':
          usage = event.payload;
          return;
        case 'error': {
          const e = event.payload as { code: string; message: string };
          writer.write(`data: ${JSON.stringify({ error: { code: e.code, message: e.message, type: 'upstream_error' } })}\n\n`, true);
          return;
        }
        case 'end': {
          const status = (event.payload as { status: string }).status;
          if (status !== 'error') writer.write(chunk({}, 'stop'), false);
          if (usage && body.stream_options?.include_usage) {
            writer.write(`data: ${JSON.stringify({ id, object: 'chat.completion.chunk', created, model, choices: [], usage })}\n\n`, false);
          }
          writer.end('data: [DONE]\n\n');
          setImmediate(unsubscribe);
          return;
        }
        case 'reset': {
          if (!textSent) return;
          // The OpenAI stream format cannot take text back: the client is told, and the stream ends.
          // The restarted answer goes on and is stored (GET /api/chat/stream replays it).
          const message = `The answer broke off upstream and was restarted; this stream cannot retract the text already sent. The complete answer is stored as message ${generation.turnId}.`;
          writer.write(`data: ${JSON.stringify({ error: { code: 'UPSTREAM_INTERRUPTED', message, type: 'upstream_error' } })}\n\n`, true);
          writer.end();
          setImmediate(() => unsubscribe());
          return;
        }
        case 'start':
        case 'chatId':
        case 'status':
        case 'interactive':
          return;
      }
    });
    raw.on('close', () => {
      unsubscribe();
      writer.abandon();
    });
    return reply;
  });
}
