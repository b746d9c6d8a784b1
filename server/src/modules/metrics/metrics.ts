import { Counter, Gauge, Registry, collectDefaultMetrics } from 'prom-client';
import { BoundCounter, BoundHistogram, type CounterChild, type HistogramChild } from './bound.js';
import type { ResolvedEndpoint } from '../providers/types.js';

/**
 * LLMChat's Prometheus metrics: one registry per app (tests build several
 * apps in one process), always on. Names follow the OpenTelemetry GenAI
 * semantic conventions where they cover a metric (`gen_ai_*`), `llmchat_*`
 * for the rest. Labels are bounded: agent and endpoint ids and positions,
 * providers, configured models, error codes, failure kinds; never a user,
 * session or free text. A provider's response model is bounded per endpoint
 * (RESPONSE_MODELS_PER_ENDPOINT, then `other`).
 *
 * The chat path pays a handful of operations per turn: one Map lookup for
 * the turn's label-bound children, then one observe or inc per instrument,
 * each a few number updates (bound.ts: no label hashing per call).
 * Everything that existing code already counts (breakers, pools, running
 * answers, the group writer, degraded features, pressure) is read when
 * Prometheus scrapes, in collect() callbacks (bindSources).
 */

/** Seconds: LLM answers take from tens of milliseconds (first token of a fast model) to minutes (long answers). */
const LLM_SECONDS = [0.05, 0.1, 0.25, 0.5, 1, 2, 4, 8, 15, 30, 60, 120, 300];
/** Seconds: our own overhead and inter-chunk times are milliseconds. */
const SHORT_SECONDS = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5];
/** Seconds: HTTP requests, from a health check to a long stream. */
const REQUEST_SECONDS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300];
/** Tokens per turn (the GenAI convention's buckets, powers of 4). */
const TOKEN_BUCKETS = [1, 4, 16, 64, 256, 1024, 4096, 16384, 65536, 262144, 1048576];

const RESPONSE_MODELS_PER_ENDPOINT = 8;
/** Label-bound children kept per turn shape; beyond this (a misconfigured fleet), children are looked up per turn. */
const TURN_CHILDREN_MAX = 2_000;

const GENAI_LABELS = ['gen_ai_operation_name', 'gen_ai_provider_name', 'gen_ai_request_model', 'gen_ai_response_model', 'error_type', 'agent', 'endpoint'] as const;
const TURN_LABELS = ['gen_ai_operation_name', 'gen_ai_provider_name', 'gen_ai_request_model', 'gen_ai_response_model', 'agent', 'endpoint'] as const;
const ENDPOINT_LABELS = ['agent', 'endpoint', 'provider'] as const;

/** How a turn ended, as its metrics see it. */
export interface TurnRecord {
  agentId: string;
  /** The endpoint that served (or last failed); undefined when none was called. */
  endpoint: ResolvedEndpoint | undefined;
  /** The model the provider said it used. */
  responseModel: string | undefined;
  status: 'complete' | 'stopped' | 'error';
  errorCode: string | undefined;
  /** Seconds from the request's arrival to the end of the answer. */
  totalSeconds: number;
  /** Seconds from the request's arrival to the first text; undefined when none came. */
  firstTokenSeconds: number | undefined;
  /** Seconds LLMChat spent itself: before the upstream call, and the first token's wait for the acknowledgement write. */
  overheadSeconds: number | undefined;
  /** Mean seconds between two output chunks; undefined with fewer than two. */
  perChunkSeconds: number | undefined;
  inputTokens: number | undefined;
  outputTokens: number | undefined;
}

/** Why a failed upstream call failed (UpstreamError kinds, `internal` otherwise). */
export type FailureKind = string;

