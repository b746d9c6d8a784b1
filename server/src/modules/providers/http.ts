import type { IncomingHttpHeaders } from 'node:http';
import { createSecureContext, rootCertificates, type SecureContext } from 'node:tls';
import { Pool, type Dispatcher } from 'undici';
import type { EndpointTimeouts } from '../../db/schema.js';
import { UpstreamError, isNonRetryableCode, parseRetryAfter } from './upstream-error.js';
import { addressRefusal, type OutboundPolicy } from './outbound-policy.js';
import { Admission, OriginSlots } from './upstream-slots.js';
import { excerpt, inStreamError, providerErrorFromBody, providerErrorFromObject, redact } from './wire.js';

/** Deadlines applied when neither the endpoint nor the configuration (UPSTREAM_*_TIMEOUT_MS) sets its own. */
export const DEFAULT_TIMEOUTS: Required<EndpointTimeouts> = {
  connectMs: 10_000,
  firstTokenMs: 60_000,
  idleMs: 30_000,
  totalMs: 600_000,
};

/** Streams one HTTP/2 connection carries at once (undici's default is 100); the pool opens more connections beyond. */
const H2_STREAMS_PER_CONNECTION = 100;

/** Error bodies are read up to this many characters; the rest is dropped. */
const ERROR_BODY_LIMIT = 64 * 1024;

/** A body that queues more than this while nobody reads pauses the upstream socket; it resumes below half. */
const BODY_HIGH_WATER_BYTES = 1024 * 1024;

type Waiter = { resolve: (result: IteratorResult<Uint8Array>) => void; reject: (err: unknown) => void };

/**
 * An upstream response body, fed by undici's dispatch handler and read once
 * with `for await`. It replaces undici's Readable body on the hot path: a
 * chunk reaches a waiting reader in one promise resolution, where a
 * Readable took a push, a `readable` event on the next tick and its async
 * iterator's own promise per chunk. Leaving the loop early (`break`,
 * `return`, a throw) or `destroy()` aborts the request, as with a Readable.
 */
export class UpstreamBody implements AsyncIterableIterator<Uint8Array> {
  private readonly queue: Uint8Array[] = [];
  private queuedBytes = 0;
  private paused = false;
  private ended = false;
  private destroyed = false;
  private failure: Error | undefined;
  private waiter: Waiter | undefined;

  constructor(private readonly controller: Dispatcher.DispatchController) {}

  /** Every byte arrived, or the body was given up: nothing more will come. */
  get finished(): boolean {
    return this.ended || this.destroyed || this.failure !== undefined;
  }

  /** undici: a chunk arrived. */
  push(chunk: Uint8Array): void {
    if (this.finished) return;
    const waiter = this.waiter;
    if (waiter) {
      this.waiter = undefined;
      waiter.resolve({ value: chunk, done: false });
      return;
    }
    this.queue.push(chunk);
    this.queuedBytes += chunk.length;
    if (!this.paused && this.queuedBytes > BODY_HIGH_WATER_BYTES) {
      this.paused = true;
      this.controller.pause();
    }
  }

  /** undici: the body is complete. */
  end(): void {
    if (this.finished) return;
    this.ended = true;
    const waiter = this.waiter;
    this.waiter = undefined;
    waiter?.resolve({ value: undefined, done: true });
  }

  /** undici, or the call's deadlines: the body failed. Queued chunks are still read first. */
  fail(err: unknown): void {
    if (this.finished) return;
    this.failure = err instanceof Error ? err : new Error(String(err));
    const waiter = this.waiter;
    this.waiter = undefined;
    waiter?.reject(this.failure);
  }

  next(): Promise<IteratorResult<Uint8Array>> {
    const chunk = this.queue.shift();
    if (chunk !== undefined) {
      this.queuedBytes -= chunk.length;
      if (this.paused && this.queuedBytes < BODY_HIGH_WATER_BYTES / 2) {
        this.paused = false;
        this.controller.resume();
      }
      return Promise.resolve({ value: chunk, done: false });
    }
    if (this.failure !== undefined) return Promise.reject(this.failure);
    if (this.ended || this.destroyed) return Promise.resolve({ value: undefined, done: true });
    return new Promise((resolve, reject) => (this.waiter = { resolve, reject }));
  }

