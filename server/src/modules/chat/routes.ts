import type { FastifyInstance, FastifyReply } from 'fastify';
import type { MessageRow } from '../../db/schema.js';
import type { RouteOptions } from '../../app.js';
import { AppError, ErrorCodes, type ErrorBody, type ErrorCode } from '../../errors.js';
import { ok } from '../../http/response.js';
import { actsAsAdmin, principalOf, type Principal } from '../../plugins/authenticate.js';
import { bindToRequestLog, callerOf } from '../../plugins/request-tracing.js';
import { spanContextOf } from '../../tracing/tracing.js';
import { storedToolCalls, storedTraceparent } from './chat-repository.js';
import { errorForViewer } from '../resilience/failure-policy.js';
import { SharedStateUnavailable, type TurnEvent } from '../../shared-state/shared-state.js';
import { limitHeaders } from '../quotas/token-budgets.js';
import { turnInputFrom, type ChatService } from './chat-service.js';
import { idempotencyKeyOf, requestFingerprint } from './idempotency.js';
import type { Generation, GenerationResult } from './generation.js';
import {
  ChatIdParams,
  CompletionBody,
  FeedbackBody,
  HistoryDeleteAllQuery,
  HistoryListQuery,
  InitQuery,
  ResumeQuery,
  ContinueBody,
  RetryBody,
  StopBody,
} from './schema.js';
import {
  CompletionResponses,
  DeletedCountResponses,
  DeletedResponses,
  FeedbackResponses,
  HistoryListResponses,
  HistoryResponses,
  InitResponses,
  StopResponses,
  StreamResponses,
} from './response-schema.js';
import { EventWriter, formatEvent, openEventStream, parseLastEventId, pipeGeneration } from './sse.js';

const RESUME_MAX_MS = 10 * 60_000;

/** The non-streaming answer: the original LLMChat body (an OpenAI-like completion) plus our ids. */
export function completionBody(generation: Generation, result: GenerationResult) {
  return {
    id: generation.turnId,
    object: 'chat.completion' as const,
    created: Math.floor(Date.now() / 1000),
    model: result.model ?? generation.plan.agentId,
    choices: [{ index: 0, message: { role: 'assistant' as const, content: result.content }, finish_reason: result.status === 'complete' ? 'stop' : result.status }],
    usage: result.usage ? { prompt_tokens: result.usage.promptTokens, completion_tokens: result.usage.completionTokens, total_tokens: result.usage.totalTokens } : undefined,
    reasoning: result.reasoning ?? undefined,
    interactive: result.interactive ?? undefined,
    chatId: generation.plan.sessionId,
    sessionId: generation.plan.sessionId,
    messageId: generation.turnId,
    status: result.status,
  };
}

/** The non-streaming answer rebuilt from a stored turn (a repeated Idempotency-Key). */
export function completionFromRow(row: MessageRow) {
  return {
    id: row.id,
    object: 'chat.completion' as const,
    created: Math.floor((row.completed_at ?? row.created_at).getTime() / 1000),
    model: row.model ?? row.agent_id ?? '',
    choices: [{ index: 0, message: { role: 'assistant' as const, content: row.content }, finish_reason: row.status === 'complete' ? 'stop' : row.status }],
    usage: row.total_tokens !== null ? { prompt_tokens: row.prompt_tokens ?? 0, completion_tokens: row.completion_tokens ?? 0, total_tokens: row.total_tokens } : undefined,
    reasoning: row.reasoning ?? undefined,
    interactive: row.interactive ?? undefined,
    chatId: row.session_id,
    sessionId: row.session_id,
    messageId: row.id,
    status: row.status,
  };
}

/** A stored answer's error as `principal` may see it: the detail for admins, the code's generic sentence for everyone else. */
function storedError(row: Pick<MessageRow, 'error_code' | 'error_message'>, principal: Principal): { code: string; message: string } {
  return errorForViewer({ code: row.error_code ?? 'UPSTREAM_ERROR', message: row.error_message ?? 'The answer failed' }, actsAsAdmin(principal));
}

