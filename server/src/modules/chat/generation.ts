import type { Logger } from 'pino';
import type { TurnEvent } from '../../shared-state/shared-state.js';
import type { ProviderRegistry } from '../providers/registry.js';
import type { ProviderEvent, ProviderRequest, ResolvedEndpoint, Usage } from '../providers/types.js';
import type { Admission } from '../providers/upstream-slots.js';
import { runAttempts, type AttemptHost, type ResilienceDeps, type RetrySettings } from '../resilience/attempt-loop.js';
import { clientErrorFor, type ClientError } from '../resilience/failure-policy.js';
import { UnconfirmedCommitError } from '../../db/commit-guard.js';
import type { DegradedNotice } from '../../shared-state/degraded.js';
import type { ChatRepository, StoredTextLength, TurnOutcome } from './chat-repository.js';
import type { TurnEventBuffer } from './event-buffer.js';
import type { TurnAdmitted } from './turn-limits.js';

/** Event names the front end consumes (DESIGN.md, "Events"). */
export type PlatformEventName = 'start' | 'chunk' | 'reasoning' | 'status' | 'interactive' | 'chatId' | 'usage' | 'error' | 'end' | 'reset';

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
  /** Stream from the upstream (false when the agent's provider cannot). */
  upstreamStream: boolean;
  /**
   * Set when this instance took the answer over from one that died: event
   * ids continue from `firstEventId`, and the first event is `reset` (the
   * answer starts again; a client drops the partial text it holds).
   */
  takeover?: { firstEventId: number; previousOwner: string | null } | undefined;
  /** The turn's admission: whether its tokens are reserved in budgets (settled when it ends) and the limit its response headers show. */
  limits?: TurnAdmitted | undefined;
  /**
   * The asker is an admin: a failed answer's `error` event and result carry
   * the provider's reason. Everyone else gets the code's generic sentence
   * (failure-policy.ts); the stored answer keeps the reason either way.
   */
  errorDetail?: boolean | undefined;
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
  error: { code: string; message: string } | undefined;
  firstTokenMs: number | undefined;
  totalMs: number;
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
}

const FINISH_RETRY_DELAYS_MS = [100, 250, 500, 1000, 2000, 4000, 8000];