  /** The reader left the loop early: the rest of the body is not wanted. */
  return(): Promise<IteratorResult<Uint8Array>> {
    this.destroy();
    return Promise.resolve({ value: undefined, done: true });
  }

  [Symbol.asyncIterator](): this {
    return this;
  }

  /** Drops what is queued and, unless the body already ended, aborts the request (its connection is not reused). */
  destroy(): void {
    if (this.destroyed) return;
    const unfinished = !this.ended && this.failure === undefined;
    this.destroyed = true;
    this.queue.length = 0;
    this.queuedBytes = 0;
    const waiter = this.waiter;
    this.waiter = undefined;
    waiter?.resolve({ value: undefined, done: true });
    if (unfinished && !this.controller.aborted) this.controller.abort(new Error('upstream body not read to its end'));
  }
}

export interface UpstreamRequest {
  method: 'GET' | 'POST';
  url: string;
  headers: Record<string, string>;
  /** JSON text, or bytes (a file upload's multipart body). */
  body?: string | Uint8Array | undefined;
  timeouts: EndpointTimeouts;
  /** The caller's signal; aborting it ends the call with kind 'aborted'. */
  signal: AbortSignal;
  /**
   * 'stream': the response headers must arrive within connectMs, then the
   * first content within firstTokenMs, then chunks no more than idleMs apart.
   * 'blocking': providers send headers only once the whole answer is ready,
   * so only the total deadline bounds the wait for headers; the body must
   * then arrive with no gap longer than idleMs.
   */
  mode: 'stream' | 'blocking';
  /** Secret to scrub from anything that ends up in an error (the endpoint's API key). */
  secret?: string | undefined;
}

/** The parts of an UpstreamRequest a call keeps while its answer streams. */
type CallTarget = Pick<UpstreamRequest, 'url' | 'signal' | 'mode' | 'secret'>;

type Phase = 'headers' | 'first token' | 'idle' | 'total';

/**
 * One request to an upstream, from dispatch to the end of its body. Owns the
 * deadlines: at most two timers live at once (the total deadline and the
 * current phase's), and the idle timer is re-armed per chunk with
 * `refresh()` rather than recreated.
 */
/**
 * What a stream does with an event it cannot read (not JSON, not an
 * object): up to `max` in one call are skipped and reported, the next one
 * fails the attempt as a protocol error (UPSTREAM_MALFORMED_EVENTS_MAX).
 */
export interface MalformedEventPolicy {
  max: number;
  /** Told of each event skipped (for the log and the counters). */
  onSkipped?: ((err: UpstreamError) => void) | undefined;
}

const FAIL_ON_FIRST: MalformedEventPolicy = { max: 0 };

export class UpstreamCall {
  status = 0;
  headers: IncomingHttpHeaders = {};
  /** Set once headers arrived; read it through `readSse` or `json()`. */
  body: UpstreamBody | undefined;
  /** First failure we decided on (deadline, caller abort); wins over whatever undici throws next. */
  private failure: UpstreamError | undefined;
  /** undici's handle on the request, once it is on a connection. */
  private dispatch: Dispatcher.DispatchController | undefined;
  /** Fails `open()` while it waits for headers. */
  private rejectHeaders: ((err: unknown) => void) | undefined;
  private readonly limits: Required<EndpointTimeouts>;
  private phaseTimer: NodeJS.Timeout | undefined;
  private totalTimer: NodeJS.Timeout | undefined;
  private idleArmed = false;
  /** When the last chunk arrived (performance.now()); the idle timer checks it rather than being re-armed per chunk. */
  private lastChunkAt = 0;
  private contentSeen = false;
  private closed = false;
  /** Events skipped as unreadable in this call. */
  malformedSkipped = 0;

  /**
   * What the call needs of its request once it is sent. Not the request
   * itself: its body is the whole conversation as JSON, and a stream
   * lives for up to minutes after the body went out (undici keeps its own
   * copy until the response ends).
   */
  readonly request: CallTarget;