/** What the scrape reads from the running app; every source is optional, so a unit test binds only what it has. */
export interface MetricSources {
  runningGenerations?: () => number;
  activeStreams?: () => number;
  followers?: () => number;
  draining?: () => boolean;
  /** What /health/ready would answer now (a database and a shared-state ping). */
  ready?: () => Promise<boolean>;
  sharedStateDegraded?: () => number;
  /** Pool figures per pool (writer, reader). */
  pools?: () => readonly { pool: 'writer' | 'reader'; total: number; idle: number; waiting: number }[];
  /** Replica lag in seconds, null when unknown; undefined without a replica. */
  replica?: () => { lagSeconds: number | null; usingReplica: boolean } | undefined;
  /** Group writers: the largest batch and the longest wait since the last scrape, and totals. */
  groupWriters?: () => readonly { writer: string; batches: number; items: number; maxBatch: number; maxWaitSeconds: number }[];
  /** Breaker states of the configured endpoints (async: the breakers live in shared state). */
  breakers?: () => Promise<readonly { agent: string; endpoint: string; provider: string; state: 'closed' | 'half_open' | 'open' }[]>;
  /** Times a PING to shared state; rejects when it fails. Undefined for the in-process state. */
  redisPing?: () => Promise<number>;
  /** Failed shared-state operations so far (a total). */
  sharedStateErrors?: () => number;
  /** Event-loop delay p99 (ms) and heap used percent of the last pressure sample. */
  pressure?: () => { eventLoopDelayMs: number; heapUsedPercent: number };
}

interface TurnChildren {
  duration: HistogramChild;
  ttft: HistogramChild;
  perChunk: HistogramChild;
  overhead: HistogramChild;
  inputTokens: HistogramChild;
  outputTokens: HistogramChild;
  turns: CounterChild;
}

export interface EndpointChildren {
  attempts: CounterChild;
  retries: CounterChild;
  fallbacks: CounterChild;
  labels: Record<(typeof ENDPOINT_LABELS)[number], string>;
}

/** How far a total kept elsewhere grew since the last scrape (never negative). */
function grownBy(seen: Map<string, number>, key: string, total: number): number {
  const delta = Math.max(0, total - (seen.get(key) ?? 0));
  seen.set(key, total);
  return delta;
}

const BREAKER_VALUES = { closed: 0, half_open: 1, open: 2 } as const;

/** The GenAI convention's provider names where one exists; ours otherwise. */
function providerName(provider: string): string {
  return provider;
}

export class Metrics {
  readonly registry = new Registry();

  // HTTP.
  private readonly httpDuration = new BoundHistogram('llmchat_http_request_duration_seconds', 'HTTP request duration, by route template, method and status (a stream counts until it ends).', ['route', 'method', 'status_code'], REQUEST_SECONDS, this.registry);

  // Turns (GenAI conventions).
  private readonly operationDuration = new BoundHistogram('gen_ai_client_operation_duration_seconds', 'Total answer time of a chat turn, from the request to the end of the answer.', GENAI_LABELS, LLM_SECONDS, this.registry);
  private readonly timeToFirstChunk = new BoundHistogram('gen_ai_client_operation_time_to_first_chunk_seconds', 'Time from the request to the first text or reasoning chunk of the answer.', TURN_LABELS, LLM_SECONDS, this.registry);
  private readonly timePerOutputChunk = new BoundHistogram('gen_ai_client_operation_time_per_output_chunk_seconds', 'Mean time between two output chunks of a turn (observed once per turn).', TURN_LABELS, SHORT_SECONDS, this.registry);
  private readonly tokenUsage = new BoundHistogram('gen_ai_client_token_usage', 'Tokens per turn as the provider reported them, by gen_ai_token_type (input, output); _sum counts tokens in and out.', [...TURN_LABELS, 'gen_ai_token_type'], TOKEN_BUCKETS, this.registry);
  private readonly overhead = new BoundHistogram('llmchat_turn_overhead_seconds', "LLMChat's own time in a turn: from the request to the first upstream call, plus the first token's wait for the acknowledgement write.", TURN_LABELS, SHORT_SECONDS, this.registry);
  private readonly turns = new BoundCounter('llmchat_turns_total', 'Chat turns by outcome (complete, stopped, error) and error code.', [...TURN_LABELS, 'outcome', 'error_type'], this.registry);

