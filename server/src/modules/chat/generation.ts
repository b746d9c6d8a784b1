import type { Logger } from 'pino';
import type { ContentPolicyRouting } from '../../db/schema.js';
import type { TurnEvent } from '../../shared-state/shared-state.js';
import type { ProviderRegistry } from '../providers/registry.js';
import { finishReasonOf, type FinishReason } from '../providers/finish-reason.js';
import type { ProviderEvent, ProviderRequest, ProviderResult, ResolvedEndpoint, ToolCall, Usage } from '../providers/types.js';
import { addToolCallPiece } from '../providers/tool-calls.js';
import type { Admission } from '../providers/upstream-slots.js';
import { runAttempts, type AttemptHost, type ResilienceDeps, type RetrySettings } from '../resilience/attempt-loop.js';
import type { HedgeLane, HedgeSettings } from '../resilience/hedge.js';
import { clientErrorFor, type ClientError } from '../resilience/failure-policy.js';
import { UnconfirmedCommitError } from '../../db/commit-guard.js';
import type { DegradedNotice } from '../../shared-state/degraded.js';
import type { ChatRepository, StoredTextLength, TurnOutcome } from './chat-repository.js';
import type { TurnEventBuffer } from './event-buffer.js';
import type { TurnAdmitted } from './turn-limits.js';
import type { Metrics } from '../metrics/metrics.js';
import type { TurnTrace } from '../../tracing/turn-trace.js';
import { UpstreamError } from '../providers/upstream-error.js';
import { categoryOf } from '../resilience/failure-policy.js';
import { continuedRequest, dropRepeatedWhitespace, planContinuation, refusedContinuation, type Continuation } from './continuation.js';

/** Event names the front end consumes (DESIGN.md, "Events"). */
export type PlatformEventName = 'start' | 'chunk' | 'reasoning' | 'status' | 'interactive' | 'chatId' | 'usage' | 'error' | 'end' | 'reset' | 'toolCall';

/** One event of a turn. `id` increases by one per event; `data` is the JSON text sent. */
export interface GenerationEvent extends TurnEvent {
  event: PlatformEventName;
  payload: unknown;
}

export type GenerationListener = (event: GenerationEvent) => void;

export interface GenerationPlan {
  /** The assistant message id; also the turn id. */
  turnId: string;
  sessionId: string;
  userId: string;
  userMessageId: string;
  agentId: string;
  /** Primary first, then fallbacks. */
  endpoints: ResolvedEndpoint[];
  request: Omit<ProviderRequest, 'endpoint'>;
  /** The agent's own retry settings, over the platform's. */
  retry?: Partial<RetrySettings> | undefined;
  /** The agent hedges a slow first token with its next endpoint (hedge.ts); unset: it does not. */
  hedge?: HedgeSettings | undefined;
  /** A provider's content-policy refusal: passed to the caller (the default) or tried on another model. */
  contentPolicy?: ContentPolicyRouting | undefined;
  /** Stream from the upstream (false when the agent's provider cannot). */
  upstreamStream: boolean;
  /**
   * Set when the answer runs again on a row that exists: this instance took
   * it over from one that died (`takeover`), or its asker continues an
   * answer they stopped (`continue`). Event ids continue from
   * `firstEventId`, and the first event is `reset` with that reason (a
   * client drops the partial text it holds). When the primary endpoint can
   * continue an answer (continuation.ts), `partial` (the last checkpoint, or
   * the longer text the shared buffer holds; the stored text of a stopped
   * answer) follows the reset as one `chunk`, and the answer goes on from
   * there; else it starts again.
   */
  resume?: { reason: 'takeover' | 'continue'; firstEventId: number; previousOwner: string | null; partial?: { content: string; reasoning: string } | undefined } | undefined;
  /** The turn's admission: whether its tokens are reserved in budgets (settled when it ends) and the limit its response headers show. */
  limits?: TurnAdmitted | undefined;
  /**
   * The asker is an admin: a failed answer's `error` event and result carry
   * the provider's reason. Everyone else gets the code's generic sentence
   * (failure-policy.ts); the stored answer keeps the reason either way.
   */
  errorDetail?: boolean | undefined;
  /** When the request that started the turn arrived (performance.now()); the turn's times count from it. Unset: from the generation's start. */
  receivedAt?: number | undefined;
}

export interface GenerationResult {
  status: TurnOutcome['status'];
  content: string;
  reasoning: string | null;
  usage: Usage | undefined;
  model: string | undefined;
  provider: string | undefined;
  providerChatId: string | undefined;
  interactive: unknown;
  error: { code: string; message: string; retryAfterSeconds?: number } | undefined;
  firstTokenMs: number | undefined;
  totalMs: number;
  /** Why the serving call ended, in OpenAI's words; `stop` when the provider did not say. */
  finishReason: FinishReason;
  /** The agent endpoint that served (or last tried), when there was one. */
  endpointId: string | undefined;
  /** The function calls the answer made (function calling), whole. */
  toolCalls?: ToolCall[] | undefined;
}