  constructor(
    request: UpstreamRequest,
    defaults: Required<EndpointTimeouts> = DEFAULT_TIMEOUTS,
    /** Gives back the call's slot (upstream-slots.ts) once it is closed. */
    private readonly onClose?: () => void,
    private readonly malformed: MalformedEventPolicy = FAIL_ON_FIRST,
  ) {
    this.request = { url: request.url, signal: request.signal, mode: request.mode, secret: request.secret };
    const t = request.timeouts;
    this.limits = {
      connectMs: positive(t.connectMs, defaults.connectMs),
      firstTokenMs: positive(t.firstTokenMs, defaults.firstTokenMs),
      idleMs: positive(t.idleMs, defaults.idleMs),
      totalMs: positive(t.totalMs, defaults.totalMs),
    };
  }

  /**
   * The undici dispatch handler of this call, and a promise that resolves
   * once the headers arrived (`status`, `headers` and `body` are then set)
   * or fails with whatever ended the request before them.
   */
  handler(): { handler: Dispatcher.DispatchHandler; headers: Promise<void> } {
    let resolveHeaders!: () => void;
    const headers = new Promise<void>((resolve, reject) => {
      resolveHeaders = resolve;
      // Aborted before it was sent (the caller's signal already was): it is never dispatched.
      if (this.failure) reject(this.failure);
      else this.rejectHeaders = reject;
    });
    const handler: Dispatcher.DispatchHandler = {
      onRequestStart: (controller) => {
        this.dispatch = controller;
        // Failed while the request waited for a connection: it goes no further.
        if (this.failure) controller.abort(this.failure);
      },
      onResponseStart: (controller, statusCode, responseHeaders) => {
        if (statusCode < 200) return; // 1xx: the real answer follows
        this.rejectHeaders = undefined;
        this.onResponse(statusCode, responseHeaders, new UpstreamBody(controller));
        resolveHeaders();
      },
      onResponseData: (_controller, chunk) => {
        this.body?.push(chunk);
      },
      onResponseEnd: () => {
        this.body?.end();
      },
      onResponseError: (_controller, err) => {
        this.failWaiting(this.failure ?? err);
      },
    };
    return { handler, headers };
  }

  /** A deadline passed or the caller aborted. */
  get failed(): boolean {
    return this.failure !== undefined;
  }

  /** Arms the total and headers deadlines and links the caller's signal. */
  begin(): void {
    const { signal, mode } = this.request;
    if (signal.aborted) {
      this.onCallerAbort();
      return;
    }
    signal.addEventListener('abort', this.onCallerAbort, { once: true });
    this.totalTimer = setTimeout(this.expire, this.limits.totalMs, 'total');
    if (mode === 'stream') this.phaseTimer = setTimeout(this.expire, this.limits.connectMs, 'headers');
  }

  /** Headers arrived: the headers deadline ends; the first-token (stream) or idle (blocking) one starts. */
  private onResponse(statusCode: number, headers: IncomingHttpHeaders, body: UpstreamBody): void {
    this.status = statusCode;
    this.headers = headers;
    this.body = body;
    this.clearPhase();
    if (this.closed || this.failure) return;
    if (this.request.mode === 'stream' && statusCode >= 200 && statusCode < 300) {
      this.phaseTimer = setTimeout(this.expire, this.limits.firstTokenMs, 'first token');
    } else {
      this.armIdle();
    }
  }

  /** The adapter saw the first text or reasoning: from now on only gaps between chunks are bounded. */
  contentStarted(): void {
    if (this.contentSeen) return;
    this.contentSeen = true;
    if (!this.idleArmed) this.armIdle();
  }

  /** A body chunk arrived. Hot path: a clock read; the idle timer looks at it when it fires. */
  onChunk(): void {
    this.lastChunkAt = performance.now();
  }

  /**
   * An adapter could not read one stream event: returns to skip it, or
   * throws when it is not an unreadable event (a provider's in-stream error
   * is not skipped) or one too many of them.
   */
  skipMalformed(err: unknown): void {
    if (!(err instanceof UpstreamError) || err.kind !== 'protocol' || this.malformedSkipped >= this.malformed.max) throw err;
    this.malformedSkipped++;
    this.malformed.onSkipped?.(err);
  }