  // Upstream calls.
  private readonly attempts = new BoundCounter('llmchat_upstream_attempts_total', 'Upstream calls made.', ENDPOINT_LABELS, this.registry);
  private readonly failures = new BoundCounter('llmchat_upstream_failures_total', 'Failed upstream calls by failure kind (`hedge_lost`: a hedged call cancelled because the other one answered first; not a failure of the endpoint).', [...ENDPOINT_LABELS, 'kind'], this.registry);
  private readonly retries = new BoundCounter('llmchat_upstream_retries_total', 'Retries of the same endpoint after a retryable failure.', ENDPOINT_LABELS, this.registry);
  private readonly fallbacks = new BoundCounter('llmchat_upstream_fallbacks_total', 'Turns moved from this endpoint to the next one (failure or open breaker).', ENDPOINT_LABELS, this.registry);
  private readonly resets = new BoundCounter('llmchat_answer_resets_total', 'Partial answers the client was told to drop (`reset`) because a new attempt started.', ['agent'], this.registry);
  private readonly continuations = new BoundCounter('llmchat_answer_continuations_total', 'Partial answers a new attempt continued (prefill) instead of starting over, after the one before broke off.', ['agent'], this.registry);

  // Admission and availability.
  private readonly takeovers = new BoundCounter('llmchat_takeovers_total', 'Answers this instance took over from an instance that died.', [], this.registry);
  private readonly rateLimited = new BoundCounter('llmchat_rate_limited_requests_total', 'Chat requests refused by a rate limit (429 RATE_LIMITED), by scope.', ['scope'], this.registry);
  private readonly quotaRefusals = new BoundCounter('llmchat_quota_refusals_total', 'Chat requests refused by a token budget (429 QUOTA_EXCEEDED), by budget.', ['scope'], this.registry);
  private readonly shed = new BoundCounter('llmchat_shed_requests_total', 'Requests shed while the process was overloaded (503 OVERLOADED), by reason.', ['reason'], this.registry);

  private readonly httpChildren = new Map<string, HistogramChild>();
  private readonly turnChildren = new Map<string, TurnChildren>();
  private readonly endpointChildren = new Map<string, EndpointChildren>();
  private readonly responseModels = new Map<string, Set<string>>();
  private readonly sharedStateErrorsSeen = { total: 0 };

  constructor() {
    collectDefaultMetrics({ register: this.registry });
  }

  /** One HTTP request ended. `route` is the route template (never the URL). */
  httpRequest(route: string, method: string, statusCode: number, seconds: number): void {
    const key = `${method} ${statusCode} ${route}`;
    let child = this.httpChildren.get(key);
    if (child === undefined) {
      child = this.httpDuration.child({ route, method, status_code: String(statusCode) });
      if (this.httpChildren.size < TURN_CHILDREN_MAX) this.httpChildren.set(key, child);
    }
    child.observe(seconds);
  }

  /** The children of one endpoint's upstream-call counters, cached (one Map lookup per attempt). */
  endpoint(agentId: string, endpoint: ResolvedEndpoint): EndpointChildren {
    const key = `${agentId}\u0000${endpoint.id}`;
    let children = this.endpointChildren.get(key);
    if (children === undefined) {
      const labels = { agent: agentId, endpoint: String(endpoint.position), provider: endpoint.provider };
      children = { attempts: this.attempts.child(labels), retries: this.retries.child(labels), fallbacks: this.fallbacks.child(labels), labels };
      if (this.endpointChildren.size < TURN_CHILDREN_MAX) this.endpointChildren.set(key, children);
    }
    return children;
  }

  /** A failed upstream call (rare: looked up by label each time). */
  upstreamFailure(children: EndpointChildren, kind: FailureKind): void {
    this.failures.child({ ...children.labels, kind }).inc();
  }

  answerReset(agentId: string): void {
    this.resets.child({ agent: agentId }).inc();
  }

  answerContinued(agentId: string): void {
    this.continuations.child({ agent: agentId }).inc();
  }

  takeover(): void {
    this.takeovers.child({}).inc();
  }

  refused(kind: 'rate_limit' | 'quota', scope: string): void {
    (kind === 'rate_limit' ? this.rateLimited : this.quotaRefusals).child({ scope }).inc();
  }

  shedRequest(reason: string): void {
    this.shed.child({ reason }).inc();
  }