export interface GenerationDeps {
  repo: ChatRepository;
  /** The shared copy of every turn's events, for replay on any instance. */
  events: TurnEventBuffer;
  providers: ProviderRegistry;
  logger: Logger;
  checkpointIntervalMs: number;
  /** Failed checkpoints, logged once per outage rather than once per answer and interval. */
  checkpointNotice: DegradedNotice;
  /** Retries, breakers, deadlines and failed-attempt accounting for the upstream calls. */
  resilience: ResilienceDeps;
  /** Called once the turn is stored and its last event sent. */
  onSettled: (generation: Generation, result: GenerationResult) => void;
  /** The app's metrics (always there in the app; unit tests may leave them out). */
  metrics?: Metrics | undefined;
}

/**
 * Where a turn logs and traces. `log` is the request's logger with the
 * turn's fields bound once (reqId, userId, turnId, traceId): every line the
 * turn writes carries them, and no logger is made per turn.
 */
export interface TurnScope {
  log: Logger;
  trace: TurnTrace | undefined;
}

const FINISH_RETRY_DELAYS_MS = [100, 250, 500, 1000, 2000, 4000, 8000];

/** Maps an upstream failure to the error code, generic message and detail (failure-policy.ts). */
export function describeUpstreamError(err: unknown): ClientError {
  return clientErrorFor(err);
}

/** A blocking call's result as the events a stream would have sent. */
function completionEvents(result: ProviderResult): ProviderEvent[] {
  const events: ProviderEvent[] = [];
  if (result.chatId) events.push({ type: 'chatId', chatId: result.chatId });
  if (result.messageId) events.push({ type: 'messageId', messageId: result.messageId });
  if (result.model) events.push({ type: 'model', model: result.model });
  if (result.reasoning) events.push({ type: 'reasoning', delta: result.reasoning });
  events.push({ type: 'text', delta: result.text });
  result.toolCalls?.forEach((c, index) => events.push({ type: 'toolCall', index, id: c.id, name: c.function.name, arguments: c.function.arguments }));
  if (result.usage) events.push({ type: 'usage', usage: result.usage });
  events.push({ type: 'done', finishReason: result.finishReason, sawDone: true });
  return events;
}

/** Events that reach the client as part of the answer: the ones a hedged call claims the turn with. */
function isOutput(event: ProviderEvent): boolean {
  return ((event.type === 'text' || event.type === 'reasoning') && event.delta.length > 0) || event.type === 'interactive' || event.type === 'toolCall';
}

function definedOnly<T extends object>(value: T): Partial<T> {
  return Object.fromEntries(Object.entries(value).filter(([, v]) => v !== undefined)) as Partial<T>;
}

/**
 * One running answer. It outlives the HTTP request that started it: a
 * client that disconnects only unsubscribes; the answer is still finished
 * and stored. Events are kept in memory for local subscribers and batched
 * into the shared buffer so other instances can replay them.
 */
export class Generation {
  readonly startedAt = performance.now();
  /**
   * Every event emitted, for subscribers that join late (a reconnect to this
   * instance): by index, id − firstEventId (ids are consecutive). A text or
   * reasoning chunk keeps only its delta, a string the answer's text already
   * holds, and its data is rebuilt on replay; so an answer's events cost two
   * pointers each beyond its own text, however long it streams.
   */
  private readonly eventNames: PlatformEventName[] = [];
  private readonly eventData: string[] = [];
  private nextEventId: number;
  private readonly listeners = new Set<GenerationListener>();
  private readonly leaveListeners = new Set<() => void>();
  private readonly abort = new AbortController();
  private checkpointTimer: NodeJS.Timeout | undefined;
  private checkpointedLength = 0;
  /**
   * The text the last checkpoint stored, when it landed (lengths in UTF-16
   * units here, UTF-8 bytes there): the next one sends only what follows.
   * Undefined: send the whole text.
   */
  private stored: { contentChars: number; reasoningChars: number; bytes: StoredTextLength } | undefined;
  /** A checkpoint of this answer is queued or being written. */
  private checkpointing = false;
  private stopRequested = false;
  private handedOver = false;
  private content = '';
  private reasoning = '';
  private firstTokenMs: number | undefined;
  private usage: Usage | undefined;
  private model: string | undefined;
  private finishReason: string | undefined;
  private providerChatId: string | undefined;
  private providerMessageId: string | undefined;
  private interactive: unknown;
  /** The serving attempt's function calls, joined from their pieces. */
  private toolCalls: ToolCall[] | undefined;
  private servedBy: ResolvedEndpoint | undefined;
  /** The current attempt sent text, reasoning or an interactive node to the client. */
  private attemptOutput = false;
  /** The answer the client holds has output: this attempt's, or earlier ones' that it continues. */
  private answerOutput = false;
  /** `beginAttempt` ran: the next call decides, knowing its endpoint, whether it continues the answer or starts over. */
  private newAttempt = false;
  /** Calls of a hedged race still running (the second one is the partner). */
  private lanesRunning = 0;
  /** Times the answer's text started over (its checkpoints' base with it). */
  private restarts = 0;
  /** Whitespace a continuation's prefill lost, still to be dropped from its first text (continuation.ts). */
  private pendingTrim: string | undefined;
  private onAttemptOutput: (() => void) | undefined;
  private attempts = 1;
  private settled = false;
  /** For metrics, all performance.now(): the first upstream call, the serving attempt's first text, its text chunks so far, and how long that first text was held for the turn's write. */
  private firstCallAt: number | undefined;
  private firstTokenAt = 0;
  private outputChunks = 0;
  private heldMs = 0;
  /**
   * Set while an early start (`startEarly`) waits for its turn to be
   * written: events are held here, in order, without ids.
   */
  private held: [PlatformEventName, unknown][] | undefined;
  /** An early start's write: resolves true once `start()` ran, false on `cancel()`. */
  private written: Promise<boolean> | undefined;
  private settleWrite: ((written: boolean) => void) | undefined;
  private resolveDone!: (result: GenerationResult) => void;
  /** Resolves with the stored outcome. */
  readonly done: Promise<GenerationResult>;
  /** This turn's logger (fields bound) and spans (none when tracing is off). */
  readonly log: Logger;
  readonly trace: TurnTrace | undefined;

