import crypto from 'node:crypto';
import type { Context } from '@opentelemetry/api';
import type { Logger } from 'pino';
import { upstreamTimeouts, type Config } from '../../config.js';
import { bindIds, childLogger } from '../../logger.js';
import type { DatabaseHandle } from '../../db/database.js';
import type { MessageRow } from '../../db/schema.js';
import { AppError, type ErrorCode } from '../../errors.js';
import { actsAsAdmin, type Principal } from '../../plugins/authenticate.js';
import { DegradedNotice } from '../../shared-state/degraded.js';
import { Channels, type SharedState, type StopFollowing, type TurnEvent, type TurnFollowHandler, type Unsubscribe } from '../../shared-state/shared-state.js';
import type { AgentsService } from '../agents/agents-service.js';
import type { ResolvedAgent } from '../agents/types.js';
import type { ProviderRegistry } from '../providers/registry.js';
import type { ChatContentPart, ChatMessage, ResolvedEndpoint } from '../providers/types.js';
import { UpstreamError } from '../providers/upstream-error.js';
import type { Admission } from '../providers/upstream-slots.js';
import { abortableSleep, type ResilienceDeps } from '../resilience/attempt-loop.js';
import { createFirstTokenStats } from '../resilience/first-token-stats.js';
import type { BreakerService } from '../resilience/breakers.js';
import type { FailureLog } from '../resilience/failure-log.js';
import { createChatRepository, type ChatRepository, type ClaimedTurn, type TurnOptions } from './chat-repository.js';
import { TurnEventBuffer } from './event-buffer.js';
import { createIdempotencyStore } from './idempotency.js';
import { TakeoverService } from './takeover.js';
import { Generation, type GenerationPlan, type GenerationResult, type TurnScope } from './generation.js';
import { partialAnswer, planContinuation } from './continuation.js';
import type { Tracing } from '../../tracing/tracing.js';
import { spanContextOf } from '../../tracing/tracing.js';
import { TurnTrace } from '../../tracing/turn-trace.js';
import { providerCallsTools, isToolMessage } from '../providers/tool-calls.js';
import type { CompletionBody, FeedbackBody } from './schema.js';
import { createSessionService } from './session-service.js';
import { createTurnLimits, tokensOfTurn, type TurnAdmitted } from './turn-limits.js';
import { estimatePromptTokens } from '../quotas/token-budgets.js';
import type { UserBudgetDirectory } from '../quotas/user-budgets.js';
import type { Metrics } from '../metrics/metrics.js';
import { namesAttachments, type AttachmentsService } from '../attachments/attachments-service.js';
import { storedContent } from '../attachments/stored-question.js';

export interface ChatServiceDeps {
  database: DatabaseHandle;
  state: SharedState;
  providers: ProviderRegistry;
  agents: AgentsService;
  config: Config;
  logger: Logger;
  breakers: BreakerService;
  failures: FailureLog;
  /** Tests fix the backoff's jitter and sleep; defaults: Math.random, a timer. */
  random?: () => number;
  sleep?: (ms: number, signal: AbortSignal) => Promise<void>;
  /** Names this instance as the owner of the answers it runs (takeover); one per process. */
  instanceId: string;
  /** Users' own token budgets, in memory. */
  budgets: UserBudgetDirectory;
  /** Attachments of questions: checked before a turn is written, loaded for the provider call. */
  attachments: AttachmentsService;
  /** The app's metrics (the app always hands them in; unit tests may not). */
  metrics?: Metrics | undefined;
  /** Spans of each turn; undefined when tracing is off. */
  tracing?: Tracing | undefined;
}

/**
 * Who asks for a turn, as the HTTP layer knows it: the request's logger
 * (reqId, userId and traceId bound) and its span's context.
 */
export interface TurnCaller {
  log: Logger;
  trace: Context | undefined;
}

/** Retries, breakers and deadlines for upstream calls, from the configuration. */
export function resilienceFrom(deps: Pick<ChatServiceDeps, 'config' | 'logger' | 'breakers' | 'failures' | 'random' | 'sleep' | 'metrics' | 'state'>): ResilienceDeps {
  const { config } = deps;
  return {
    breakers: deps.breakers,
    failures: deps.failures,
    defaultTimeouts: upstreamTimeouts(config),
    retry: {
      maxAttempts: config.upstreamMaxAttempts,
      baseDelayMs: config.upstreamRetryBaseMs,
      maxDelayMs: config.upstreamRetryMaxMs,
      retryAfterMaxMs: config.upstreamRetryAfterMaxMs,
    },
    random: deps.random ?? Math.random,
    sleep: deps.sleep ?? abortableSleep,
    now: Date.now,
    logger: deps.logger,
    metrics: deps.metrics,
    firstTokens: createFirstTokenStats({ state: deps.state }),
  };
}