  /** A turn ended: one lookup, then one observation per instrument. */
  turnFinished(turn: TurnRecord): void {
    const responseModel = this.boundedResponseModel(turn.endpoint, turn.responseModel);
    const key = `${turn.agentId}\u0000${turn.endpoint?.id ?? ''}\u0000${responseModel}\u0000${turn.status}\u0000${turn.errorCode ?? ''}`;
    let c = this.turnChildren.get(key);
    if (c === undefined) {
      c = this.childrenFor(turn, responseModel);
      if (this.turnChildren.size < TURN_CHILDREN_MAX) this.turnChildren.set(key, c);
    }
    c.turns.inc();
    c.duration.observe(turn.totalSeconds);
    if (turn.firstTokenSeconds !== undefined) c.ttft.observe(turn.firstTokenSeconds);
    if (turn.overheadSeconds !== undefined) c.overhead.observe(turn.overheadSeconds);
    if (turn.perChunkSeconds !== undefined) c.perChunk.observe(turn.perChunkSeconds);
    if (turn.inputTokens !== undefined) c.inputTokens.observe(turn.inputTokens);
    if (turn.outputTokens !== undefined) c.outputTokens.observe(turn.outputTokens);
  }

  private boundedResponseModel(endpoint: ResolvedEndpoint | undefined, model: string | undefined): string {
    if (model === undefined || model === '') return endpoint?.model ?? '';
    const id = endpoint?.id ?? '';
    let seen = this.responseModels.get(id);
    if (seen === undefined) {
      seen = new Set();
      this.responseModels.set(id, seen);
    }
    if (seen.has(model)) return model;
    if (seen.size >= RESPONSE_MODELS_PER_ENDPOINT) return 'other';
    seen.add(model);
    return model;
  }

  private childrenFor(turn: TurnRecord, responseModel: string): TurnChildren {
    const base = {
      gen_ai_operation_name: 'chat',
      gen_ai_provider_name: turn.endpoint ? providerName(turn.endpoint.provider) : '',
      gen_ai_request_model: turn.endpoint?.model ?? '',
      gen_ai_response_model: responseModel,
      agent: turn.agentId,
      endpoint: turn.endpoint ? String(turn.endpoint.position) : '',
    };
    const errorType = turn.status === 'error' ? (turn.errorCode ?? 'INTERNAL') : '';
    return {
      duration: this.operationDuration.child({ ...base, error_type: errorType }),
      ttft: this.timeToFirstChunk.child(base),
      perChunk: this.timePerOutputChunk.child(base),
      overhead: this.overhead.child(base),
      inputTokens: this.tokenUsage.child({ ...base, gen_ai_token_type: 'input' }),
      outputTokens: this.tokenUsage.child({ ...base, gen_ai_token_type: 'output' }),
      turns: this.turns.child({ ...base, outcome: turn.status, error_type: errorType }),
    };
  }