  /** Maps anything thrown while talking to the upstream into an UpstreamError. */
  fail(err: unknown): UpstreamError {
    if (this.failure) return this.failure;
    if (err instanceof UpstreamError) return err;
    if (this.request.signal.aborted) return abortedError(this.request.url);
    const refusal = addressRefusal(err);
    // Refused before a byte left: not the upstream's failure, and no retry would be allowed either.
    if (refusal) return new UpstreamError('forbidden', refusal.message, { url: this.request.url, retryable: false, cause: err });
    return networkError(err, this.request.url, this.request.secret);
  }

  /** Reads the whole body (idle deadline between chunks) and parses it as JSON. */
  async json(): Promise<unknown> {
    const text = await this.text(Number.POSITIVE_INFINITY);
    try {
      return JSON.parse(text) as unknown;
    } catch (err) {
      throw new UpstreamError('protocol', 'upstream returned a body that is not valid JSON', {
        status: this.status,
        url: this.request.url,
        body: excerpt(redact(text, this.request.secret)),
        cause: err,
      });
    }
  }

  /** Reads the body as text, up to `limit` characters. */
  async text(limit: number): Promise<string> {
    const body = this.body;
    if (!body) return '';
    const decoder = new TextDecoder();
    let text = '';
    try {
      for await (const chunk of body as AsyncIterable<Uint8Array>) {
        this.onChunk();
        text += decoder.decode(chunk, { stream: true });
        if (text.length >= limit) break;
      }
    } catch (err) {
      throw this.fail(err);
    }
    return text + decoder.decode();
  }

  /** Builds the error for a non-2xx answer from its status, headers and body. */
  async httpError(provider: string): Promise<UpstreamError> {
    let text = '';
    try {
      text = await this.text(ERROR_BODY_LIMIT);
    } catch {
      // The status alone is enough to decide; a body we cannot read adds nothing.
    }
    const secret = this.request.secret;
    const parsed = providerErrorFromBody(text);
    const code = parsed.code;
    const detail = parsed.message ?? (text ? excerpt(text, 200) : 'no body');
    return new UpstreamError('http', redact(`${provider} answered ${this.status}: ${detail}`, secret), {
      status: this.status,
      providerCode: code,
      retryable: isNonRetryableCode(code) ? false : undefined,
      retryAfter: parseRetryAfter(this.headers['retry-after']),
      url: this.request.url,
      body: text ? excerpt(redact(text, secret)) : undefined,
    });
  }

  /** A stream request answered with a JSON body: the provider's error if it names one, else a protocol error. */
  async unexpectedJson(provider: string): Promise<UpstreamError> {
    let text: string;
    try {
      text = await this.text(ERROR_BODY_LIMIT);
    } catch (err) {
      return this.fail(err);
    }
    const secret = this.request.secret;
    let payload: unknown;
    try {
      payload = JSON.parse(text);
    } catch {
      payload = undefined;
    }
    const parsed = providerErrorFromObject(payload);
    if (parsed.code === undefined && parsed.message === undefined) {
      return new UpstreamError('protocol', `${provider} answered a stream request with a JSON body`, {
        status: this.status,
        url: this.request.url,
        body: excerpt(redact(text, secret)),
      });
    }
    return inStreamError(provider, payload, this.request.url, secret);
  }