/** Maps an upstream failure to the error code, generic message and detail (failure-policy.ts). */
export function describeUpstreamError(err: unknown): ClientError {
  return clientErrorFor(err);
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
  private providerChatId: string | undefined;
  private providerMessageId: string | undefined;
  private interactive: unknown;
  private servedBy: ResolvedEndpoint | undefined;
  /** The current attempt sent text, reasoning or an interactive node to the client. */
  private attemptOutput = false;
  private onAttemptOutput: (() => void) | undefined;
  private attempts = 1;
  private settled = false;
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

  constructor(
    readonly plan: GenerationPlan,
    private readonly deps: GenerationDeps,
    /** The turn's upstream slot, taken before it was acknowledged; held until it settles. */
    private readonly admission?: Admission,
  ) {
    this.done = new Promise((resolve) => (this.resolveDone = resolve));
    this.nextEventId = plan.takeover?.firstEventId ?? 1;
    admission?.bind(this.abort.signal);
  }

  /** Id of the first event this generation emits (1, or where a takeover continues the turn's events). */
  get firstEventId(): number {
    return this.plan.takeover?.firstEventId ?? 1;
  }

  get turnId(): string {
    return this.plan.turnId;
  }

  get finished(): boolean {
    return this.settled;
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
   * Emits `start` and `chatId` (or `reset` for a takeover), then runs the
   * upstream call in the background. After `startEarly()`, the turn is now
   * written: what the call produced meanwhile follows `chatId`, in order.
   */
  start(): void {
    if (this.plan.takeover) {
      this.emit('reset', { reason: 'takeover', messageId: this.plan.turnId, sessionId: this.plan.sessionId, timestamp: new Date().toISOString() });
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
    this.settleWrite?.(true);
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

  private onProviderEvent(event: ProviderEvent): void {
    switch (event.type) {
      case 'text':
        if (event.delta.length === 0) return;
        if (this.firstTokenMs === undefined) this.onFirstToken();
        if (!this.attemptOutput) this.markAttemptOutput();
        this.content += event.delta;
        this.emit('chunk', { content: event.delta });
        return;
      case 'reasoning':
        if (event.delta.length === 0) return;
        if (this.firstTokenMs === undefined) this.onFirstToken();
        if (!this.attemptOutput) this.markAttemptOutput();
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
      case 'done':
        return;
    }
  }

  private onFirstToken(): void {
    this.firstTokenMs = Math.round(performance.now() - this.startedAt);
    if (this.checkpointTimer) return;
    this.checkpointTimer = setInterval(() => void this.checkpoint(), this.deps.checkpointIntervalMs);
    this.checkpointTimer.unref();
  }

  private markAttemptOutput(): void {
    this.attemptOutput = true;
    this.onAttemptOutput?.();
  }

  /**
   * A new upstream attempt begins: the last one's partial answer is dropped
   * (only the serving call's text, usage and model are stored) and, when
   * some of it reached the client, a `reset` event tells the client to
   * discard it.
   */
  private beginAttempt(): void {
    this.attempts++;
    if (this.attemptOutput) this.emit('reset', { attempt: this.attempts, reason: 'upstream_failed', timestamp: new Date().toISOString() });
    this.attemptOutput = false;
    this.content = '';
    this.reasoning = '';
    this.usage = undefined;
    this.model = undefined;
    this.interactive = undefined;
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
    const attempt = this.attempts;
    const contentPart = base ? content.slice(base.contentChars) : content;
    const reasoningPart = base ? reasoning.slice(base.reasoningChars) : reasoning || null;
    try {
      const landed = await this.deps.repo.checkpoint(this.plan.turnId, contentPart, reasoningPart, base?.bytes);
      // A new attempt meanwhile started its text over: what landed is not its base.
      if (attempt === this.attempts) {
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

  private async callEndpoint(endpoint: ResolvedEndpoint, onFirstOutput: () => void): Promise<void> {
    const adapter = this.deps.providers.adapter(endpoint.provider);
    const request: ProviderRequest = { ...this.plan.request, endpoint };
    this.servedBy = endpoint;
    this.onAttemptOutput = onFirstOutput;
    if (this.plan.upstreamStream) {
      for await (const event of adapter.stream(request, this.abort.signal)) this.onProviderEvent(event);
      return;
    }
    const result = await adapter.complete(request, this.abort.signal);
    if (result.chatId) this.onProviderEvent({ type: 'chatId', chatId: result.chatId });
    if (result.messageId) this.onProviderEvent({ type: 'messageId', messageId: result.messageId });
    if (result.model) this.onProviderEvent({ type: 'model', model: result.model });
    if (result.reasoning) this.onProviderEvent({ type: 'reasoning', delta: result.reasoning });
    this.onProviderEvent({ type: 'text', delta: result.text });
    if (result.usage) this.onProviderEvent({ type: 'usage', usage: result.usage });
  }

  private async run(): Promise<void> {
    // eslint-disable-next-line @typescript-eslint/no-this-alias -- the loop drives this generation through a narrow view
    const self = this;
    const host: AttemptHost = {
      turnId: this.plan.turnId,
      agentId: this.plan.agentId,
      signal: this.abort.signal,
      call: (endpoint, onFirstOutput) => this.callEndpoint(endpoint, onFirstOutput),
      get outputSent() {
        return self.attemptOutput;
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
      outcome = await runAttempts(this.plan.endpoints, host, resilience);
    } catch (err) {
      this.deps.logger.error({ err, turnId: this.plan.turnId }, 'unexpected generation failure');
      outcome = { status: 'error', error: { code: 'INTERNAL', message: 'The answer failed unexpectedly' } };
    }
    await this.settle(outcome.status, outcome.status === 'error' ? outcome.error : undefined);
  }

  private async settle(status: TurnOutcome['status'], failure: ClientError | undefined): Promise<void> {
    // What the asker sees (live, replayed, in a blocking reply); the stored answer keeps the detail for admins.
    const error = failure && { code: failure.code, message: this.plan.errorDetail === true ? (failure.detail ?? failure.message) : failure.message };
    if (this.checkpointTimer) clearInterval(this.checkpointTimer);
    // No upstream call is left: the slot goes to the next turn while this one is stored.
    this.admission?.release();
    // An early start ends only once its turn is written, or not at all if it never is.
    if (this.written && !(await this.written)) {
      this.settled = true;
      this.listeners.clear();
      this.resolveDone({ status: 'error', content: '', reasoning: null, usage: undefined, model: undefined, provider: undefined, providerChatId: undefined, interactive: undefined, error: { code: 'INTERNAL', message: 'The turn could not be stored' }, firstTokenMs: undefined, totalMs: Math.round(performance.now() - this.startedAt) });
      return;
    }
    if (this.handedOver) {
      this.leave();
      return;
    }
    const totalMs = Math.round(performance.now() - this.startedAt);
    const endpoint = this.servedBy;
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
    };
    await this.store(outcome);
    if (this.usage) {
      this.emit('usage', { prompt_tokens: this.usage.promptTokens, completion_tokens: this.usage.completionTokens, total_tokens: this.usage.totalTokens });
    }
    if (error) this.emit('error', { ...error, timestamp: new Date().toISOString() });
    this.emit('end', { status, messageId: this.plan.turnId, sessionId: this.plan.sessionId, timestamp: new Date().toISOString() });
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
    };
    this.settled = true;
    this.listeners.clear();
    void this.deps.events.finish(this.plan.turnId);
    this.deps.onSettled(this, result);
    this.resolveDone(result);
  }

  /** Ends this instance's part in a handed-over answer: no write, no `end`; a waiting blocking request gets 503. */
  private leave(): void {
    const error = { code: 'NOT_READY', message: 'This instance shut down while answering; the answer continues on another instance' };
    this.settled = true;
    this.listeners.clear();
    for (const listener of this.leaveListeners) listener();
    this.leaveListeners.clear();
    void this.deps.events.finish(this.plan.turnId);
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
          this.deps.logger.error({ err: (err as Error).message, turnId: this.plan.turnId }, 'could not store the finished turn');
          return;
        }
        this.deps.logger.warn({ err: (err as Error).message, turnId: this.plan.turnId, attempt }, 'storing the finished turn failed; retrying');
        await new Promise((resolve) => setTimeout(resolve, delay));
      }
    }
  }
}
