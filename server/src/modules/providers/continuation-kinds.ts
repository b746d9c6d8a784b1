import type { ContinuationKind, ProviderKind } from '../../db/schema.js';

export const CONTINUATION_KINDS: readonly ContinuationKind[] = ['prefill', 'continue_final_message', 'restart'];

/**
 * Which continuations each provider kind can do, its default first
 * (README, "Continuation per provider"):
 *
 * - `anthropic`: the Messages API continues a trailing assistant message
 *   natively (prefill); `restart` for models that refuse it.
 * - `openai`: OpenAI-compatible servers differ. Most that continue a
 *   trailing assistant message do it as plain `prefill` (DeepSeek, Ollama,
 *   llama.cpp); vLLM wants `continue_final_message`; OpenAI's own API does
 *   not continue at all and answers a trailing assistant message with a new
 *   turn, which `restart` avoids. `prefill` is the default, except on
 *   OpenAI's and Azure OpenAI's own hosts (`restart`); an endpoint that
 *   refuses it (HTTP 400) is restarted at once, within the same attempt.
 * - `fastgpt`, `dify`: the request is a question to an app (a workflow
 *   with its own prompts, knowledge base and history), not a list of
 *   messages the model completes: there is no message to continue, so an
 *   answer that broke off there starts again.
 */
export const PROVIDER_CONTINUATIONS: Readonly<Record<ProviderKind, readonly ContinuationKind[]>> = {
  openai: ['prefill', 'continue_final_message', 'restart'],
  anthropic: ['prefill', 'restart'],
  fastgpt: ['restart'],
  dify: ['restart'],
};

/**
 * Hosts known to answer a trailing assistant message with a new turn rather
 * than continue it (OpenAI's own API, Azure OpenAI): a `prefill` there would
 * store the partial text followed by a whole second answer, with no error.
 */
const NO_PREFILL_HOSTS = [/^api\.openai\.com$/i, /\.openai\.azure\.com$/i];

function answersPrefillAnew(url: string | undefined): boolean {
  if (url === undefined) return false;
  try {
    const host = new URL(url).hostname;
    return NO_PREFILL_HOSTS.some((re) => re.test(host));
  } catch {
    return false;
  }
}

/** The endpoint's own setting, or its provider kind's default (`restart` on hosts known not to continue a prefill). */
export function continuationOf(endpoint: { provider: ProviderKind; continuation?: ContinuationKind | undefined; url?: string | undefined }): ContinuationKind {
  if (endpoint.continuation !== undefined) return endpoint.continuation;
  if (endpoint.provider === 'openai' && answersPrefillAnew(endpoint.url)) return 'restart';
  return PROVIDER_CONTINUATIONS[endpoint.provider][0] ?? 'restart';
}

/** Why `kind` cannot be set on an endpoint of `provider`, or undefined. */
export function continuationProblem(provider: ProviderKind, kind: ContinuationKind | undefined): string | undefined {
  if (kind === undefined || PROVIDER_CONTINUATIONS[provider].includes(kind)) return undefined;
  return `is not supported by provider ${provider} (supported: ${PROVIDER_CONTINUATIONS[provider].join(', ')})`;
}