/** How long a non-streaming repeat follows the buffer for `end` before it reads the stored answer again. */
const SETTLE_FOLLOW_MS = 5_000;

/** What an idempotent start gives: a new generation, or the earlier turn a repeated key names. */
export type TurnStart = { kind: 'started'; generation: Generation } | { kind: 'repeat'; turnId: string };

/** A turn as the chat routes ask for it, after the legacy `options` are merged. */
export interface TurnInput {
  agentId: string;
  /** The request's messages; `tool` messages and assistant tool calls come through `/v1` only. */
  messages: ChatMessage[];
  chatId?: string | undefined;
  detail?: boolean | undefined;
  temperature?: number | undefined;
  maxTokens?: number | undefined;
  variables?: Record<string, unknown> | undefined;
  /** Sampling options of the OpenAI wire format (`/v1`), passed to providers that take them. */
  sampling?: TurnOptions['sampling'];
  /** Function calling (`/v1`): tools offered, tool_choice, parallel_tool_calls. */
  tools?: TurnOptions['tools'];
  /** When the request arrived (performance.now()), for the turn's metrics. */
  receivedAt?: number | undefined;
  /** The new session stays out of the owner's chat list (a `/v1` call that did not ask to keep one). */
  hidden?: boolean | undefined;
}

const CONTEXT_MESSAGES = 40;
/** Events reach the shared buffer (for replay on another instance) at most this late; one timer for all turns. */
const EVENT_BUFFER_INTERVAL_MS = 40;
/** After a failed acknowledgement write, turns are written before their upstream call starts for this long. */
const EARLY_START_PAUSE_MS = 5_000;
/**
 * Each run of an answer numbers its events in its own block of ids: the
 * first run from 1, the first takeover from 1_000_001, the next from
 * 2_000_001. The instance that died may have sent a client events that never
 * reached the shared buffer, so a takeover cannot continue at "last buffered
 * + 1" without reusing ids that client holds; a new block is past them all.
 */
const TAKEOVER_ID_BLOCK = 1_000_000;

/** The first event id of a run that goes on after events up to `lastId`: the start of the next block. */
function nextIdBlock(lastId: number): number {
  return (Math.floor(lastId / TAKEOVER_ID_BLOCK) + 1) * TAKEOVER_ID_BLOCK + 1;
}

function textOf(content: string | ChatContentPart[]): string {
  if (typeof content === 'string') return content;
  return content.map((p) => (p.type === 'text' ? p.text : '')).filter(Boolean).join('\n');
}