  /** Gauges read at scrape time from what the app already keeps. Call once per app. */
  bindSources(sources: MetricSources): void {
    const registers = [this.registry];
    const s = sources;
    new Gauge({ name: 'llmchat_running_generations', help: 'Answers being generated on this instance.', registers, collect() { this.set(s.runningGenerations?.() ?? 0); } });
    new Gauge({ name: 'llmchat_active_streams', help: 'Event streams open to clients on this instance.', registers, collect() { this.set(s.activeStreams?.() ?? 0); } });
    new Gauge({ name: 'llmchat_followers', help: 'Clients following an answer that runs on another instance (through the shared buffer).', registers, collect() { this.set(s.followers?.() ?? 0); } });
    new Gauge({ name: 'llmchat_draining', help: '1 while this instance is shutting down (new turns are refused).', registers, collect() { this.set(s.draining?.() === true ? 1 : 0); } });
    new Gauge({
      name: 'llmchat_ready', help: '1 when the instance is ready (what /health/ready answers: database reachable, migrations done, not draining), else 0; checked at scrape.', registers,
      async collect() {
        this.set(s.ready ? ((await s.ready().catch(() => false)) ? 1 : 0) : 1);
      },
    });
    new Gauge({ name: 'llmchat_shared_state_degraded', help: 'Features running degraded because shared state (Redis) is unavailable; 0 when none.', registers, collect() { this.set(s.sharedStateDegraded?.() ?? 0); } });
    new Gauge({
      name: 'llmchat_db_pool_connections', help: 'Database pool connections by pool (writer, reader) and state (total, idle, waiting: requests queued for a connection).', labelNames: ['pool', 'state'], registers,
      collect() {
        this.reset();
        for (const p of s.pools?.() ?? []) {
          this.labels(p.pool, 'total').set(p.total);
          this.labels(p.pool, 'idle').set(p.idle);
          this.labels(p.pool, 'waiting').set(p.waiting);
        }
      },
    });
    new Gauge({
      name: 'llmchat_db_replica_lag_seconds', help: 'Replay lag of the read replica at the last check (-1 when unknown: unreachable or nothing replayed yet). Absent without DATABASE_READ_URL.', registers,
      collect() {
        this.reset();
        const r = s.replica?.();
        if (r) this.set(r.lagSeconds ?? -1);
      },
    });
    new Gauge({
      name: 'llmchat_db_reads_on_replica', help: '1 while reads go to the replica, 0 while they fell back to the writer (replica lagging or unreachable). Absent without DATABASE_READ_URL.', registers,
      collect() {
        this.reset();
        const r = s.replica?.();
        if (r) this.set(r.usingReplica ? 1 : 0);
      },
    });
    const groupWriters = () => s.groupWriters?.() ?? [];
    new Gauge({ name: 'llmchat_db_group_write_batch_size', help: 'Largest batch one group writer wrote since the last scrape.', labelNames: ['writer'], registers, collect() { for (const w of groupWriters()) this.labels(w.writer).set(w.maxBatch); } });
    new Gauge({ name: 'llmchat_db_group_write_wait_seconds', help: "Longest time a batch's first item waited for its write since the last scrape.", labelNames: ['writer'], registers, collect() { for (const w of groupWriters()) this.labels(w.writer).set(w.maxWaitSeconds); } });
    // Totals kept by the writers, turned into counter increments at each scrape.
    const seenBatches = new Map<string, number>();
    const seenItems = new Map<string, number>();
    new Counter({ name: 'llmchat_db_group_write_batches_total', help: 'Statements group writers sent.', labelNames: ['writer'], registers, collect() { for (const w of groupWriters()) this.labels(w.writer).inc(grownBy(seenBatches, w.writer, w.batches)); } });
    new Counter({ name: 'llmchat_db_group_write_items_total', help: 'Items group writers wrote (items / batches = mean batch size).', labelNames: ['writer'], registers, collect() { for (const w of groupWriters()) this.labels(w.writer).inc(grownBy(seenItems, w.writer, w.items)); } });
    new Gauge({
      name: 'llmchat_breaker_state', help: 'Circuit breaker of each configured endpoint: 0 closed, 1 half-open (probing), 2 open.', labelNames: ['agent', 'endpoint', 'provider'], registers,
      async collect() {
        this.reset();
        const breakers = await s.breakers?.().catch(() => undefined);
        for (const b of breakers ?? []) this.labels(b.agent, b.endpoint, b.provider).set(BREAKER_VALUES[b.state]);
      },
    });
    new Gauge({
      name: 'llmchat_redis_command_latency_seconds', help: 'Round trip of a PING to Redis, measured at scrape (-1 when it failed). Absent with in-process shared state.', registers,
      async collect() {
        this.reset();
        if (!s.redisPing) return;
        this.set(await s.redisPing().then((ms) => ms / 1000, () => -1));
      },
    });
    const errorsSeen = this.sharedStateErrorsSeen;
    new Counter({
      name: 'llmchat_redis_errors_total', help: 'Shared-state (Redis) operations that failed.', registers,
      collect() {
        const total = s.sharedStateErrors?.() ?? 0;
        if (total > errorsSeen.total) this.inc(total - errorsSeen.total);
        errorsSeen.total = total;
      },
    });
    new Gauge({ name: 'llmchat_event_loop_delay_seconds', help: "p99 event-loop delay over the last second, as load shedding sees it (SHED_EVENT_LOOP_DELAY_MS).", registers, collect() { this.set((s.pressure?.().eventLoopDelayMs ?? 0) / 1000); } });
    new Gauge({ name: 'llmchat_heap_used_ratio', help: 'Heap used over the heap limit, as load shedding sees it (SHED_HEAP_USED_PERCENT).', registers, collect() { this.set((s.pressure?.().heapUsedPercent ?? 0) / 100); } });
  }

  /** The Prometheus text format. */
  text(): Promise<string> {
    return this.registry.metrics();
  }

  get contentType(): string {
    return this.registry.contentType;
  }
}
