import type { EndpointTimeouts, ProviderKind } from '../../db/schema.js';
import { AnthropicAdapter } from './anthropic-adapter.js';
import { DifyAdapter } from './dify-adapter.js';
import { FastGPTAdapter } from './fastgpt-adapter.js';
import { UpstreamHttp, type MalformedEventPolicy, type OriginLoad } from './http.js';
import { OpenAIAdapter } from './openai-adapter.js';
import { ADDRESS_FORBIDDEN_CODE, type OutboundPolicy } from './outbound-policy.js';
import type { ProviderAdapter, ResolvedEndpoint, ValidationResult } from './types.js';
import { UpstreamError } from './upstream-error.js';
import type { Admission } from './upstream-slots.js';

export interface ProviderRegistryOptions {
  /** Requests in flight at once per upstream origin (calls beyond it queue, up to `queueTimeoutMs`). */
  connections: number;
  /** Deadlines for endpoints that set none. */
  defaultTimeouts?: Required<EndpointTimeouts> | undefined;
  /** Longest wait for a free slot to an upstream origin. */
  queueTimeoutMs?: number | undefined;
  /** Negotiate HTTP/2 over TLS where the upstream offers it. */
  http2?: boolean | undefined;
  /** Extra trusted certificates (PEM) for upstream TLS. */
  extraCa?: string | undefined;
  /** Which addresses upstream connections may reach (outbound-policy.ts). */
  outbound: OutboundPolicy;
  /** Unreadable stream events skipped per call before the attempt fails. */
  malformedEvents?: MalformedEventPolicy | undefined;
}

export interface ProviderRegistry {
  adapter(kind: ProviderKind): ProviderAdapter;
  /** Makes a real, small blocking call (a few tokens at most) to check URL, key and model. Never throws. */
  validate(endpoint: ResolvedEndpoint, signal?: AbortSignal): Promise<ValidationResult>;
  /** The app's opening text (FastGPT chat init, Dify parameters); undefined for providers without one. Throws UpstreamError. */
  welcomeText(endpoint: ResolvedEndpoint, signal?: AbortSignal): Promise<string | undefined>;
  /**
   * Takes a slot to the endpoint's upstream for a turn about to be
   * acknowledged, waiting up to the queue's bound; throws UpstreamError
   * `busy` when none frees up. See upstream-slots.ts.
   */
  admit(endpoint: ResolvedEndpoint): Promise<Admission>;
  /** Slot use per upstream origin. */
  load(): OriginLoad[];
  /** Closes every upstream connection pool. */
  close(): Promise<void>;
}

/** Total deadline for validation and welcome-text calls (or the endpoint's own, if shorter). */
const SIDE_CALL_MS = 30_000;
const NEVER = new AbortController().signal;
const VALIDATE_PROMPT = 'Reply with the single word: ok';
const VALIDATE_MAX_TOKENS = 5;

/** One set of adapters sharing one set of keep-alive pools. */
export function createProviderRegistry(options: ProviderRegistryOptions): ProviderRegistry {
  const http = new UpstreamHttp(options);
  const adapters: { [K in ProviderKind]: ProviderAdapter } = {
    openai: new OpenAIAdapter(http),
    fastgpt: new FastGPTAdapter(http),
    anthropic: new AnthropicAdapter(http),
    dify: new DifyAdapter(http),
  };

  return {
    adapter(kind) {
      return adapters[kind];
    },

    async validate(endpoint, signal) {
      const started = performance.now();
      const bounded = sideCallEndpoint(endpoint);
      try {
        const model = await probe(adapters[endpoint.provider], bounded, signal ?? NEVER);
        return { ok: true, latencyMs: Math.round(performance.now() - started), model: model ?? endpoint.model };
      } catch (err) {
        const latencyMs = Math.round(performance.now() - started);
        if (err instanceof UpstreamError) {
          return {
            ok: false,
            latencyMs,
            error: { code: err.kind === 'forbidden' ? ADDRESS_FORBIDDEN_CODE : (err.providerCode ?? `upstream_${err.kind}`), message: err.message, status: err.status },
          };
        }
        return { ok: false, latencyMs, error: { code: 'internal', message: 'validation failed unexpectedly' } };
      }
    },

    async welcomeText(endpoint, signal) {
      const adapter = adapters[endpoint.provider];
      if (!adapter.welcomeText) return undefined;
      return adapter.welcomeText(sideCallEndpoint(endpoint), signal ?? NEVER);
    },

    admit(endpoint) {
      return http.admit(endpoint.url);
    },

    load() {
      return http.load();
    },

    close() {
      return http.close();
    },
  };
}

function sideCallEndpoint(endpoint: ResolvedEndpoint): ResolvedEndpoint {
  const totalMs = Math.min(endpoint.timeouts.totalMs ?? SIDE_CALL_MS, SIDE_CALL_MS);
  return { ...endpoint, timeouts: { ...endpoint.timeouts, totalMs } };
}

/**
 * The smallest real call that proves URL, key and model: a blocking answer of
 * a few tokens. Dify is asked in streaming mode (its agent apps refuse
 * blocking and it has no token limit) and cut off at the first event that
 * proves the app answers.
 */
async function probe(adapter: ProviderAdapter, endpoint: ResolvedEndpoint, signal: AbortSignal): Promise<string | undefined> {
  const request = {
    endpoint,
    messages: [{ role: 'user' as const, content: VALIDATE_PROMPT }],
    maxTokens: VALIDATE_MAX_TOKENS,
    user: 'llmchat-validate',
  };
  if (adapter.kind !== 'dify') return (await adapter.complete(request, signal)).model;
  // The first text (or the end) proves it: the rest of the answer is not read.
  const proven = new AbortController();
  try {
    await adapter.stream(request, AbortSignal.any([signal, proven.signal]), (event) => {
      if (event.type === 'text' || event.type === 'done') proven.abort();
    });
  } catch (err) {
    if (!proven.signal.aborted) throw err;
  }
  return undefined;
}