  /** Ends the call: clears deadlines, unlinks the caller's signal, drops an unread body. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.clearPhase();
    if (this.totalTimer) clearTimeout(this.totalTimer);
    this.totalTimer = undefined;
    this.request.signal.removeEventListener('abort', this.onCallerAbort);
    this.body?.destroy();
    this.onClose?.();
  }

  private armIdle(): void {
    this.clearPhase();
    if (this.closed) return;
    this.idleArmed = true;
    this.lastChunkAt = performance.now();
    this.phaseTimer = setTimeout(this.expire, this.limits.idleMs, 'idle');
  }

  private clearPhase(): void {
    if (this.phaseTimer) clearTimeout(this.phaseTimer);
    this.phaseTimer = undefined;
    this.idleArmed = false;
  }

  private readonly expire = (phase: Phase): void => {
    if (this.failure || this.closed) return;
    if (phase === 'idle' && this.idleArmed) {
      // A chunk came since the timer was set: wait for what is left of the gap since the last one.
      const quietMs = performance.now() - this.lastChunkAt;
      if (quietMs < this.limits.idleMs) {
        this.phaseTimer = setTimeout(this.expire, Math.max(1, Math.ceil(this.limits.idleMs - quietMs)), 'idle');
        return;
      }
    }
    const ms = phaseLimit(this.limits, phase);
    this.abortWith(new UpstreamError('timeout', `upstream ${phase} deadline of ${ms} ms passed`, { url: this.request.url, phase }));
  };

  private readonly onCallerAbort = (): void => {
    if (this.failure || this.closed) return;
    this.abortWith(abortedError(this.request.url));
  };

  /** Ends the request with `failure`: whoever waits (for headers or the next chunk) gets it. */
  private abortWith(failure: UpstreamError): void {
    this.failure = failure;
    // Before the request is on a connection there is nothing to abort yet: onRequestStart does it then.
    if (this.dispatch && !this.dispatch.aborted) this.dispatch.abort(failure);
    this.failWaiting(failure);
  }

  /** Whoever waits for the headers or the next chunk gets `failure`. */
  private failWaiting(failure: unknown): void {
    const rejectHeaders = this.rejectHeaders;
    this.rejectHeaders = undefined;
    rejectHeaders?.(failure);
    this.body?.fail(failure);
  }
}

function isJsonResponse(headers: IncomingHttpHeaders): boolean {
  const type = headers['content-type'];
  return typeof type === 'string' && type.includes('json') && !type.includes('event-stream');
}

function phaseLimit(limits: Required<EndpointTimeouts>, phase: Phase): number {
  switch (phase) {
    case 'headers':
      return limits.connectMs;
    case 'first token':
      return limits.firstTokenMs;
    case 'idle':
      return limits.idleMs;
    case 'total':
      return limits.totalMs;
  }
}

function positive(value: number | undefined, fallback: number): number {
  return value !== undefined && Number.isFinite(value) && value > 0 ? value : fallback;
}

function abortedError(url: string): UpstreamError {
  return new UpstreamError('aborted', 'upstream request aborted', { url, retryable: false });
}

const TIMEOUT_CODES = new Set(['UND_ERR_CONNECT_TIMEOUT', 'UND_ERR_HEADERS_TIMEOUT', 'UND_ERR_BODY_TIMEOUT', 'ETIMEDOUT']);

/** Connection refused/reset, socket closed, DNS, TLS, undici's own errors → 'network' (or 'timeout'). */
export function networkError(err: unknown, url: string, secret?: string): UpstreamError {
  let code: string | undefined;
  let message = 'upstream connection failed';
  // undici and node wrap the interesting error; the first `code` on the cause chain names it.
  let cur: unknown = err;
  for (let depth = 0; depth < 4 && cur instanceof Error; depth++) {
    const c = (cur as NodeJS.ErrnoException).code;
    if (typeof c === 'string' && !code) {
      code = c;
      message = cur.message || message;
    }
    cur = cur.cause;
  }
  if (!code && err instanceof Error && err.message) message = err.message;
  const kind = code && TIMEOUT_CODES.has(code) ? 'timeout' : 'network';
  const host = safeHost(url);
  return new UpstreamError(kind, redact(`upstream ${host} ${code ?? 'error'}: ${message}`, secret), {
    providerCode: code,
    url,
    cause: err,
  });
}

function safeHost(url: string): string {
  try {
    return new URL(url).host;
  } catch {
    return 'upstream';
  }
}

