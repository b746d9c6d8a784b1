import crypto from 'node:crypto';
import type { Logger } from 'pino';
import type { Config } from '../../config.js';
import type { DatabaseHandle } from '../../db/database.js';
import type { MessageRow } from '../../db/schema.js';
import { AppError } from '../../errors.js';
import type { Principal } from '../../plugins/authenticate.js';
import { Channels, type SharedState, type TurnEvent, type Unsubscribe } from '../../shared-state/shared-state.js';
import type { AgentsService } from '../agents/agents-service.js';
import type { ResolvedAgent } from '../agents/types.js';
import type { ProviderRegistry } from '../providers/registry.js';
import type { ChatContentPart, ChatMessage, ResolvedEndpoint } from '../providers/types.js';
import { createChatRepository, type ChatRepository } from './chat-repository.js';
import { Generation, type GenerationPlan, type GenerationResult } from './generation.js';
import type { CompletionBody, FeedbackBody } from './schema.js';
import { createSessionService } from './session-service.js';

export interface ChatServiceDeps {
  database: DatabaseHandle;
  state: SharedState;
  providers: ProviderRegistry;
  agents: AgentsService;
  config: Config;
  logger: Logger;
}

/** A turn as the chat routes ask for it, after the legacy `options` are merged. */
export interface TurnInput {
  agentId: string;
  messages: CompletionBody['messages'];
  chatId?: string | undefined;
  detail?: boolean | undefined;
  temperature?: number | undefined;
  maxTokens?: number | undefined;
  variables?: Record<string, unknown> | undefined;
}

const CONTEXT_MESSAGES = 40;
const DRAIN_DEADLINE_MS = 15_000;

function textOf(content: string | ChatContentPart[]): string {
  if (typeof content === 'string') return content;
  return content.map((p) => (p.type === 'text' ? p.text : '')).filter(Boolean).join('\n');
}

function titleFrom(text: string): string {
  const line = text.replace(/\s+/g, ' ').trim();
  return line.length > 60 ? `${line.slice(0, 57)}…` : line;
}

/** A stored user message back as content: multi-part content is kept as its JSON. */
function storedContent(stored: string): ChatMessage['content'] {
  if (!stored.startsWith('[')) return stored;
  try {
    const parsed: unknown = JSON.parse(stored);
    const isParts = Array.isArray(parsed) && parsed.length > 0 && parsed.every((p) => typeof p === 'object' && p !== null && 'type' in p);
    return isParts ? (parsed as ChatContentPart[]) : stored;
  } catch {
    return stored;
  }
}

function utcDay(now = new Date()): string {
  return now.toISOString().slice(0, 10);
}

/** Merges the legacy `options` object under top-level fields, as the original LLMChat did. */
export function turnInputFrom(body: CompletionBody): TurnInput {
  const o = body.options ?? {};
  return {
    agentId: body.agentId,
    messages: body.messages,
    chatId: body.chatId ?? o.chatId,
    detail: body.detail ?? o.detail,
    temperature: body.temperature ?? o.temperature,
    maxTokens: body.maxTokens ?? o.maxTokens,
    variables: body.variables ?? o.variables,
  };
}