function titleFrom(text: string): string {
  const line = text.replace(/\s+/g, ' ').trim();
  return line.length > 60 ? `${line.slice(0, 57)}…` : line;
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
  const repo: ChatRepository = createChatRepository(deps.database, deps.instanceId);
  const idempotency = createIdempotencyStore(deps.database.db, config.idempotencyKeyTtlSeconds);
  const running = new Map<string, Generation>();
  let unsubscribeStop: Unsubscribe | undefined;
  let draining = false;

  const events = new TurnEventBuffer({ state, logger, ttlSeconds: config.eventBufferTtlSeconds, intervalMs: EVENT_BUFFER_INTERVAL_MS });
  const generationDeps = {
    repo,
    events,
    providers,
    logger,
    checkpointIntervalMs: config.checkpointIntervalMs,
    checkpointNotice: new DegradedNotice(logger, 'saving partial answers while they stream (checkpoints)', Date.now, 'the database'),
    resilience: resilienceFrom(deps),
    metrics: deps.metrics,
    onSettled: (generation: Generation, result: GenerationResult) => {
      running.delete(generation.turnId);
      // A handed-over answer is settled by the instance that takes it over; only the stored answer's usage counts.
      if (generation.plan.limits?.reserved && !generation.leftToAnotherInstance) {
        limits.settle(generation.turnId, tokensOfTurn(result, estimatePromptTokens(generation.plan.request.messages)));
      }
    },
  };

  const limits = createTurnLimits({ state, config, budgets: deps.budgets, logger, onRefused: (kind, scope) => deps.metrics?.refused(kind, scope) });

  /** When the acknowledgement write last failed (ms since epoch); early starts pause for EARLY_START_PAUSE_MS after it. */
  let writeFailedAt = 0;

  /**
   * The turn's logger and spans. The caller's logger gets the turn id bound
   * (no new logger per turn); a turn without a caller (a takeover) gets one.
   */
  function turnScope(caller: TurnCaller | undefined, turnId: string, userId: string, agentId: string, takeover?: { linkTo: string | undefined; previousOwner: string | null }): TurnScope {
    let trace: TurnTrace | undefined;
    if (deps.tracing) {
      const attributes = { 'llmchat.turn.id': turnId, 'llmchat.agent.id': agentId };
      if (takeover) {
        const linked = spanContextOf(takeover.linkTo);
        trace = TurnTrace.start(deps.tracing.tracer, 'chat turn takeover', undefined, { ...attributes, 'llmchat.takeover.previous_owner': takeover.previousOwner ?? '' }, linked ? [{ context: linked, attributes: { 'llmchat.link': 'original_turn' } }] : []);
      } else {
        trace = TurnTrace.start(deps.tracing.tracer, 'chat turn', caller?.trace, attributes);
      }
    }
    if (caller) {
      bindIds(caller.log, { turnId });
      return { log: caller.log, trace };
    }
    return { log: childLogger(logger, trace ? { turnId, userId, traceId: trace.traceId } : { turnId, userId }, config.logFormat), trace };
  }

  function launch(plan: GenerationPlan, admission: Admission | undefined, scope: TurnScope): Generation {
    const generation = new Generation(plan, generationDeps, admission, scope);
    running.set(plan.turnId, generation);
    generation.start();
    return generation;
  }

  /** Builds the provider's message list: stored context (when the provider keeps none) + the request's messages. */
  async function providerMessages(input: TurnInput, sessionId: string | undefined, keepsUpstreamContext: boolean, userId: string, excludeIds: string[], agentHasSystemPrompt: boolean): Promise<ChatMessage[]> {
    // The admin's system prompt is not the caller's to replace: client system messages pass only when the agent has none.
    const given: ChatMessage[] = input.messages
      .filter((m) => m.role !== 'system' || !agentHasSystemPrompt)
      .map((m) => (m.toolCalls === undefined && m.toolCallId === undefined ? { role: m.role, content: m.content } : { role: m.role, content: m.content, toolCalls: m.toolCalls, toolCallId: m.toolCallId }));
    if (!sessionId || keepsUpstreamContext || given.length > 1) return given;
    const context = await repo.contextMessages(sessionId, userId, excludeIds, CONTEXT_MESSAGES);
    // A stored question with attachments is its parts' JSON: it goes back as parts (its attachments stay in the context).
    return [...context.map((m) => ({ role: m.role, content: m.role === 'user' ? storedContent(m.content) : m.content })), ...given];
  }

  /**
   * A slot to the agent's first upstream, taken before the turn is written:
   * when every slot stays taken for UPSTREAM_QUEUE_TIMEOUT_MS the turn is
   * refused with 503 UPSTREAM_BUSY and nothing is written, rather than
   * acknowledged and then failed for our own queue.
   */
  async function admit(resolved: ResolvedAgent): Promise<Admission | undefined> {
    const first = resolved.endpoints[0];
    if (first === undefined) return undefined;
    try {
      return await providers.admit(first);
    } catch (err) {
      if (err instanceof UpstreamError && err.kind === 'busy') {
        const retryAfter = String(Math.max(1, Math.ceil(config.upstreamQueueTimeoutMs / 1000)));
        throw new AppError('UPSTREAM_BUSY', 'Too many answers are streaming from this agent\'s model provider on this server; try again shortly', undefined, { 'retry-after': retryAfter });
      }
      // An endpoint URL that does not parse fails its call, with the provider's error, like before.
      return undefined;
    }
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
    write: {
      sessionId: string | undefined;
      userMessageId: string;
      userContent: string;
      title: string;
      replacesMessageId?: string;
      replacesQuestionId?: string | undefined;
      turnId?: string;
      editedQuestion?: string | undefined;
      idempotency?: { key: string; fingerprint: string };
      hidden?: boolean | undefined;
    },
    caller: TurnCaller | undefined,
  ): Promise<Generation> {
    const { agent } = resolved;
    const turnId = write.turnId ?? crypto.randomUUID();
    const scope = turnScope(caller, turnId, principal.userId, agent.id);
    let admitted: TurnAdmitted | undefined;
    let admission: Admission | undefined;
    try {
      // Limits and budgets first (one shared-state round trip when any applies), then an upstream slot.
      admitted = await limits.admit({ turnId, userId: principal.userId, agent, messages: input.messages, maxTokens: input.maxTokens });
      admission = await admit(resolved);
      return await writeAndLaunch(principal, resolved, input, { ...write, turnId }, admission, admitted, scope);
    } catch (err) {
      // Not acknowledged: nothing runs, so nothing stays reserved.
      admission?.release();
      if (admitted?.reserved) limits.settle(turnId, 0);
      scope.trace?.end({ 'llmchat.turn.status': 'refused' }, err instanceof AppError ? err.code : 'INTERNAL');
      throw err;
    }
  }

  /** beginTurn once the turn holds its upstream slot: writes the turn and starts its generation. */
  async function writeAndLaunch(
    principal: Principal,
    resolved: ResolvedAgent,
    input: TurnInput,
    write: Parameters<typeof beginTurn>[3] & { turnId: string },
    admission: Admission | undefined,
    admitted: TurnAdmitted,
    scope: TurnScope,
  ): Promise<Generation> {
    const { agent } = resolved;
    const turnId = write.turnId;
    const options = { temperature: input.temperature, maxTokens: input.maxTokens, variables: input.variables, detail: input.detail, sampling: input.sampling, tools: input.tools };
    const newSessionId = write.sessionId === undefined ? crypto.randomUUID() : undefined;
    const trace = scope.trace;
    const writing = repo.createTurn({ ...write, newSessionId, userId: principal.userId, agentId: agent.id, assistantMessageId: turnId, options, traceparent: trace?.traceparent });
    if (trace) {
      const writeSpan = trace.phase('turn write');
      writing.then(
        () => writeSpan.end(),
        () => {
          writeSpan.setAttribute('error.type', 'write_failed');
          writeSpan.end();
        },
      );
    }
    // A new session's turn needs nothing from the write: its upstream call starts while the turn is written
    // (Generation.startEarly). Not while writes are failing, so an outage does not cost an upstream call per refusal.
    let early: Generation | undefined;
    if (newSessionId !== undefined && write.replacesMessageId === undefined && Date.now() - writeFailedAt > EARLY_START_PAUSE_MS) {
      const turn = { turnId, sessionId: newSessionId, contextSessionId: undefined, userId: principal.userId, userMessageId: write.userMessageId, providerChatId: null, errorDetail: actsAsAdmin(principal) };
      // Should planning fail, the write still settles; its outcome is not this error's concern.
      void writing.catch(() => undefined);
      early = new Generation({ ...(await planFor(resolved, input, turn)), limits: admitted }, generationDeps, admission, scope);
      early.startEarly();
    }
    let created: Awaited<typeof writing>;
    try {
      created = await writing;
    } catch (err) {
      writeFailedAt = Date.now();
      early?.cancel();
      throw err;
    }
    if (!created) {
      early?.cancel();
      throw new AppError('SESSION_NOT_FOUND', 'The chat session does not exist or is not yours');
    }
    if (early) {
      running.set(turnId, early);
      early.start();
      return early;
    }

    const plan = await planFor(resolved, input, {
      turnId,
      sessionId: created.sessionId,
      contextSessionId: write.sessionId,
      userId: principal.userId,
      userMessageId: write.userMessageId,
      providerChatId: created.providerChatId,
      errorDetail: actsAsAdmin(principal),
    });
    return launch({ ...plan, limits: admitted }, admission, scope);
  }

  /**
   * The generation plan of an answer: its endpoints, the provider's message
   * list and the request options. `contextSessionId` is the session whose
   * stored messages may be sent as context (none for a new session).
   */
  async function planFor(
    resolved: ResolvedAgent,
    input: TurnInput,
    turn: { turnId: string; sessionId: string; contextSessionId: string | undefined; userId: string; userMessageId: string; providerChatId: string | null; errorDetail?: boolean },
    resume?: GenerationPlan['resume'],
  ): Promise<GenerationPlan> {
    const { agent } = resolved;
    const primary = resolved.endpoints[0];
    const keepsUpstreamContext = primary?.provider === 'fastgpt' || (primary?.provider === 'dify' && turn.providerChatId !== null);
    const given = await providerMessages(input, turn.contextSessionId, keepsUpstreamContext, turn.userId, [turn.userMessageId, turn.turnId], Boolean(agent.systemPrompt));
    // Only a turn whose messages name attachments reads them (a text-only turn pays one scan of its parts).
    const messages = namesAttachments(given) ? await deps.attachments.load(turn.userId, given, agent.features) : given;
    return {
      turnId: turn.turnId,
      sessionId: turn.sessionId,
      userId: turn.userId,
      userMessageId: turn.userMessageId,
      agentId: agent.id,
      endpoints: [...resolved.endpoints],
      retry: agent.retry,
      hedge: agent.hedge,
      contentPolicy: agent.contentPolicy,
      upstreamStream: agent.features.supportsStream !== false,
      resume,
      // A taken-over answer's asker is not known here: it gets the generic sentence, the stored answer the detail.
      errorDetail: turn.errorDetail === true,
      receivedAt: input.receivedAt,
      request: {
        messages,
        systemPrompt: agent.systemPrompt ?? undefined,
        temperature: input.temperature ?? agent.temperature ?? undefined,
        maxTokens: input.maxTokens ?? agent.maxTokens ?? undefined,
        ...input.sampling,
        ...input.tools,
        // FastGPT keeps context under the platform's session id; Dify under its own conversation id.
        chatId: primary?.provider === 'dify' ? (turn.providerChatId ?? undefined) : turn.sessionId,
        detail: input.detail ?? agent.features.supportsDetail ?? false,
        variables: input.variables,
        responseChatItemId: turn.turnId,
        user: turn.userId,
      },
    };
  }

  /** Resolves when the turn's buffer shows its `end`, when the follow ends by itself (absent, Redis away), or after `ms`. */
  function endOfTurn(turnId: string, ms: number): Promise<void> {
    return new Promise((resolve) => {
      let settled = false;
      // The follow may deliver before followEvents returns: its stop is kept once it exists.
      const follow: { stop?: () => void } = {};
      const done = () => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        follow.stop?.();
        resolve();
      };
      const timer = setTimeout(done, ms);
      follow.stop = state.followEvents(turnId, 0, { onEvents: (events) => events.some((e) => e.event === 'end') && done(), onClose: done });
      if (settled) follow.stop();
    });
  }

  /**
   * A turn that uses function calling goes only to endpoints whose provider
   * has it (FastGPT and Dify have not): the others are left out of its
   * fallbacks, and an agent with none left is refused.
   */
  function forTools(resolved: ResolvedAgent, input: TurnInput): ResolvedAgent {
    const usesTools = (input.tools?.tools?.length ?? 0) > 0 || input.messages.some(isToolMessage);
    if (!usesTools) return resolved;
    const capable = resolved.endpoints.filter((e) => providerCallsTools(e.provider));
    if (capable.length === resolved.endpoints.length) return resolved;
    if (capable.length === 0) {
      const providers = [...new Set(resolved.endpoints.map((e) => e.provider))].join(', ');
      throw new AppError('VALIDATION_FAILED', `Function calling (tools) is not supported by agent '${resolved.agent.id}': its provider (${providers}) has no function-calling API`, [{ path: '/tools', message: 'is not supported by this agent\'s provider' }]);
    }
    return { ...resolved, endpoints: capable };
  }

  /** Checks a new question (nothing is written) and shapes its turn. */
  function prepareTurn(input: TurnInput) {
    refuseWhileDraining();
    const resolved = forTools(agents.getActive(input.agentId), input);
    const last = input.messages[input.messages.length - 1];
    // A function-calling exchange continues after the tool's result.
    if (!last || (last.role !== 'user' && last.role !== 'tool')) throw new AppError('VALIDATION_FAILED', 'The last message must have role "user" (or "tool")');
    const userText = textOf(last.content);
    if (userText.trim().length === 0 && typeof last.content === 'string' && last.role === 'user') throw new AppError('VALIDATION_FAILED', 'The last message is empty');
    const write = {
      sessionId: input.chatId,
      userMessageId: crypto.randomUUID(),
      userContent: typeof last.content === 'string' ? last.content : JSON.stringify(last.content),
      title: titleFrom(userText || 'New chat'),
      hidden: input.hidden,
    };
    return { resolved, write };
  }

  /** The question's parts, when it has some: only then are its attachments checked (a text-only turn skips the check without an await). */
  function questionParts(input: TurnInput): ChatContentPart[] | undefined {
    const content = input.messages[input.messages.length - 1]?.content;
    return typeof content === 'string' ? undefined : content;
  }

  /** A question's attachments must be the asker's and of kinds the agent takes; nothing is written otherwise. */
  function checkAttachments(principal: Principal, resolved: ResolvedAgent, parts: ChatContentPart[]): Promise<void> {
    return deps.attachments.checkQuestion(principal.userId, parts, resolved.agent.features, resolved.agent.id);
  }

  /**
   * Runs again, on this instance, an answer claimed from an instance that
   * died: the same question, options and context; its events start with
   * `reset`, in a new block of ids (TAKEOVER_ID_BLOCK). The answer goes on
   * from its partial text where its endpoint can continue it (Generation's
   * `resumeFrom`).
   */
  async function resumeTurn(claimed: ClaimedTurn): Promise<void> {
    const buffered = await state.readEvents(claimed.id, 0).catch(() => [] as TurnEvent[]);
    const lastBuffered = buffered.at(-1)?.id ?? 0;
    const firstEventId = nextIdBlock(lastBuffered);
    let resolved: ResolvedAgent;
    try {
      resolved = agents.getActive(claimed.agentId ?? '');
    } catch {
      await endUnresumable(claimed, firstEventId, 'AGENT_INACTIVE', 'The agent of this answer was disabled or deleted while it was being generated');
      return;
    }
    const question = await repo.userMessageBefore(claimed.sessionId, claimed.userId, claimed.seq);
    if (!question) {
      await endUnresumable(claimed, firstEventId, 'GENERATION_NOT_FOUND', 'The question of this answer is gone');
      return;
    }
    const input: TurnInput = { agentId: resolved.agent.id, messages: [{ role: 'user', content: storedContent(question.content) }], ...claimed.options };
    // A turn with tools goes on only where the first run could have served it (forTools).
    let runnable: ResolvedAgent;
    try {
      runnable = forTools(resolved, input);
    } catch (err) {
      await endUnresumable(claimed, firstEventId, 'AGENT_INACTIVE', (err as Error).message);
      return;
    }
    const plan = await planFor(
      runnable,
      input,
      { turnId: claimed.id, sessionId: claimed.sessionId, contextSessionId: claimed.sessionId, userId: claimed.userId, userMessageId: question.id, providerChatId: claimed.providerChatId },
      { reason: 'takeover', firstEventId, previousOwner: claimed.previousOwner, partial: partialAnswer(claimed.content, buffered) },
    );
    // The dead instance's reservation, if it made one, is settled by this run (one round trip per taken-over turn).
    const scope = turnScope(undefined, claimed.id, claimed.userId, resolved.agent.id, { linkTo: claimed.traceparent, previousOwner: claimed.previousOwner });
    launch({ ...plan, limits: { reserved: true, status: undefined } }, undefined, scope);
  }

  /** Ends a claimed answer that cannot be run again, with a clear error, in the database and in its events. */
  async function endUnresumable(claimed: ClaimedTurn, firstEventId: number, code: ErrorCode, message: string): Promise<void> {
    await repo.finishTurn(claimed.id, claimed.sessionId, { status: 'error', content: claimed.content, reasoning: null, errorCode: code, errorMessage: message });
    const at = new Date().toISOString();
    events.append(claimed.id, { id: firstEventId, event: 'error', data: JSON.stringify({ code, message, timestamp: at }) });
    events.append(claimed.id, { id: firstEventId + 1, event: 'end', data: JSON.stringify({ status: 'error', messageId: claimed.id, sessionId: claimed.sessionId, timestamp: at }) });
    await events.finish(claimed.id);
  }

  const takeover = new TakeoverService({
    repo,
    state,
    logger,
    instanceId: deps.instanceId,
    heartbeatTtlMs: Math.round(config.instanceHeartbeatTtlSeconds * 1000),
    scanIntervalMs: config.takeoverScanIntervalMs,
    runningTurns: () => running.keys(),
    runsHere: (turnId) => running.has(turnId),
    handOver: (turnId) => running.get(turnId)?.handOver(),
    resume: (claimed) => {
      deps.metrics?.takeover();
      return resumeTurn(claimed);
    },
  });

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
      await takeover.start();
    },

    get runningCount(): number {
      return running.size;
    },

    /** The group writers' figures (metrics). */
    writerStats() {
      return repo.writerStats();
    },

    /** True once close() began: new turns are refused. */
    get draining(): boolean {
      return draining;
    },

    /**
     * Starts a turn: checks limits, writes the user message and a
     * `streaming` assistant message in one transaction (the acknowledgement
     * point), then launches the generation. Bad input throws before
     * anything is written.
     */
    async startTurn(principal: Principal, input: TurnInput, caller?: TurnCaller): Promise<Generation> {
      const { resolved, write } = prepareTurn(input);
      const parts = questionParts(input);
      if (parts) await checkAttachments(principal, resolved, parts);
      return beginTurn(principal, resolved, input, write, caller);
    },

    /**
     * startTurn with an Idempotency-Key: the first request with a key starts
     * the turn; a repeat (same user, key and request) gets that turn back and
     * starts nothing; the same key with another request is refused. Bad input
     * is refused before the key is written.
     */
    async startTurnOnce(principal: Principal, input: TurnInput, key: { key: string; fingerprint: string } | undefined, caller?: TurnCaller): Promise<TurnStart> {
      const { resolved, write } = prepareTurn(input);
      const parts = questionParts(input);
      if (parts) await checkAttachments(principal, resolved, parts);
      if (!key) return { kind: 'started', generation: await beginTurn(principal, resolved, input, write, caller) };
      // Two rounds: a concurrent request with the same key may win the write between our lookup and our write.
      for (let round = 0; round < 2; round++) {
        const found = await idempotency.lookup(principal.userId, key.key, key.fingerprint);
        if (found.kind === 'conflict') throw new AppError('IDEMPOTENCY_KEY_REUSED', 'This Idempotency-Key was already used with a different request; use a new key for a new request');
        // A repeat: the key was written with its turn, so the turn is there.
        if (found.kind === 'repeat') return { kind: 'repeat', turnId: found.turnId };
        try {
          return { kind: 'started', generation: await beginTurn(principal, resolved, input, { ...write, idempotency: key }, caller) };
        } catch (err) {
          // Nothing was written: the session is not the caller's, or the key was taken meanwhile (look again).
          if (!(err instanceof AppError && err.code === 'SESSION_NOT_FOUND')) throw err;
          if ((await idempotency.lookup(principal.userId, key.key, key.fingerprint)).kind === 'free') throw err;
        }
      }
      throw new AppError('IDEMPOTENCY_KEY_IN_PROGRESS', 'A request with this Idempotency-Key is being handled; retry shortly', undefined, { 'retry-after': '1' });
    },

    /**
     * Regenerates the last answer of a session (or the one named by `dataId`).
     * With `content`, edits the last question first: the new question and
     * the new streaming answer are written in one transaction. Either way the
     * earlier answer (and question) is kept as an earlier version.
     */
    async retry(principal: Principal, sessionId: string, options: { dataId?: string | undefined; detail?: boolean | undefined; content?: string | undefined }, caller?: TurnCaller): Promise<Generation> {
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
        // An edited question is a new version of the question, with an id of its own.
        userMessageId: edited === undefined ? question.id : crypto.randomUUID(),
        userContent: edited ?? question.content,
        title: '',
        replacesMessageId: target.id,
        replacesQuestionId: edited === undefined ? undefined : question.id,
        editedQuestion: edited,
      }, caller);
    },

    /**
     * Continues an answer its asker stopped, the last of its session: the
     * same question, options and context, on the agent that wrote it, with
     * the stored text as the prefill (continuation.ts), so the answer goes
     * on where it stopped and is stored as one. Its events start with
     * `reset` (reason `continue`) in a new block of ids, then the text so
     * far as one `chunk`. Refused with nothing changed when the agent's first
     * endpoint cannot continue an answer (FastGPT, Dify, `restart`):
     * regenerating is what is left there.
     */
    async continueAnswer(principal: Principal, sessionId: string, options: { dataId?: string | undefined; detail?: boolean | undefined }, caller?: TurnCaller): Promise<Generation> {
      refuseWhileDraining();
      const session = await repo.findSession(sessionId, principal.userId);
      if (!session) throw new AppError('SESSION_NOT_FOUND', 'The chat session does not exist or is not yours');
      const last = await repo.lastAssistantMessage(sessionId, principal.userId);
      const target = options.dataId ? await repo.findMessage(options.dataId, principal.userId) : last;
      if (!target || target.session_id !== sessionId || target.role !== 'assistant') throw new AppError('NOTHING_TO_CONTINUE', 'There is no answer to continue in this session');
      if (target.status === 'streaming') throw new AppError('GENERATION_RUNNING', 'That answer is still being generated');
      if (target.status !== 'stopped') throw new AppError('NOTHING_TO_CONTINUE', 'Only an answer that was stopped can be continued');
      if (last?.id !== target.id) throw new AppError('NOTHING_TO_CONTINUE', 'Only the last answer of a session can be continued');
      const question = await repo.userMessageBefore(sessionId, principal.userId, target.seq);
      if (!question) throw new AppError('NOTHING_TO_CONTINUE', 'There is no question to this answer');
      const stored = (target.metadata as { options?: TurnOptions } | null)?.options;
      const input: TurnInput = { ...stored, agentId: target.agent_id ?? session.agent_id, messages: [{ role: 'user', content: storedContent(question.content) }], detail: options.detail ?? stored?.detail };
      const resolved = forTools(agents.getActive(input.agentId), input);
      const primary = resolved.endpoints[0];
      if (!primary || planContinuation(primary, target.content) === undefined) {
        throw new AppError('CANNOT_CONTINUE', "This agent's model provider cannot continue an answer; regenerate it instead");
      }
      const turnId = target.id;
      const scope = turnScope(caller, turnId, principal.userId, resolved.agent.id);
      let admitted: TurnAdmitted | undefined;
      let admission: Admission | undefined;
      try {
        admitted = await limits.admit({ turnId, userId: principal.userId, agent: resolved.agent, messages: input.messages, maxTokens: input.maxTokens });
        admission = await admit(resolved);
        // Ids go on past every id a client may hold of the stopped run; its buffer (ending in its `end`) goes, so a replay from the start shows this run.
        const lastBuffered = (await state.readEvents(turnId, 0).catch(() => [] as TurnEvent[])).at(-1)?.id ?? 0;
        const firstEventId = nextIdBlock(lastBuffered);
        const plan = await planFor(
          resolved,
          input,
          { turnId, sessionId, contextSessionId: sessionId, userId: principal.userId, userMessageId: question.id, providerChatId: session.provider_chat_id, errorDetail: actsAsAdmin(principal) },
          { reason: 'continue', firstEventId, previousOwner: null, partial: { content: target.content, reasoning: target.reasoning ?? '' } },
        );
        // The acknowledgement point: of two continues at once, one reopens the answer; the other changes nothing.
        if (!(await repo.reopenStopped(turnId, principal.userId))) throw new AppError('NOTHING_TO_CONTINUE', 'That answer is no longer stopped');
        await state.deleteEvents(turnId).catch(() => undefined);
        return launch({ ...plan, limits: admitted }, admission, scope);
      } catch (err) {
        admission?.release();
        if (admitted?.reserved) limits.settle(turnId, 0);
        scope.trace?.end({ 'llmchat.turn.status': 'refused' }, err instanceof AppError ? err.code : 'INTERNAL');
        throw err;
      }
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

    /** One takeover pass now (it also runs on a timer): finishes answers whose instance is gone. */
    takeOverOrphans(): Promise<void> {
      return takeover.scanOnce();
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

    /** A turn's stored answer once it is no longer streaming (owner only); waits for it up to `waitMs`, polling. */
    async settledAnswer(principal: Principal, turnId: string, waitMs: number): Promise<MessageRow> {
      const local = running.get(turnId);
      if (local && local.plan.userId === principal.userId) await local.done;
      const deadline = Date.now() + waitMs;
      for (let round = 0; ; round++) {
        const message = await this.ownAnswer(principal, turnId);
        if (message.status !== 'streaming' || Date.now() > deadline) return message;
        // It runs elsewhere: wait for its `end` in the shared buffer (no polling), at most a few seconds
        // at a time (a takeover, a lost buffer), then read the row again; the row lands just after `end`.
        if (round > 0) await new Promise((r) => setTimeout(r, 50));
        await endOfTurn(turnId, Math.min(SETTLE_FOLLOW_MS, Math.max(0, deadline - Date.now())));
      }
    },

    /** Events of a turn after `afterId` from the shared buffer (resumption on another instance); check ownership first. */
    eventsAfter(turnId: string, afterId: number): Promise<TurnEvent[]> {
      return state.readEvents(turnId, afterId);
    },

    /** Follows a turn's shared buffer after `afterId` as other instances append to it (SharedState.followEvents); check ownership first. */
    followEvents(turnId: string, afterId: number, handler: TurnFollowHandler): StopFollowing {
      return state.followEvents(turnId, afterId, handler);
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

    /**
     * Shutdown: stops taking turns, lets running answers finish until
     * DRAIN_TIMEOUT_MS, then hands the rest over (another instance takes them
     * over at another one's next beat: stop() ends this one's lease at once).
     */
    async close(): Promise<void> {
      draining = true;
      const deadline = Date.now() + config.drainTimeoutMs;
      while (running.size > 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
      if (running.size > 0) logger.warn({ answers: running.size }, 'drain deadline passed: handing the running answers over to other instances');
      for (const generation of running.values()) generation.handOver();
      await Promise.all([...running.values()].map((g) => g.done));
      await events.flushAll();
      await takeover.stop();
      await unsubscribeStop?.();
    },
  };
}

export type ChatService = ReturnType<typeof createChatService>;
