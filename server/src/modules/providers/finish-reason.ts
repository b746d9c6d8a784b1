/**
 * Why an answer ended, in OpenAI's words (`finish_reason`), whatever the
 * provider said: `stop`, `length`, `tool_calls` or `content_filter`.
 * `/v1` reports it; SDKs and agents branch on it (a `length` answer is cut
 * short and may be continued).
 */
export type FinishReason = 'stop' | 'length' | 'tool_calls' | 'content_filter';

const KNOWN: Record<string, FinishReason> = {
  // OpenAI and compatible servers (vLLM, Ollama, DeepSeek …), FastGPT.
  stop: 'stop',
  length: 'length',
  tool_calls: 'tool_calls',
  function_call: 'tool_calls',
  content_filter: 'content_filter',
  // Anthropic's stop_reason.
  end_turn: 'stop',
  stop_sequence: 'stop',
  pause_turn: 'stop',
  max_tokens: 'length',
  model_context_window_exceeded: 'length',
  tool_use: 'tool_calls',
  refusal: 'content_filter',
};

/** The provider's reason mapped; an unknown or missing one (an answer that simply ended) is `stop`. */
export function finishReasonOf(providerReason: string | undefined): FinishReason {
  return (providerReason !== undefined && Object.hasOwn(KNOWN, providerReason) ? KNOWN[providerReason] : undefined) ?? 'stop';
}

/** Anthropic's `stop_reason` values that `/v1/messages` passes on as the provider said them. */
const ANTHROPIC_STOP_REASONS = new Set(['end_turn', 'max_tokens', 'stop_sequence', 'tool_use', 'pause_turn', 'refusal', 'model_context_window_exceeded']);

const STOP_REASON_OF: Record<FinishReason, string> = { stop: 'end_turn', length: 'max_tokens', tool_calls: 'tool_use', content_filter: 'refusal' };

/**
 * Why an answer ended, in Anthropic's words (`stop_reason`, `/v1/messages`):
 * an Anthropic endpoint's own reason as it is (`stop_sequence` included),
 * any other provider's mapped from OpenAI's words (`stop` is `end_turn`:
 * OpenAI does not tell a stop sequence from a natural end).
 */
export function anthropicStopReasonOf(providerReason: string | undefined): string {
  if (providerReason !== undefined && ANTHROPIC_STOP_REASONS.has(providerReason)) return providerReason;
  return STOP_REASON_OF[finishReasonOf(providerReason)];
}