function errorReply(reply: FastifyReply, error: { code: string; message: string }, ids: { messageId: string; chatId: string }) {
  const code = (error.code in ErrorCodes ? error.code : 'UPSTREAM_ERROR') as ErrorCode;
  const body: ErrorBody = { error: { code, message: error.message, requestId: String(reply.request.id), details: ids } };
  return reply.status(ErrorCodes[code]).send(body);
}

/**
 * Streams a turn to a client from after `afterId`: live from the generation
 * when it runs here; else replayed from the shared buffer and followed
 * through it (the generation runs on another instance: shared state tells
 * this instance of each append, no polling); else rebuilt from the stored
 * answer when the buffer is gone. A follow that cannot go on (shared state
 * lost, buffer gone while the answer runs elsewhere, RESUME_MAX_MS passed)
 * ends the stream without `end`, so the client reconnects.
 */
async function streamTurn(chat: ChatService, reply: FastifyReply, principal: Principal, turnId: string, afterId: number): Promise<FastifyReply> {
  const local = chat.localGeneration(turnId);
  if (local) {
    if (local.plan.userId !== principal.userId) throw new AppError('MESSAGE_NOT_FOUND', 'No such answer');
    // A generation taken over here holds only its own events; the dead instance's come from the buffer.
    const earlier = local.firstEventId > afterId + 1 ? (await chat.eventsAfter(turnId, afterId).catch(() => [])).filter((e) => e.id < local.firstEventId) : [];
    pipeGeneration(reply, local, Math.max(afterId, local.firstEventId - 1), earlier);
    return reply;
  }
  const message = await chat.ownAnswer(principal, turnId);
  let first: TurnEvent[];
  try {
    first = await chat.eventsAfter(turnId, afterId);
  } catch (err) {
    if (!(err instanceof SharedStateUnavailable)) throw err;
    if (message.status === 'streaming') {
      throw new AppError('SHARED_STATE_UNAVAILABLE', 'This answer is being generated on another instance and cannot be followed right now; reconnect shortly', undefined, { 'retry-after': '2' });
    }
    first = []; // a finished answer is rebuilt from the database below
  }
  const raw = openEventStream(reply);
  const writer = new EventWriter(raw);
  let last = afterId;
  let ended = false;
  const write = (events: readonly TurnEvent[]) => {
    for (const event of events) {
      if (event.id <= last || ended) continue;
      const frame = formatEvent(turnId, event);
      last = event.id;
      if (event.event === 'end') {
        ended = true;
        writer.end(frame);
        return;
      }
      writer.write(frame, false);
    }
    writer.flush();
  };
  write(first);
  if (!ended && message.status !== 'streaming') {
    // The answer is finished but its buffer is gone or lacks the end (expired, Redis down or restarted):
    // rebuild it from what was stored. A client that holds part of it drops that first.
    const at = new Date().toISOString();
    const rebuilt: { event: string; payload: unknown }[] = [];
    if (last > 0) rebuilt.push({ event: 'reset', payload: { reason: 'replay', timestamp: at } });
    rebuilt.push({ event: 'chunk', payload: { content: message.content } });
    storedToolCalls(message.metadata)?.forEach((c, index) => rebuilt.push({ event: 'toolCall', payload: { index, id: c.id, name: c.function.name, arguments: c.function.arguments } }));
    if (message.status === 'error') rebuilt.push({ event: 'error', payload: { ...storedError(message, principal), timestamp: at } });
    rebuilt.push({ event: 'end', payload: { status: message.status, messageId: message.id, sessionId: message.session_id, timestamp: at } });
    const from = last;
    write(rebuilt.map((e, i) => ({ id: from + 1 + i, event: e.event, data: JSON.stringify(e.payload) })));
  }
  if (ended) return reply;
  const deadline = setTimeout(() => {
    stop();
    writer.end();
  }, RESUME_MAX_MS);
  const stop = chat.followEvents(turnId, last, {
    onEvents: write,
    // `end` was written with the events; any other reason ends the stream without it, and the client reconnects.
    onClose: () => {
      clearTimeout(deadline);
      writer.end();
    },
  });
  raw.on('close', () => {
    clearTimeout(deadline);
    stop();
    writer.abandon();
  });
  return reply;
}