export interface UpstreamHttpOptions {
  /** Requests in flight at once per upstream origin (UPSTREAM_CONNECTIONS); over HTTP/1.1 one connection each. */
  connections: number;
  /** Deadlines for endpoints that set none (the UPSTREAM_*_TIMEOUT_MS configuration). */
  defaultTimeouts?: Required<EndpointTimeouts> | undefined;
  /** Longest wait for a slot to an origin (UPSTREAM_QUEUE_TIMEOUT_MS); then the call is `busy`. */
  queueTimeoutMs?: number | undefined;
  /** Negotiate HTTP/2 over TLS where the upstream offers it (UPSTREAM_HTTP2); default on. */
  http2?: boolean | undefined;
  /** Certificates (PEM) trusted for upstream TLS besides the built-in roots (UPSTREAM_CA_FILE). */
  extraCa?: string | undefined;
  /** Which addresses connections may reach (UPSTREAM_ALLOWED_CIDRS, the simulated upstream); checked when a connection opens. */
  outbound: OutboundPolicy;
  /** Unreadable stream events skipped per call before the attempt fails (UPSTREAM_MALFORMED_EVENTS_MAX); default: none. */
  malformedEvents?: MalformedEventPolicy | undefined;
}

/** UPSTREAM_QUEUE_TIMEOUT_MS's default. */
export const DEFAULT_QUEUE_TIMEOUT_MS = 5_000;

/** Slot use of one origin, for /health/detailed. */
export interface OriginLoad {
  origin: string;
  capacity: number;
  used: number;
  waiting: number;
}

/**
 * Keep-alive connection pools, one per upstream origin, the slots that
 * queue calls to each (upstream-slots.ts), and the request entry point
 * every adapter uses.
 */
export class UpstreamHttp {
  private readonly pools = new Map<string, Pool>();
  private readonly slotsByOrigin = new Map<string, OriginSlots>();
  /** The admitted turns' slots, by the signal their calls carry. */
  private readonly admissions = new WeakMap<AbortSignal, Admission>();
  private closing = false;

  private readonly defaults: Required<EndpointTimeouts>;
  private readonly queueTimeoutMs: number;
  /**
   * Built once: given `ca`, every TLS connection would parse the whole root
   * store again (about 140 certificates; 6% of the server's CPU while
   * 10,000 answers started over 10 s, as undici opened its HTTP/2 connections).
   */
  private readonly secureContext: SecureContext | undefined;

  constructor(private readonly options: UpstreamHttpOptions) {
    this.defaults = options.defaultTimeouts ?? DEFAULT_TIMEOUTS;
    this.queueTimeoutMs = options.queueTimeoutMs ?? DEFAULT_QUEUE_TIMEOUT_MS;
    this.secureContext = options.extraCa === undefined ? undefined : createSecureContext({ ca: [...rootCertificates, options.extraCa] });
  }

  pool(origin: string): Pool {
    let pool = this.pools.get(origin);
    if (!pool) {
      if (this.closing) throw new UpstreamError('aborted', 'provider registry is closed', { retryable: false });
      pool = new Pool(origin, {
        // At most one request per slot is ever dispatched, so the pool never queues: our slots do.
        connections: Math.max(1, this.options.connections),
        pipelining: 1,
        // Our own deadlines (UpstreamCall) replace undici's headers/body timeouts.
        headersTimeout: 0,
        bodyTimeout: 0,
        // The outbound policy's connector: it runs once per new connection, never per request.
        connect: this.options.outbound.connector(origin, {
          timeout: this.defaults.connectMs,
          allowH2: this.options.http2 ?? true,
          ...(this.secureContext ? { secureContext: this.secureContext } : {}),
        }),
        // HTTP/2 where the upstream offers it over TLS (ALPN): many streams share a few connections.
        allowH2: this.options.http2 ?? true,
        maxConcurrentStreams: H2_STREAMS_PER_CONNECTION,
      });
      this.pools.set(origin, pool);
    }
    return pool;
  }

  private slots(origin: string): OriginSlots {
    let slots = this.slotsByOrigin.get(origin);
    if (!slots) {
      slots = new OriginSlots(origin, Math.max(1, this.options.connections));
      this.slotsByOrigin.set(origin, slots);
    }
    return slots;
  }

