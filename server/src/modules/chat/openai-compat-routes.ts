import { Type } from '@sinclair/typebox';
import type { FastifyInstance } from 'fastify';
import type { RouteOptions } from '../../app.js';
import { ErrorCodes, type ErrorCode } from '../../errors.js';
import { principalOf } from '../../plugins/authenticate.js';
import type { GenerationEvent } from './generation.js';
import { ChatMessageInput, LIMITS } from './schema.js';
import { EventWriter, openEventStream } from './sse.js';

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
    const generation = await chat.startTurn(principalOf(request), {
      agentId: body.model,
      messages: body.messages.map((m) => ({ role: m.role, content: m.content })),
      temperature: body.temperature,
      maxTokens: body.max_completion_tokens ?? body.max_tokens,
    });
    const id = `chatcmpl-${generation.turnId}`;
    const created = Math.floor(Date.now() / 1000);
    const model = body.model;

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
          // The OpenAI format cannot take back text already sent: the stream ends with an error instead.
          writer.write(`data: ${JSON.stringify({ error: { code: 'UPSTREAM_ERROR', message: 'The answer was restarted after a failure; ask again', type: 'upstream_error' } })}\n\n`, true);
          writer.end('data: [DONE]\n\n');
          setImmediate(unsubscribe);
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
