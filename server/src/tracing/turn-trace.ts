import { SpanKind, SpanStatusCode, type Attributes, type Context, type Link, type Span, type Tracer } from '@opentelemetry/api';
import { contextWith, traceparentOf } from './tracing.js';

/** What an upstream attempt's span says about its endpoint. */
export interface AttemptTarget {
  id: string;
  position: number;
  provider: string;
  model?: string | undefined;
  url: string;
}

/** How an upstream attempt failed: the resilience category (`error.type`) and the transport's kind. */
export interface AttemptFailure {
  category: string;
  kind: string;
  status?: number | undefined;
}

/**
 * The spans of one chat turn: the turn's own span and, under it, its phases
 * (the turn write, each upstream attempt, the relay to the client, the final
 * write). One object per traced turn; a turn without tracing has none, and
 * the code around it checks for that once per phase, never per chunk.
 */
export class TurnTrace {
  readonly context: Context;
  private attemptSpan: Span | undefined;

  private constructor(
    private readonly tracer: Tracer,
    readonly span: Span,
  ) {
    this.context = contextWith(span);
  }

  /** Starts a turn's span under `parent` (the request's span), or as a new trace linked to `links`. */
  static start(tracer: Tracer, name: string, parent: Context | undefined, attributes: Attributes, links?: Link[]): TurnTrace {
    const span = tracer.startSpan(name, { kind: SpanKind.INTERNAL, attributes, ...(links ? { links, root: parent === undefined } : {}) }, parent);
    return new TurnTrace(tracer, span);
  }

  get traceId(): string {
    return this.span.spanContext().traceId;
  }

  /** The turn span's `traceparent`: stored with the turn, so a takeover or a resume can link to it. */
  get traceparent(): string {
    return traceparentOf(this.span);
  }

  /** A phase of the turn, as a child span; the caller ends it. */
  phase(name: string, attributes?: Attributes, links?: Link[]): Span {
    return this.tracer.startSpan(name, { kind: SpanKind.INTERNAL, attributes, links }, this.context);
  }

  /** Starts the span of an upstream call; returns the `traceparent` to send with it. */
  beginAttempt(target: AttemptTarget, attempt: number): string {
    this.attemptSpan?.end();
    const span = this.attemptSpanFor(target, attempt);
    this.attemptSpan = span;
    return traceparentOf(span);
  }

  /**
   * The span of one call of a hedged race, where two calls run at once:
   * `serve()` makes it the current attempt (the call won: its first token
   * and the turn's end go to it); `end()` ends it, whichever it is.
   */
  racingAttempt(target: AttemptTarget, attempt: number): { traceparent: string; serve: () => void; end: (failure?: AttemptFailure) => void } {
    const span = this.attemptSpanFor(target, attempt);
    return {
      traceparent: traceparentOf(span),
      serve: () => {
        this.attemptSpan = span;
      },
      end: (failure) => {
        if (this.attemptSpan === span) this.attemptSpan = undefined;
        endWith(span, failure);
      },
    };
  }

  private attemptSpanFor(target: AttemptTarget, attempt: number): Span {
    let address: string | undefined;
    try {
      address = new URL(target.url).hostname;
    } catch {
      address = undefined;
    }
    return this.tracer.startSpan(
      `chat ${target.model ?? target.provider}`,
      {
        kind: SpanKind.CLIENT,
        attributes: {
          'gen_ai.operation.name': 'chat',
          'gen_ai.provider.name': target.provider,
          'gen_ai.request.model': target.model,
          'server.address': address,
          'llmchat.endpoint.id': target.id,
          'llmchat.endpoint.position': target.position,
          'llmchat.attempt': attempt,
        },
      },
      this.context,
    );
  }

  /** The current attempt's first text or reasoning chunk. */
  firstToken(): void {
    this.attemptSpan?.addEvent('first_token');
  }

  /** Ends the current attempt's span, with how it failed if it did. */
  endAttempt(failure?: AttemptFailure): void {
    const span = this.attemptSpan;
    if (!span) return;
    this.attemptSpan = undefined;
    endWith(span, failure);
  }

  /** Ends the turn's span with its outcome. */
  end(attributes: Attributes, errorCode?: string): void {
    this.endAttempt();
    this.span.setAttributes(attributes);
    if (errorCode !== undefined) {
      this.span.setAttribute('error.type', errorCode);
      this.span.setStatus({ code: SpanStatusCode.ERROR });
    }
    this.span.end();
  }
}

/** Ends an attempt's span, with how it failed if it did. */
function endWith(span: Span, failure: AttemptFailure | undefined): void {
  if (failure) {
    span.setAttribute('error.type', failure.category);
    span.setAttribute('llmchat.upstream.failure_kind', failure.kind);
    if (failure.status !== undefined) span.setAttribute('http.response.status_code', failure.status);
    span.setStatus({ code: SpanStatusCode.ERROR });
  }
  span.end();
}