  constructor(
    readonly plan: GenerationPlan,
    private readonly deps: GenerationDeps,
    /** The turn's upstream slot, taken before it was acknowledged; held until it settles. */
    private readonly admission?: Admission,
    scope?: TurnScope,
  ) {
    // Without a request (a test driving a generation directly), a logger of its own.
    this.log = scope?.log ?? deps.logger.child({ turnId: plan.turnId, userId: plan.userId });
    this.trace = scope?.trace;
    this.done = new Promise((resolve) => (this.resolveDone = resolve));
    this.nextEventId = plan.resume?.firstEventId ?? 1;
    admission?.bind(this.abort.signal);
  }

  /** Id of the first event this generation emits (1, or where a takeover or a continuation goes on with the turn's events). */
  get firstEventId(): number {
    return this.plan.resume?.firstEventId ?? 1;
  }

  get turnId(): string {
    return this.plan.turnId;
  }

  get finished(): boolean {
    return this.settled;
  }

  /** The model serving the current attempt: what the provider reported, else the endpoint's configured model. */
  get servedModel(): string | undefined {
    return this.model ?? this.servedBy?.model;
  }

  /** The agent endpoint of the current attempt. */
  get servedEndpointId(): string | undefined {
    return this.servedBy?.id;
  }

  /** Why the serving call ended, in the provider's own words (`/v1/messages` passes Anthropic's on); undefined until it says. */
  get providerFinishReason(): string | undefined {
    return this.finishReason;
  }

