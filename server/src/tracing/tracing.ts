import { diag, DiagLogLevel, ROOT_CONTEXT, trace, TraceFlags, type Context, type Span, type SpanContext, type Tracer } from '@opentelemetry/api';
import type { Logger } from 'pino';
import { parseTraceParent } from '@opentelemetry/core';
import { OTLPTraceExporter } from '@opentelemetry/exporter-trace-otlp-http';
import { detectResources, envDetector, resourceFromAttributes } from '@opentelemetry/resources';
import { AlwaysOffSampler, AlwaysOnSampler, BatchSpanProcessor, ParentBasedSampler, TraceIdRatioBasedSampler, TracerProvider, type Sampler } from '@opentelemetry/sdk-trace';
import type { Config, TracesSampler } from '../config.js';

/**
 * OpenTelemetry tracing, on only when an OTLP endpoint is configured. Spans
 * are started by hand around our own code (request, authentication, the
 * turn's phases, each upstream attempt) with explicit parents: no
 * auto-instrumentation of http/undici and no AsyncLocalStorage context
 * manager, so a process with tracing off runs none of it, and one with
 * tracing on pays only for the spans it asked for.
 *
 * The provider is not registered globally: each app (tests build several in
 * one process) holds its own.
 */
export interface Tracing {
  readonly tracer: Tracer;
  /** Exports what is buffered now (tests; shutdown does it too). */
  flush(): Promise<void>;
  shutdown(): Promise<void>;
}

export type TracingConfig = Pick<Config, 'otelSdkDisabled' | 'otlpEndpoint' | 'otlpTracesEndpoint' | 'tracesSampler' | 'tracesSamplerArg' | 'otelServiceName'>;

/** Where spans are posted, or undefined when tracing is off. */
export function tracesUrl(config: TracingConfig): string | undefined {
  if (config.otelSdkDisabled) return undefined;
  if (config.otlpTracesEndpoint !== undefined) return config.otlpTracesEndpoint;
  if (config.otlpEndpoint === undefined) return undefined;
  return `${config.otlpEndpoint.replace(/\/+$/, '')}/v1/traces`;
}

export function samplerFor(kind: TracesSampler, ratio: number): Sampler {
  switch (kind) {
    case 'always_on':
      return new AlwaysOnSampler();
    case 'always_off':
      return new AlwaysOffSampler();
    case 'traceidratio':
      return new TraceIdRatioBasedSampler(ratio);
    case 'parentbased_always_on':
      return new ParentBasedSampler({ root: new AlwaysOnSampler() });
    case 'parentbased_always_off':
      return new ParentBasedSampler({ root: new AlwaysOffSampler() });
    case 'parentbased_traceidratio':
      return new ParentBasedSampler({ root: new TraceIdRatioBasedSampler(ratio) });
  }
}

/** The app's tracing, or undefined when no OTLP endpoint is set (then nothing of it runs). */
export function createTracing(config: TracingConfig, instanceId: string): Tracing | undefined {
  const url = tracesUrl(config);
  if (url === undefined) return undefined;
  // OTEL_RESOURCE_ATTRIBUTES first; our service name and instance id over it.
  const resource = detectResources({ detectors: [envDetector] }).merge(
    resourceFromAttributes({ 'service.name': config.otelServiceName, 'service.instance.id': instanceId }),
  );
  const provider = new TracerProvider({
    resource,
    sampler: samplerFor(config.tracesSampler, config.tracesSamplerArg),
    spanProcessors: [new BatchSpanProcessor({ exporter: new OTLPTraceExporter({ url }) })],
  });
  return {
    tracer: provider.getTracer('llmchat'),
    flush: () => provider.forceFlush(),
    shutdown: () => provider.shutdown(),
  };
}

/** The context of an incoming W3C `traceparent` header, or undefined when there is none or it is malformed. */
export function remoteContext(traceparent: string | string[] | undefined): Context | undefined {
  if (typeof traceparent !== 'string') return undefined;
  const spanContext = parseTraceParent(traceparent);
  if (!spanContext) return undefined;
  return trace.setSpanContext(ROOT_CONTEXT, { ...spanContext, isRemote: true });
}

/** A stored `traceparent` as a span context (for a link), or undefined. */
export function spanContextOf(traceparent: unknown): SpanContext | undefined {
  if (typeof traceparent !== 'string') return undefined;
  return parseTraceParent(traceparent) ?? undefined;
}

/** The W3C `traceparent` naming `span` as the parent. */
export function traceparentOf(span: Span): string {
  const { traceId, spanId, traceFlags } = span.spanContext();
  return `00-${traceId}-${spanId}-${(traceFlags & Number(TraceFlags.SAMPLED)) !== 0 ? '01' : '00'}`;
}

/** `parent` as the parent context of a new span. */
export function contextWith(span: Span): Context {
  return trace.setSpan(ROOT_CONTEXT, span);
}

/** The SDK's own problems (failed exports, dropped spans) as warnings of `logger`; process-wide, so main.ts calls it once. */
export function reportTracingProblems(logger: Logger): void {
  const log = logger.child({ component: 'opentelemetry' });
  const ignore = () => undefined;
  diag.setLogger(
    {
      error: (message, ...args) => log.error({ details: args.map(String) }, message),
      warn: (message, ...args) => log.warn({ details: args.map(String) }, message),
      info: ignore,
      debug: ignore,
      verbose: ignore,
    },
    DiagLogLevel.WARN,
  );
}