/** X-RateLimit-* of the limit with the least room that admitted the turn; none when no limit applied. */
export function setLimitHeaders(reply: FastifyReply, generation: Generation): void {
  const status = generation.plan.limits?.status;
  if (status) void reply.headers(limitHeaders(status));
}

async function answer(reply: FastifyReply, generation: Generation, stream: boolean): Promise<unknown> {
  setLimitHeaders(reply, generation);
  if (stream) {
    pipeGeneration(reply, generation);
    return reply;
  }
  const result = await generation.done;
  if (result.status === 'error' && result.error) return errorReply(reply, result.error, { messageId: generation.turnId, chatId: generation.plan.sessionId });
  return reply.send(ok(completionBody(generation, result)));
}

export async function chatRoutes(app: FastifyInstance, { deps, guards }: RouteOptions): Promise<void> {
  const { chat } = deps;
  app.addHook('onRequest', guards.requireUser);

  app.post('/completions', { schema: { body: CompletionBody, response: CompletionResponses } }, async (request, reply) => {
    const body = request.body as CompletionBody;
    const principal = principalOf(request);
    const key = idempotencyKeyOf(request.headers['idempotency-key']);
    const started = await chat.startTurnOnce(principal, { ...turnInputFrom(body), receivedAt: performance.now() - reply.elapsedTime }, key === undefined ? undefined : { key, fingerprint: requestFingerprint('/api/chat/completions', body) }, callerOf(request));
    if (started.kind === 'started') return answer(reply, started.generation, body.stream === true);
    // A repeated Idempotency-Key: the same turn again, never a second generation.
    reply.header('idempotent-replayed', 'true');
    bindToRequestLog(request, { turnId: started.turnId });
    if (body.stream === true) return streamTurn(chat, reply, principal, started.turnId, 0);
    const row = await chat.settledAnswer(principal, started.turnId, RESUME_MAX_MS);
    if (row.status === 'error') return errorReply(reply, storedError(row, principal), { messageId: row.id, chatId: row.session_id });
    return reply.send(ok(completionFromRow(row)));
  });

  /** Reconnect to a turn: replays events after Last-Event-ID, then follows live, on any instance. */
  app.get('/stream', { schema: { querystring: ResumeQuery, response: StreamResponses } }, async (request, reply) => {
    const query = request.query as { messageId: string; lastEventId?: number };
    const header = request.headers['last-event-id'];
    const parsed = parseLastEventId(typeof header === 'string' ? header : undefined);
    const afterId = parsed && parsed.turnId === query.messageId ? parsed.afterId : (query.lastEventId ?? 0);
    const principal = principalOf(request);
    bindToRequestLog(request, { turnId: query.messageId });
    const { tracing } = deps;
    if (tracing && request.traceContext) {
      // A span in this request's trace, linked to the turn's own (held by its generation, or stored with the answer).
      const local = chat.localGeneration(query.messageId);
      const original = local?.trace?.span.spanContext() ?? spanContextOf(storedTraceparent((await chat.ownAnswer(principal, query.messageId)).metadata));
      const span = tracing.tracer.startSpan(
        'chat turn resume',
        { attributes: { 'llmchat.turn.id': query.messageId, 'llmchat.resume.after_event_id': afterId }, links: original ? [{ context: original, attributes: { 'llmchat.link': 'original_turn' } }] : [] },
        request.traceContext,
      );
      reply.raw.once('close', () => span.end());
    }
    return streamTurn(chat, reply, principal, query.messageId, afterId);
  });

  app.post('/stop', { schema: { body: StopBody, response: StopResponses } }, async (request) => {
    const body = request.body as { messageId?: string; chatId?: string };
    return ok(await chat.stop(principalOf(request), body));
  });

  app.get('/init', { schema: { querystring: InitQuery, response: InitResponses } }, async (request, reply) => {
    const query = request.query as { appId: string; chatId?: string; stream?: boolean };
    const welcome = await chat.welcome(query.appId);
    const data = {
      chatId: query.chatId ?? null,
      appId: query.appId,
      welcomeText: welcome.welcomeText,
      app: { name: welcome.name, chatConfig: { welcomeText: welcome.welcomeText } },
    };
    if (!query.stream) return ok(data);
    const raw = openEventStream(reply);
    let id = 0;
    const send = (event: string, payload: unknown) => raw.write(`id: init:${++id}\nevent: ${event}\ndata: ${JSON.stringify(payload)}\n\n`);
    send('start', { id: query.appId, timestamp: new Date().toISOString(), appId: query.appId, type: 'init' });
    const text = welcome.welcomeText;
    for (let i = 0; i < text.length; i += 16) send('chunk', { content: text.slice(i, i + 16) });
    send('complete', { data, timestamp: new Date().toISOString() });
    send('end', { timestamp: new Date().toISOString() });
    raw.end();
    return reply;
  });

  app.get('/history', { schema: { querystring: HistoryListQuery, response: HistoryListResponses } }, async (request) => {
    const query = request.query as { agentId?: string; page?: number; pageSize?: number };
    const page = query.page ?? 1;
    const pageSize = query.pageSize ?? 20;
    const result = await chat.sessions.list(principalOf(request), { agentId: query.agentId, page, pageSize, archived: 'exclude' });
    return {
      ...ok(
        result.items.map((s) => ({
          chatId: s.id,
          appId: s.agentId,
          agentId: s.agentId,
          title: s.title,
          createdAt: s.createdAt.toISOString(),
          updatedAt: s.updatedAt.toISOString(),
          messageCount: s.messageCount,
        })),
      ),
      total: result.total,
      page,
      pageSize,
    };
  });

  app.get('/history/:chatId', { schema: { params: ChatIdParams, querystring: HistoryListQuery, response: HistoryResponses } }, async (request) => {
    const { chatId } = request.params as { chatId: string };
    const query = request.query as { pageSize?: number };
    const { session, messages, hasMore } = await chat.sessions.get(principalOf(request), chatId, { limit: query.pageSize ?? 200 });
    return ok({
      chatId: session.id,
      appId: session.agent_id,
      agentId: session.agent_id,
      title: session.title,
      messages: messages.map((m) => ({
        id: m.id,
        dataId: m.id,
        role: m.role,
        content: m.content,
        reasoning: m.reasoning ?? undefined,
        status: m.status,
        feedback: m.rating === 'up' ? 'good' : m.rating === 'down' ? 'bad' : null,
        createdAt: m.created_at.toISOString(),
      })),
      metadata: { total: session.message_count, hasMore },
    });
  });

  app.delete('/history/:chatId', { schema: { params: ChatIdParams, response: DeletedResponses } }, async (request) => {
    const { chatId } = request.params as { chatId: string };
    await chat.sessions.remove(principalOf(request), chatId);
    return ok(null);
  });

  app.delete('/history', { schema: { querystring: HistoryDeleteAllQuery, response: DeletedCountResponses } }, async (request) => {
    const { agentId } = request.query as { agentId: string };
    const deleted = await chat.sessions.removeAllOfAgent(principalOf(request), agentId);
    return ok({ deleted });
  });

  app.post('/history/:chatId/retry', { schema: { params: ChatIdParams, body: RetryBody, response: CompletionResponses } }, async (request, reply) => {
    const { chatId } = request.params as { chatId: string };
    const body = (request.body ?? {}) as { dataId?: string; stream?: boolean; detail?: boolean; content?: string };
    const generation = await chat.retry(principalOf(request), chatId, { dataId: body.dataId, detail: body.detail, content: body.content }, callerOf(request));
    return answer(reply, generation, body.stream === true);
  });

  /** Continues a stopped answer where it stopped (chat-service continueAnswer); streams like a new turn. */
  app.post('/history/:chatId/continue', { schema: { params: ChatIdParams, body: ContinueBody, response: CompletionResponses } }, async (request, reply) => {
    const { chatId } = request.params as { chatId: string };
    const body = (request.body ?? {}) as { dataId?: string; stream?: boolean; detail?: boolean };
    const generation = await chat.continueAnswer(principalOf(request), chatId, { dataId: body.dataId, detail: body.detail }, callerOf(request));
    return answer(reply, generation, body.stream === true);
  });

  app.post('/feedback', { schema: { body: FeedbackBody, response: FeedbackResponses } }, async (request) => {
    return ok(await chat.feedback(principalOf(request), request.body as FeedbackBody));
  });
}