  /**
   * A turn's slot on the origin of `url`, taken before the turn is
   * acknowledged: waits up to the queue's bound, then fails with `busy`
   * (the turn is refused with UPSTREAM_BUSY). `bind` it to the signal the
   * turn's calls carry; `release` it when the turn settles.
   */
  async admit(url: string): Promise<Admission> {
    let origin: string;
    try {
      origin = new URL(url).origin;
    } catch (err) {
      throw new UpstreamError('protocol', 'invalid upstream URL', { retryable: false, cause: err });
    }
    const slots = this.slots(origin);
    if (!slots.tryTake()) await slots.take(this.queueTimeoutMs, undefined);
    return new Admission(slots, this.admissions);
  }

  /** Slot use per origin. */
  load(): OriginLoad[] {
    return [...this.slotsByOrigin.values()].map((s) => ({ origin: s.origin, capacity: s.capacity, used: s.used, waiting: s.waiting }));
  }

  /**
   * The slot a call to `origin` runs in, as the function that gives it back
   * (UpstreamCall.close calls it once): its turn's admission when that is
   * free, else a free slot of the origin; undefined when it must queue.
   */
  private takeSlot(origin: string, signal: AbortSignal): (() => void) | undefined {
    const admission = this.admissions.get(signal);
    if (admission !== undefined && admission.active && !admission.inCall && admission.origin === origin) {
      admission.inCall = true;
      return () => (admission.inCall = false);
    }
    const slots = this.slots(origin);
    return slots.tryTake() ? () => slots.give() : undefined;
  }

  /** Queues for a slot of `origin` (up to the queue's bound); resolves with the function that gives it back. */
  private async queueForSlot(origin: string, signal: AbortSignal): Promise<() => void> {
    const slots = this.slots(origin);
    await slots.take(this.queueTimeoutMs, signal);
    return () => slots.give();
  }

  /**
   * Sends the request and waits for the headers. Resolves with a call whose
   * status is 2xx and whose body is unread; the caller must `close()` it.
   * Throws UpstreamError for everything else. Waiting for a slot comes
   * first and counts against no deadline of the upstream.
   */
  async open(request: UpstreamRequest, provider: string): Promise<UpstreamCall> {
    let url: URL;
    try {
      url = new URL(request.url);
    } catch (err) {
      throw new UpstreamError('protocol', `invalid upstream URL for ${provider}`, { retryable: false, cause: err });
    }
    if (this.closing) throw new UpstreamError('aborted', 'provider registry is closed', { retryable: false });
    // Hot path: a free slot is taken without a promise; only a full origin queues.
    const release = this.takeSlot(url.origin, request.signal) ?? (await this.queueForSlot(url.origin, request.signal));
    const call = new UpstreamCall(request, this.defaults, release, this.options.malformedEvents);
    call.begin();
    try {
      const { handler, headers } = call.handler();
      if (!call.failed) this.pool(url.origin).dispatch(
        { origin: url.origin, method: request.method, path: url.pathname + url.search, headers: request.headers, body: request.body ?? null },
        handler,
      );
      await headers;
    } catch (err) {
      const failure = call.fail(err);
      call.close();
      throw failure;
    }
    if (call.status < 200 || call.status >= 300) {
      const failure = await call.httpError(provider);
      call.close();
      throw failure;
    }
    if (request.mode === 'stream' && isJsonResponse(call.headers)) {
      // Some providers (FastGPT among them) answer a stream request with a 200 JSON error body.
      const failure = await call.unexpectedJson(provider);
      call.close();
      throw failure;
    }
    return call;
  }

  /** A blocking JSON request: open, read, parse, close. */
  async json(request: UpstreamRequest, provider: string): Promise<unknown> {
    const call = await this.open(request, provider);
    try {
      return await call.json();
    } finally {
      call.close();
    }
  }

  async close(): Promise<void> {
    this.closing = true;
    for (const slots of this.slotsByOrigin.values()) slots.failAll(new UpstreamError('aborted', 'provider registry is closed', { retryable: false }));
    const pools = [...this.pools.values()];
    this.pools.clear();
    await Promise.all(pools.map((p) => p.close()));
  }
}