export function createChatService(deps: ChatServiceDeps) {
  const { config, state, agents, providers, logger } = deps;
  const repo: ChatRepository = createChatRepository(deps.database);
  const running = new Map<string, Generation>();
  let unsubscribeStop: Unsubscribe | undefined;
  let draining = false;

  const generationDeps = {
    repo,
    state,
    providers,
    logger,
    checkpointIntervalMs: config.checkpointIntervalMs,
    eventBufferTtlSeconds: config.eventBufferTtlSeconds,
    onSettled: (generation: Generation, result: GenerationResult) => {
      running.delete(generation.turnId);
      const tokens = result.usage?.totalTokens ?? 0;
      if (tokens > 0 && quotaFor() > 0) {
        state.hit(`quota:${generation.plan.userId}:${utcDay()}`, 2 * 86_400, tokens).catch(() => undefined);
      }
    },
  };

  function quotaFor(): number {
    return config.dailyTokenQuota;
  }

  async function enforceLimits(principal: Principal, agentId: string, requestsPerMinute: number | undefined): Promise<void> {
    const minute = Math.floor(Date.now() / 60_000);
    try {
      if (config.chatRateLimitPerMinute > 0) {
        const used = await state.hit(`rl:chat:${principal.userId}:${minute}`, 60);
        if (used > config.chatRateLimitPerMinute) {
          throw new AppError('RATE_LIMITED', `Too many chat requests: at most ${config.chatRateLimitPerMinute} a minute`, undefined, { 'retry-after': String(60 - (Math.floor(Date.now() / 1000) % 60)) });
        }
      }
      if (requestsPerMinute && requestsPerMinute > 0) {
        const used = await state.hit(`rl:agent:${agentId}:${minute}`, 60);
        if (used > requestsPerMinute) {
          throw new AppError('RATE_LIMITED', `This agent takes at most ${requestsPerMinute} requests a minute`, undefined, { 'retry-after': String(60 - (Math.floor(Date.now() / 1000) % 60)) });
        }
      }
      const quota = quotaFor();
      if (quota > 0) {
        const used = Number((await state.get(`quota:${principal.userId}:${utcDay()}`)) ?? 0);
        if (used >= quota) throw new AppError('QUOTA_EXCEEDED', `Your daily token quota of ${quota} is used up; it resets at 00:00 UTC`);
      }
    } catch (err) {
      if (err instanceof AppError) throw err;
      // Shared state unreachable: limits fail open so chat keeps working.
      logger.warn({ err: (err as Error).message }, 'rate limit check failed; allowing the request');
    }
  }

  function launch(plan: GenerationPlan): Generation {
    const generation = new Generation(plan, generationDeps);
    running.set(plan.turnId, generation);
    generation.start();
    return generation;
  }

  /** Builds the provider's message list: stored context (when the provider keeps none) + the request's messages. */
  async function providerMessages(input: TurnInput, sessionId: string | undefined, keepsUpstreamContext: boolean, userId: string, excludeIds: string[], agentHasSystemPrompt: boolean): Promise<ChatMessage[]> {
    // The admin's system prompt is not the caller's to replace: client system messages pass only when the agent has none.
    const given: ChatMessage[] = input.messages.filter((m) => m.role !== 'system' || !agentHasSystemPrompt).map((m) => ({ role: m.role, content: m.content }));
    if (!sessionId || keepsUpstreamContext || given.length > 1) return given;
    const context = await repo.contextMessages(sessionId, userId, excludeIds, CONTEXT_MESSAGES);
    return [...context.map((m) => ({ role: m.role, content: m.content })), ...given];
  }

  function refuseWhileDraining(): void {
    if (draining) throw new AppError('NOT_READY', 'This instance is shutting down; retry on another', undefined, { 'retry-after': '1' });
  }

  /**
   * Checks limits, writes the turn (the acknowledgement point) and launches
   * its generation. Shared by new questions and regenerated answers.
   */
  async function beginTurn(
    principal: Principal,
    resolved: ResolvedAgent,
    input: TurnInput,
    write: { sessionId: string | undefined; userMessageId: string; userContent: string; title: string; replacesMessageId?: string; editedQuestion?: string | undefined },
  ): Promise<Generation> {
    const { agent } = resolved;
    await enforceLimits(principal, agent.id, agent.rateLimit?.requestsPerMinute);
    const turnId = crypto.randomUUID();
    const created = await repo.createTurn({ ...write, userId: principal.userId, agentId: agent.id, assistantMessageId: turnId });
    if (!created) throw new AppError('SESSION_NOT_FOUND', 'The chat session does not exist or is not yours');

    const primary = resolved.endpoints[0];
    const keepsUpstreamContext = primary?.provider === 'fastgpt' || (primary?.provider === 'dify' && created.providerChatId !== null);
    const messages = await providerMessages(input, write.sessionId, keepsUpstreamContext, principal.userId, [write.userMessageId, turnId], Boolean(agent.systemPrompt));
    return launch({
      turnId,
      sessionId: created.sessionId,
      userId: principal.userId,
      userMessageId: write.userMessageId,
      agentId: agent.id,
      endpoints: [...resolved.endpoints],
      upstreamStream: agent.features.supportsStream !== false,
      request: {
        messages,
        systemPrompt: agent.systemPrompt ?? undefined,
        temperature: input.temperature ?? agent.temperature ?? undefined,
        maxTokens: input.maxTokens ?? agent.maxTokens ?? undefined,
        // FastGPT keeps context under the platform's session id; Dify under its own conversation id.
        chatId: primary?.provider === 'dify' ? (created.providerChatId ?? undefined) : created.sessionId,
        detail: input.detail ?? agent.features.supportsDetail ?? false,
        variables: input.variables,
        responseChatItemId: turnId,
        user: principal.userId,
      },
    });
  }

  /** The endpoint that served an answer, if its agent is still active. */
  function endpointOf(agentId: string, endpointId: string): ResolvedEndpoint | undefined {
    try {
      return agents.getActive(agentId).endpoints.find((e) => e.id === endpointId);
    } catch {
      return undefined;
    }
  }

  return {
    repo,
    sessions: createSessionService({ repo, agents }),

    async start(): Promise<void> {
      unsubscribeStop = await state.subscribe(Channels.stopGeneration, (turnId) => running.get(turnId)?.stop());
    },

    get runningCount(): number {
      return running.size;
    },

    /**
     * Starts a turn: checks limits, writes the user message and a
     * `streaming` assistant message in one transaction (the acknowledgement
     * point), then launches the generation. Bad input throws before
     * anything is written.
     */
    async startTurn(principal: Principal, input: TurnInput): Promise<Generation> {
      refuseWhileDraining();
      const resolved = agents.getActive(input.agentId);
      const last = input.messages[input.messages.length - 1];
      if (!last || last.role !== 'user') throw new AppError('VALIDATION_FAILED', 'The last message must have role "user"');
      const userText = textOf(last.content);
      if (userText.trim().length === 0 && typeof last.content === 'string') throw new AppError('VALIDATION_FAILED', 'The last message is empty');
      return beginTurn(principal, resolved, input, {
        sessionId: input.chatId,
        userMessageId: crypto.randomUUID(),
        userContent: typeof last.content === 'string' ? last.content : JSON.stringify(last.content),
        title: titleFrom(userText || 'New chat'),
      });
    },

    /**
     * Regenerates the last answer of a session (or the one named by `dataId`).
     * With `content`, edits the last question first: the question's text and
     * the new streaming answer are written in one transaction.
     */
    async retry(principal: Principal, sessionId: string, options: { dataId?: string | undefined; detail?: boolean | undefined; content?: string | undefined }): Promise<Generation> {
      refuseWhileDraining();
      const session = await repo.findSession(sessionId, principal.userId);
      if (!session) throw new AppError('SESSION_NOT_FOUND', 'The chat session does not exist or is not yours');
      const target = options.dataId ? await repo.findMessage(options.dataId, principal.userId) : await repo.lastAssistantMessage(sessionId, principal.userId);
      if (!target || target.session_id !== sessionId || target.role !== 'assistant') throw new AppError('NOTHING_TO_RETRY', 'There is no answer to regenerate in this session');
      if (target.status === 'streaming') throw new AppError('GENERATION_RUNNING', 'That answer is still being generated; stop it first');
      const question = await repo.userMessageBefore(sessionId, principal.userId, target.seq);
      if (!question) throw new AppError('NOTHING_TO_RETRY', 'There is no question to answer again');
      const edited = options.content;
      if (edited !== undefined) {
        if (edited.trim().length === 0) throw new AppError('VALIDATION_FAILED', 'The edited question is empty');
        const last = options.dataId ? await repo.lastAssistantMessage(sessionId, principal.userId) : target;
        if (!last || last.id !== target.id) throw new AppError('NOT_LAST_QUESTION', 'Only the last question of a session can be edited');
      }
      const resolved = agents.getActive(session.agent_id);
      const content = edited ?? storedContent(question.content);
      return beginTurn(principal, resolved, { agentId: resolved.agent.id, messages: [{ role: 'user', content }], detail: options.detail }, {
        sessionId,
        userMessageId: question.id,
        userContent: edited ?? question.content,
        title: '',
        replacesMessageId: target.id,
        editedQuestion: edited,
      });
    },

    /** Stops a running generation wherever it runs. Owner only. */
    async stop(principal: Principal, target: { messageId?: string | undefined; chatId?: string | undefined }): Promise<{ messageId: string; stopped: boolean }> {
      let message = target.messageId ? await repo.findMessage(target.messageId, principal.userId) : undefined;
      if (!message && target.chatId) {
        const session = await repo.findSession(target.chatId, principal.userId);
        if (!session) throw new AppError('SESSION_NOT_FOUND', 'The chat session does not exist or is not yours');
        message = await repo.lastAssistantMessage(target.chatId, principal.userId);
      }
      if (!message || message.role !== 'assistant') throw new AppError('GENERATION_NOT_FOUND', 'No such answer');
      if (message.status !== 'streaming') return { messageId: message.id, stopped: false };
      const local = running.get(message.id);
      if (local) local.stop();
      else await state.publish(Channels.stopGeneration, message.id);
      return { messageId: message.id, stopped: true };
    },

    /** The live generation on this instance, if it runs here. */
    localGeneration(turnId: string): Generation | undefined {
      return running.get(turnId);
    },

    /** The answer a client reconnects to, owner only. */
    async ownAnswer(principal: Principal, turnId: string): Promise<MessageRow> {
      const message = await repo.findMessage(turnId, principal.userId);
      if (!message || message.role !== 'assistant') throw new AppError('MESSAGE_NOT_FOUND', 'No such answer');
      return message;
    },

    /** Events of a turn after `afterId` from the shared buffer (resumption on another instance); check ownership first. */
    eventsAfter(turnId: string, afterId: number): Promise<TurnEvent[]> {
      return state.readEvents(turnId, afterId);
    },

    async feedback(principal: Principal, body: FeedbackBody): Promise<{ messageId: string; rating: 'up' | 'down' | null; forwarded: boolean }> {
      const messageId = body.messageId ?? body.dataId;
      if (!messageId) throw new AppError('VALIDATION_FAILED', 'Name the answer: messageId (or dataId)');
      let rating: 'up' | 'down' | null;
      if (body.rating !== undefined) rating = body.rating;
      else if (body.userGoodFeedback) rating = 'up';
      else if (body.userBadFeedback) rating = 'down';
      else rating = null;
      const comment = body.comment ?? (rating === 'down' && body.userBadFeedback && body.userBadFeedback !== 'yes' ? body.userBadFeedback : undefined) ?? null;
      const message = await repo.findMessage(messageId, principal.userId);
      if (!message || message.role !== 'assistant') throw new AppError('MESSAGE_NOT_FOUND', 'No such answer');
      if (rating) await repo.upsertFeedback(message.id, principal.userId, rating, comment);
      else await repo.deleteFeedback(message.id, principal.userId);

      // Forward to providers that keep their own feedback (FastGPT, Dify); best effort.
      let forwarded = false;
      const endpoint = message.agent_id && message.endpoint_id ? endpointOf(message.agent_id, message.endpoint_id) : undefined;
      const adapter = endpoint ? providers.adapter(endpoint.provider) : undefined;
      if (endpoint && adapter?.feedback) {
        try {
          const session = await repo.findSession(message.session_id, principal.userId);
          forwarded = await adapter.feedback(
            {
              endpoint,
              chatId: endpoint.provider === 'dify' ? (message.provider_chat_id ?? session?.provider_chat_id ?? undefined) : message.session_id,
              messageId: endpoint.provider === 'dify' ? (message.provider_message_id ?? message.id) : message.id,
              rating,
              comment: comment ?? undefined,
              user: principal.userId,
            },
            AbortSignal.timeout(10_000),
          );
          if (forwarded && rating) await repo.markFeedbackForwarded(message.id, principal.userId);
        } catch (err) {
          logger.warn({ err: (err as Error).message, messageId }, 'forwarding feedback failed');
        }
      }
      return { messageId: message.id, rating, forwarded };
    },

    /** The agent's welcome text: configured, or asked of the provider (FastGPT init, Dify parameters). */
    async welcome(agentId: string): Promise<{ agentId: string; name: string; welcomeText: string }> {
      const resolved = agents.getActive(agentId);
      let welcomeText = resolved.agent.welcomeText ?? '';
      const primary = resolved.endpoints[0];
      if (!welcomeText && primary) {
        try {
          welcomeText = (await providers.welcomeText(primary)) ?? '';
        } catch (err) {
          logger.warn({ err: (err as Error).message, agentId }, 'welcome text lookup failed');
        }
      }
      if (!welcomeText) welcomeText = resolved.agent.description ? `${resolved.agent.name}: ${resolved.agent.description}` : `${resolved.agent.name}`;
      return { agentId, name: resolved.agent.name, welcomeText };
    },

    /** Stops taking turns and waits for running ones, up to a deadline; the rest end as interrupted. */
    async close(): Promise<void> {
      draining = true;
      const deadline = Date.now() + DRAIN_DEADLINE_MS;
      while (running.size > 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
      for (const generation of running.values()) generation.stop();
      await Promise.all([...running.values()].map((g) => g.done));
      await unsubscribeStop?.();
    },
  };
}

export type ChatService = ReturnType<typeof createChatService>;