  /** Replays events after `afterId`, then follows live ones. Returns the unsubscribe function. */
  subscribe(afterId: number, listener: GenerationListener): () => void {
    for (let i = Math.max(0, afterId - this.firstEventId + 1); i < this.eventNames.length; i++) listener(this.eventAt(i));
    if (this.settled) return () => undefined;
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  /** Called if this instance hands the answer over (shutdown): a client stream should end so the client reconnects elsewhere. */
  onHandOver(listener: () => void): () => void {
    this.leaveListeners.add(listener);
    return () => this.leaveListeners.delete(listener);
  }

  /** This instance left the answer to another one (handOver): it was not stored here. */
  get leftToAnotherInstance(): boolean {
    return this.handedOver;
  }

  /** Asks the generation to stop; the partial answer is kept with status `stopped`. */
  stop(): void {
    if (this.settled || this.stopRequested) return;
    this.stopRequested = true;
    this.abort.abort();
    // Providers that run the answer as a task of their own (Dify) are told to stop too; best effort.
    const endpoint = this.servedBy;
    const adapter = endpoint ? this.deps.providers.adapter(endpoint.provider) : undefined;
    if (endpoint && adapter?.stop && this.providerMessageId) {
      adapter.stop(endpoint, this.providerMessageId, this.plan.userId, AbortSignal.timeout(5_000)).catch(() => undefined);
    }
  }

  /**
   * This instance is going away and leaves the answer to another one (the
   * drain deadline passed): the upstream call is cancelled and nothing is
   * written, so the answer stays `streaming` and is taken over once this
   * instance's heartbeat is gone. Events already sent stay in the buffer.
   */
  handOver(): void {
    if (this.settled || this.stopRequested) return;
    this.handedOver = true;
    this.abort.abort();
  }

  /**
   * Emits `start` and `chatId` (or `reset` for a resumed row), then runs the
   * upstream call in the background. After `startEarly()`, the turn is now
   * written: what the call produced meanwhile follows `chatId`, in order.
   */
  start(): void {
    if (this.plan.resume) {
      this.emit('reset', { reason: this.plan.resume.reason, messageId: this.plan.turnId, sessionId: this.plan.sessionId, timestamp: new Date().toISOString() });
      this.resumeFrom(this.plan.resume.partial);
      void this.run();
      return;
    }
    const held = this.held;
    this.held = undefined;
    this.emit('start', { id: this.plan.turnId, messageId: this.plan.turnId, userMessageId: this.plan.userMessageId, sessionId: this.plan.sessionId, chatId: this.plan.sessionId, agentId: this.plan.agentId, timestamp: new Date().toISOString() });
    this.emit('chatId', { chatId: this.plan.sessionId });
    if (held === undefined) {
      void this.run();
      return;
    }
    for (const [event, payload] of held) this.emit(event, payload);
    if (this.firstTokenMs !== undefined) this.heldMs = performance.now() - this.firstTokenAt;
    this.settleWrite?.(true);
  }

  /**
   * A resumed answer goes on from the text it had, when the primary
   * endpoint can continue it: the client gets that text again after the
   * `reset`, and the first call continues it (prepareAttempt).
   */
  private resumeFrom(partial: { content: string; reasoning: string } | undefined): void {
    const primary = this.plan.endpoints[0];
    if (!partial || !primary || planContinuation(primary, partial.content) === undefined) return;
    this.content = partial.content;
    this.reasoning = partial.reasoning;
    if (partial.reasoning !== '') this.emit('reasoning', { content: partial.reasoning });
    this.emit('chunk', { content: partial.content });
    this.answerOutput = true;
    this.newAttempt = true;
  }

  /**
   * Starts the upstream call while the turn is still being written, to take
   * the write off the time to first token. Nothing leaves before the turn is
   * stored: events are held until `start()`, and the ending waits for it. Only
   * for a plan that needs nothing from the write and may reach the upstream
   * before it (a new session: no one else's chat id or context can be sent).
   */
  startEarly(): void {
    this.held = [];
    this.written = new Promise((resolve) => (this.settleWrite = resolve));
    void this.run();
  }

  /** The turn of an early start could not be written: the upstream call is aborted; what it held is never emitted or stored. */
  cancel(): void {
    this.abort.abort();
    this.settleWrite?.(false);
  }

  private emit(event: PlatformEventName, payload: unknown): void {
    if (this.held !== undefined) {
      this.held.push([event, payload]);
      return;
    }
    const generationEvent: GenerationEvent = { id: this.nextEventId++, event, data: JSON.stringify(payload), payload };
    this.eventNames.push(event);
    this.eventData.push(event === 'chunk' || event === 'reasoning' ? (payload as { content: string }).content : generationEvent.data);
    for (const listener of this.listeners) listener(generationEvent);
    this.deps.events.append(this.plan.turnId, generationEvent);
  }

  /** The emitted event at `index`, as it was sent. */
  private eventAt(index: number): GenerationEvent {
    const event = this.eventNames[index] as PlatformEventName;
    const stored = this.eventData[index] as string;
    const id = this.firstEventId + index;
    if (event === 'chunk' || event === 'reasoning') {
      const payload = { content: stored };
      return { id, event, data: JSON.stringify(payload), payload };
    }
    return { id, event, data: stored, payload: JSON.parse(stored) as unknown };
  }

  /** The serving call's sink (ProviderAdapter.stream): one function per generation. */
  private readonly onEvent = (event: ProviderEvent): void => this.onProviderEvent(event);

  private onProviderEvent(event: ProviderEvent): void {
    switch (event.type) {
      case 'text': {
        const delta = this.pendingTrim === undefined ? event.delta : this.dropRepeatedWhitespace(event.delta);
        if (delta.length === 0) return;
        if (this.firstTokenMs === undefined) this.onFirstToken();
        if (!this.attemptOutput) this.markAttemptOutput();
        this.outputChunks++;
        this.content += delta;
        this.emit('chunk', { content: delta });
        return;
      }
      case 'reasoning':
        if (event.delta.length === 0) return;
        if (this.firstTokenMs === undefined) this.onFirstToken();
        if (!this.attemptOutput) this.markAttemptOutput();
        this.outputChunks++;
        this.reasoning += event.delta;
        this.emit('reasoning', { content: event.delta });
        return;
      case 'status':
        this.emit('status', { type: 'flowNodeStatus', status: event.status, moduleName: event.name, data: event.data });
        return;
      case 'interactive':
        if (!this.attemptOutput) this.markAttemptOutput();
        this.interactive = event.data;
        this.emit('interactive', event.data);
        return;
      case 'chatId':
        this.providerChatId = event.chatId;
        return;
      case 'messageId':
        this.providerMessageId = event.messageId;
        return;
      case 'usage':
        this.usage = event.usage;
        return;
      case 'model':
        this.model = event.model;
        return;
      case 'toolCall':
        if (this.firstTokenMs === undefined) this.onFirstToken();
        if (!this.attemptOutput) this.markAttemptOutput();
        addToolCallPiece((this.toolCalls ??= []), event);
        this.emit('toolCall', { index: event.index, ...(event.id === undefined ? {} : { id: event.id }), ...(event.name === undefined ? {} : { name: event.name }), arguments: event.arguments });
        return;
      case 'done':
        this.finishReason = event.finishReason;
        return;
    }
  }

  private onFirstToken(): void {
    this.firstTokenAt = performance.now();
    this.firstTokenMs = Math.round(this.firstTokenAt - this.startedAt);
    this.trace?.firstToken();
    if (this.checkpointTimer) return;
    this.checkpointTimer = setInterval(() => void this.checkpoint(), this.deps.checkpointIntervalMs);
    this.checkpointTimer.unref();
  }

  private markAttemptOutput(): void {
    this.attemptOutput = true;
    this.answerOutput = true;
    this.onAttemptOutput?.();
  }

  private dropRepeatedWhitespace(delta: string): string {
    const { delta: kept, rest } = dropRepeatedWhitespace(this.pendingTrim ?? '', delta);
    this.pendingTrim = rest;
    return kept;
  }

  /** A new upstream attempt begins; the call decides how (`prepareAttempt`). */
  private beginAttempt(): void {
    this.attempts++;
    this.newAttempt = true;
  }

  /**
   * Before a new attempt's call to `endpoint`: the answer the client holds
   * goes on there when the endpoint can continue it (returned), else it
   * starts over. Only the serving call's usage and model are stored; the
   * text is the whole answer either way.
   */
  private prepareAttempt(endpoint: ResolvedEndpoint): Continuation | undefined {
    if (!this.newAttempt) return undefined;
    this.newAttempt = false;
    // Function calls the client got cannot be prefilled: an answer that had begun calling functions starts over.
    const continuation = this.answerOutput && this.interactive === undefined && this.toolCalls === undefined ? planContinuation(endpoint, this.content) : undefined;
    if (continuation === undefined) {
      this.restart();
      return undefined;
    }
    this.attemptOutput = false;
    this.usage = undefined;
    this.model = undefined;
    this.finishReason = undefined;
    this.providerMessageId = undefined;
    this.pendingTrim = continuation.trimmed === '' ? undefined : continuation.trimmed;
    this.deps.metrics?.answerContinued(this.plan.agentId);
    return continuation;
  }

  /**
   * The answer starts over: the partial answer is dropped and, when some of
   * it reached the client, a `reset` event tells the client to discard it.
   */
  private restart(): void {
    if (this.answerOutput) this.deps.metrics?.answerReset(this.plan.agentId);
    this.outputChunks = 0;
    this.heldMs = 0;
    if (this.answerOutput) this.emit('reset', { attempt: this.attempts, reason: 'upstream_failed', timestamp: new Date().toISOString() });
    this.restarts++;
    this.pendingTrim = undefined;
    this.answerOutput = false;
    this.attemptOutput = false;
    this.content = '';
    this.reasoning = '';
    this.usage = undefined;
    this.model = undefined;
    this.finishReason = undefined;
    this.interactive = undefined;
    this.toolCalls = undefined;
    this.providerMessageId = undefined;
    this.firstTokenMs = undefined;
    this.checkpointedLength = -1;
    this.stored = undefined;
  }

  private async checkpoint(): Promise<void> {
    const length = this.content.length + this.reasoning.length;
    // Not before the turn is written: there is no row yet. Not while the last one is still queued or being
    // written: a database that falls behind then gets fewer checkpoints, not a queue of stale ones (each holding
    // a copy of the text) ahead of the turns it must acknowledge.
    if (length === this.checkpointedLength || this.settled || this.held !== undefined || this.checkpointing) return;
    this.checkpointedLength = length;
    this.checkpointing = true;
    const { content, reasoning } = this;
    const base = this.stored;
    const restarts = this.restarts;
    const contentPart = base ? content.slice(base.contentChars) : content;
    const reasoningPart = base ? reasoning.slice(base.reasoningChars) : reasoning || null;
    try {
      const landed = await this.deps.repo.checkpoint(this.plan.turnId, contentPart, reasoningPart, base?.bytes);
      // The answer meanwhile started its text over: what landed is not its base.
      if (restarts === this.restarts) {
        // A part that did not land (its base was not the stored text): the whole text goes at the next interval.
        if (!landed && base) this.checkpointedLength = -1;
        this.stored = landed
          ? {
              contentChars: content.length,
              reasoningChars: reasoning.length,
              bytes: {
                contentBytes: (base?.bytes.contentBytes ?? 0) + Buffer.byteLength(contentPart),
                reasoningBytes: (base?.bytes.reasoningBytes ?? 0) + Buffer.byteLength(reasoningPart ?? ''),
              },
            }
          : undefined;
      }
      this.deps.checkpointNotice.succeeded();
    } catch (err) {
      // Tried again at the next interval, with the whole text, even if no text came meanwhile.
      this.stored = undefined;
      this.checkpointedLength = -1;
      this.deps.checkpointNotice.failed(err);
    } finally {
      this.checkpointing = false;
    }
  }

  private async callEndpoint(endpoint: ResolvedEndpoint, onFirstOutput: () => void, lane: HedgeLane | undefined): Promise<void> {
    // A hedge's partner starts while the racing call is still in flight: it must not decide the attempt again.
    const partner = lane !== undefined && this.lanesRunning > 0;
    const continuation = partner ? this.partnerContinuation(endpoint) : this.prepareAttempt(endpoint);
    if (lane) this.lanesRunning++;
    try {
      await this.tracedCall(endpoint, continuation, onFirstOutput, lane);
    } finally {
      if (lane) this.lanesRunning--;
    }
  }

  /**
   * The continuation of a hedge's partner: the same answer as the racing
   * call's when its endpoint can continue it. One that cannot would start a
   * different answer under the text the client holds, so it is not asked
   * (the racing call goes on alone).
   */
  private partnerContinuation(endpoint: ResolvedEndpoint): Continuation | undefined {
    this.newAttempt = false;
    if (!this.answerOutput) return undefined;
    const continuation = this.toolCalls === undefined ? planContinuation(endpoint, this.content) : undefined;
    if (continuation === undefined) throw new UpstreamError('aborted', 'the hedge partner cannot continue the answer', { retryable: false });
    return continuation;
  }

  private async tracedCall(endpoint: ResolvedEndpoint, continuation: Continuation | undefined, onFirstOutput: () => void, lane: HedgeLane | undefined): Promise<void> {
    const trace = this.trace;
    if (trace === undefined) return this.callContinuing(endpoint, { ...this.plan.request, endpoint }, continuation, onFirstOutput, lane);
    // A hedged call's span runs beside the other call's; it becomes the turn's current attempt when it wins.
    const span = lane ? trace.racingAttempt(endpoint, this.attempts) : undefined;
    const traceparent = span ? span.traceparent : trace.beginAttempt(endpoint, this.attempts);
    const tracedLane: HedgeLane | undefined = lane && span && { signal: lane.signal, claim: () => lane.claim() && (span.serve(), true) };
    try {
      await this.callContinuing(endpoint, { ...this.plan.request, endpoint, traceparent }, continuation, onFirstOutput, tracedLane);
      if (span) span.end();
      else trace.endAttempt();
    } catch (err) {
      const failure = { category: categoryOf(err), kind: err instanceof UpstreamError ? err.kind : 'internal', status: err instanceof UpstreamError ? err.status : undefined };
      if (span) span.end(failure);
      else trace.endAttempt(failure);
      throw err;
    }
  }

  /**
   * Calls `endpoint`, continuing the answer when `continuation` is set. An
   * endpoint that refuses the prefill (HTTP 400) is called again at once
   * without it, the answer starting over: a refused prefill is never the
   * turn's error, nor a failure of the endpoint. Not in a hedged race: the
   * other call may be serving the answer that would be dropped.
   */
  private async callContinuing(endpoint: ResolvedEndpoint, request: ProviderRequest, continuation: Continuation | undefined, onFirstOutput: () => void, lane: HedgeLane | undefined): Promise<void> {
    if (continuation === undefined) return this.callUpstream(endpoint, request, onFirstOutput, lane);
    try {
      await this.callUpstream(endpoint, continuedRequest(request, continuation), onFirstOutput, lane);
    } catch (err) {
      if (lane || this.attemptOutput || this.abort.signal.aborted || !refusedContinuation(err)) throw err;
      this.log.warn({ agentId: this.plan.agentId, endpoint: endpoint.position, continuation: continuation.kind, status: (err as UpstreamError).status }, 'endpoint refused to continue the answer; starting it over there');
      this.restart();
      await this.callUpstream(endpoint, request, onFirstOutput, undefined);
    }
  }

  private async callUpstream(endpoint: ResolvedEndpoint, request: ProviderRequest, onFirstOutput: () => void, lane: HedgeLane | undefined): Promise<void> {
    const adapter = this.deps.providers.adapter(endpoint.provider);
    this.firstCallAt ??= performance.now();
    if (lane) return this.callRacing(endpoint, request, onFirstOutput, lane);
    this.servedBy = endpoint;
    this.onAttemptOutput = onFirstOutput;
    if (this.plan.upstreamStream) return adapter.stream(request, this.abort.signal, this.onEvent);
    for (const event of completionEvents(await adapter.complete(request, this.abort.signal))) this.onProviderEvent(event);
  }

  /**
   * One call of a hedged race (hedge.ts): what it sends before its first
   * output (chat id, model, status) is held; at that output it claims the
   * turn, and only then becomes the serving call. A call that lost is
   * aborted through its lane's signal, so its adapter throws `aborted`.
   */
  private async callRacing(endpoint: ResolvedEndpoint, request: ProviderRequest, onFirstOutput: () => void, lane: HedgeLane): Promise<void> {
    const adapter = this.deps.providers.adapter(endpoint.provider);
    let held: ProviderEvent[] | undefined = [];
    const claim = (): void => {
      if (!lane.claim()) throw new UpstreamError('aborted', 'another endpoint answered first', { retryable: false });
      const before = held ?? [];
      held = undefined;
      this.servedBy = endpoint;
      this.onAttemptOutput = onFirstOutput;
      for (const event of before) this.onProviderEvent(event);
    };
    const take = (event: ProviderEvent): void => {
      if (held !== undefined) {
        if (!isOutput(event)) {
          held.push(event);
          return;
        }
        claim();
      }
      this.onProviderEvent(event);
    };
    // The turn's upstream slot serves whichever of its calls opens first.
    this.admission?.bind(lane.signal);
    if (this.plan.upstreamStream) {
      await adapter.stream(request, lane.signal, take);
    } else {
      for (const event of completionEvents(await adapter.complete(request, lane.signal))) take(event);
    }
    // An answer without any output is still the answer.
    if (held !== undefined) claim();
  }

  private async run(): Promise<void> {
    // eslint-disable-next-line @typescript-eslint/no-this-alias -- the loop drives this generation through a narrow view
    const self = this;
    const host: AttemptHost = {
      turnId: this.plan.turnId,
      agentId: this.plan.agentId,
      log: this.log,
      signal: this.abort.signal,
      call: (endpoint, onFirstOutput, lane) => this.callEndpoint(endpoint, onFirstOutput, lane),
      get outputSent() {
        return self.answerOutput;
      },
      get attemptUsage() {
        return self.usage;
      },
      beginAttempt: () => this.beginAttempt(),
    };
    let outcome: Awaited<ReturnType<typeof runAttempts>>;
    try {
      const base = this.deps.resilience;
      const resilience = this.plan.retry ? { ...base, retry: { ...base.retry, ...definedOnly(this.plan.retry) } } : base;
      outcome = await runAttempts(this.plan.endpoints, host, resilience, this.plan.hedge, this.plan.contentPolicy);
    } catch (err) {
      this.log.error({ err }, 'unexpected generation failure');
      outcome = { status: 'error', error: { code: 'INTERNAL', message: 'The answer failed unexpectedly' } };
    }
    await this.settle(outcome.status, outcome.status === 'error' ? outcome.error : undefined);
  }

  private async settle(status: TurnOutcome['status'], failure: ClientError | undefined): Promise<void> {
    // What the asker sees (live, replayed, in a blocking reply); the stored answer keeps the detail for admins.
    const error = failure && {
      code: failure.code,
      message: this.plan.errorDetail === true ? (failure.detail ?? failure.message) : failure.message,
      ...(failure.retryAfterSeconds === undefined ? {} : { retryAfterSeconds: failure.retryAfterSeconds }),
    };
    if (this.checkpointTimer) clearInterval(this.checkpointTimer);
    // No upstream call is left: the slot goes to the next turn while this one is stored.
    this.admission?.release();
    // An early start ends only once its turn is written, or not at all if it never is.
    if (this.written && !(await this.written)) {
      this.settled = true;
      this.listeners.clear();
      // The turn's span is ended by whoever failed to write it (chat-service's beginTurn).
      this.resolveDone({ status: 'error', content: '', reasoning: null, usage: undefined, model: undefined, provider: undefined, providerChatId: undefined, interactive: undefined, error: { code: 'INTERNAL', message: 'The turn could not be stored' }, firstTokenMs: undefined, totalMs: Math.round(performance.now() - this.startedAt), finishReason: 'stop', endpointId: undefined });
      return;
    }
    if (this.handedOver) {
      this.leave();
      return;
    }
    const endedAt = performance.now();
    const totalMs = Math.round(endedAt - this.startedAt);
    const endpoint = this.servedBy;
    this.deps.metrics?.turnFinished(this.turnRecord(status, failure?.code, endedAt));
    const outcome: TurnOutcome = {
      status,
      content: this.content,
      reasoning: this.reasoning || null,
      errorCode: failure?.code ?? null,
      errorMessage: failure ? (failure.detail ?? failure.message) : null,
      provider: endpoint?.provider ?? null,
      model: this.model ?? endpoint?.model ?? null,
      endpointId: endpoint?.id ?? null,
      promptTokens: this.usage?.promptTokens ?? null,
      completionTokens: this.usage?.completionTokens ?? null,
      totalTokens: this.usage?.totalTokens ?? null,
      firstTokenMs: this.firstTokenMs ?? null,
      totalMs,
      providerChatId: this.providerChatId ?? null,
      providerMessageId: this.providerMessageId ?? null,
      interactive: this.interactive,
      toolCalls: this.toolCalls,
    };
    await this.store(outcome);
    if (this.usage) {
      this.emit('usage', { prompt_tokens: this.usage.promptTokens, completion_tokens: this.usage.completionTokens, total_tokens: this.usage.totalTokens });
    }
    if (error) this.emit('error', { ...error, timestamp: new Date().toISOString() });
    const finishReason = finishReasonOf(this.finishReason);
    this.emit('end', { status, messageId: this.plan.turnId, sessionId: this.plan.sessionId, finishReason, timestamp: new Date().toISOString() });
    const result: GenerationResult = {
      status,
      content: this.content,
      reasoning: this.reasoning || null,
      usage: this.usage,
      model: outcome.model ?? undefined,
      provider: endpoint?.provider,
      providerChatId: this.providerChatId,
      interactive: this.interactive,
      error,
      firstTokenMs: this.firstTokenMs,
      totalMs,
      finishReason,
      endpointId: endpoint?.id,
      toolCalls: this.toolCalls,
    };
    this.settled = true;
    this.listeners.clear();
    void this.deps.events.finish(this.plan.turnId);
    this.logFinished(outcome);
    this.deps.onSettled(this, result);
    this.resolveDone(result);
  }

  /** The turn as metrics see it; times from the request's arrival when known. */
  private turnRecord(status: TurnOutcome['status'], errorCode: string | undefined, endedAt: number) {
    const origin = this.plan.receivedAt ?? this.startedAt;
    const firstToken = this.firstTokenMs === undefined ? undefined : this.firstTokenAt + this.heldMs;
    return {
      agentId: this.plan.agentId,
      endpoint: this.servedBy,
      responseModel: this.model,
      status,
      errorCode,
      totalSeconds: (endedAt - origin) / 1000,
      firstTokenSeconds: firstToken === undefined ? undefined : (firstToken - origin) / 1000,
      overheadSeconds: this.firstCallAt === undefined ? undefined : (Math.max(0, this.firstCallAt - origin) + this.heldMs) / 1000,
      perChunkSeconds: this.outputChunks > 1 ? (endedAt - this.firstTokenAt) / (this.outputChunks - 1) / 1000 : undefined,
      inputTokens: this.usage?.promptTokens,
      outputTokens: this.usage?.completionTokens,
    };
  }

  /** The turn's one `turn finished` line and the end of its span. */
  private logFinished(outcome: TurnOutcome): void {
    // At LOG_LEVEL=warn (the bench's) the line's object is never built.
    if (this.log.isLevelEnabled('info')) this.logFinishedLine(outcome);
    this.trace?.end(
      {
        'llmchat.turn.status': outcome.status,
        'llmchat.turn.attempts': this.attempts,
        ...(outcome.provider === null ? {} : { 'gen_ai.provider.name': outcome.provider }),
        ...(outcome.model === null ? {} : { 'gen_ai.response.model': outcome.model }),
        ...(outcome.promptTokens === null ? {} : { 'gen_ai.usage.input_tokens': outcome.promptTokens }),
        ...(outcome.completionTokens === null ? {} : { 'gen_ai.usage.output_tokens': outcome.completionTokens }),
      },
      outcome.errorCode ?? undefined,
    );
  }

  private logFinishedLine(outcome: TurnOutcome): void {
    const endpoint = this.servedBy;
    this.log.info(
      {
        agentId: this.plan.agentId,
        endpointId: endpoint?.id,
        endpoint: endpoint?.position,
        provider: outcome.provider,
        model: outcome.model,
        status: outcome.status,
        errorCode: outcome.errorCode ?? undefined,
        firstTokenMs: outcome.firstTokenMs,
        totalMs: outcome.totalMs,
        promptTokens: outcome.promptTokens,
        completionTokens: outcome.completionTokens,
        attempts: this.attempts,
        takeover: this.plan.resume?.reason === 'takeover' ? true : undefined,
        continued: this.plan.resume?.reason === 'continue' ? true : undefined,
      },
      'turn finished',
    );
  }

  /** Ends this instance's part in a handed-over answer: no write, no `end`; a waiting blocking request gets 503. */
  private leave(): void {
    const error = { code: 'NOT_READY', message: 'This instance shut down while answering; the answer continues on another instance' };
    this.settled = true;
    this.listeners.clear();
    for (const listener of this.leaveListeners) listener();
    this.leaveListeners.clear();
    void this.deps.events.finish(this.plan.turnId);
    this.log.info({ agentId: this.plan.agentId, attempts: this.attempts }, 'turn handed over to another instance');
    this.trace?.end({ 'llmchat.turn.status': 'handed_over', 'llmchat.turn.attempts': this.attempts });
    const result: GenerationResult = {
      status: 'error',
      content: this.content,
      reasoning: this.reasoning || null,
      usage: undefined,
      model: undefined,
      provider: undefined,
      providerChatId: undefined,
      interactive: undefined,
      error,
      firstTokenMs: this.firstTokenMs,
      totalMs: Math.round(performance.now() - this.startedAt),
      finishReason: 'stop',
      endpointId: undefined,
    };
    this.deps.onSettled(this, result);
    this.resolveDone(result);
  }

  /**
   * Writes the outcome, retrying while the database is unreachable. A retry
   * after a commit the synchronous standby did not confirm may find the turn
   * already finished by that commit: then it waits until that commit is
   * durable before taking the turn for stored.
   */
  private async store(outcome: TurnOutcome): Promise<void> {
    const span = this.trace?.phase('turn finish write');
    try {
      await this.storeOnce(outcome);
    } finally {
      span?.end();
    }
  }

  private async storeOnce(outcome: TurnOutcome): Promise<void> {
    let unconfirmed = false;
    for (let attempt = 0; ; attempt++) {
      try {
        const finished = await this.deps.repo.finishTurn(this.plan.turnId, this.plan.sessionId, outcome);
        if (!finished && unconfirmed) await this.deps.repo.confirmDurable();
        return;
      } catch (err) {
        if (err instanceof UnconfirmedCommitError) unconfirmed = true;
        const delay = FINISH_RETRY_DELAYS_MS[attempt];
        if (delay === undefined) {
          this.log.error({ err: (err as Error).message }, 'could not store the finished turn');
          return;
        }
        this.log.warn({ err: (err as Error).message, attempt }, 'storing the finished turn failed; retrying');
        await new Promise((resolve) => setTimeout(resolve, delay));
      }
    }
  }
}
