import { openaiRoot } from './endpoint-url.js';
import type { UpstreamHttp } from './http.js';
import { OpenAIChunkReader } from './openai-chunk.js';
import { readSse } from './sse.js';
import { OpenAIToolCallPieces, openAIToolMessage, toolCallsOfMessage } from './tool-calls.js';
import type { ChatMessage, ProviderAdapter, ProviderEventSink, ProviderRequest, ProviderResult, Usage } from './types.js';
import {
  truncated,
  asObject,
  needsPartMapping,
  openAIStylePart,
  usageFromOpenAI,
  withSystemMessage,
  type OpenAIUsageWire,
  postJson,
  traced,
} from './wire.js';

const PROVIDER = 'openai';

interface OpenAICompletion {
  id?: string;
  model?: string;
  choices?: Array<{
    message?: { content?: unknown; reasoning_content?: unknown; reasoning?: unknown; tool_calls?: unknown } | null;
    finish_reason?: string | null;
  }>;
  usage?: OpenAIUsageWire | null;
}

type WireMessage = { role: ChatMessage['role']; content: unknown };

/**
 * OpenAI-compatible endpoints take no file part: a file becomes a text part
 * (an uploaded one its extracted text, an outside one its link); images stay
 * `image_url`, an uploaded one as a base64 data URL. Function-calling messages get their wire fields
 * (`tool_calls`, `tool_call_id`). Messages needing neither go as they are.
 */
export function toOpenAIMessages(messages: ChatMessage[], systemPrompt: string | undefined): WireMessage[] {
  const list = withSystemMessage(messages, systemPrompt);
  let needsMapping = false;
  for (const m of list) {
    if (needsPartMapping(m.content) || m.toolCalls !== undefined || m.toolCallId !== undefined) {
      needsMapping = true;
      break;
    }
  }
  if (!needsMapping) return list;
  return list.map((m) => {
    const content = typeof m.content === 'string' ? m.content : m.content.map(openAIStylePart);
    return openAIToolMessage(m, content) as WireMessage;
  });
}

function requestBody(request: ProviderRequest, stream: boolean): string {
  const body: Record<string, unknown> = {
    model: request.endpoint.model,
    messages: toOpenAIMessages(request.messages, request.systemPrompt),
    stream,
  };
  if (stream) body.stream_options = { include_usage: true };
  if (request.temperature !== undefined) body.temperature = request.temperature;
  if (request.maxTokens !== undefined) body.max_tokens = request.maxTokens;
  if (request.topP !== undefined) body.top_p = request.topP;
  if (request.stop !== undefined) body.stop = request.stop;
  if (request.seed !== undefined) body.seed = request.seed;
  if (request.responseFormat !== undefined) body.response_format = request.responseFormat;
  if (request.tools !== undefined) body.tools = request.tools;
  if (request.toolChoice !== undefined) body.tool_choice = request.toolChoice;
  if (request.parallelToolCalls !== undefined) body.parallel_tool_calls = request.parallelToolCalls;
  const user = request.endUser ?? request.user;
  if (user) body.user = user;
  // vLLM continues the trailing assistant message only when told to, and opens no new assistant turn after it.
  if (request.continuation === 'continue_final_message') {
    body.continue_final_message = true;
    body.add_generation_prompt = false;
  }
  return JSON.stringify(body);
}

/** OpenAI chat completions and every endpoint compatible with it (DeepSeek, Qwen, vLLM, Ollama…). */
export class OpenAIAdapter implements ProviderAdapter {
  readonly kind = 'openai' as const;

  constructor(private readonly http: UpstreamHttp) {}

  async stream(request: ProviderRequest, signal: AbortSignal, emit: ProviderEventSink): Promise<void> {
    const { endpoint } = request;
    const url = openaiRoot(endpoint.url).url('/chat/completions');
    const call = await this.http.open(
      traced(postJson(endpoint, url, requestBody(request, true), signal, 'stream'), request.traceparent),
      PROVIDER,
    );
    const chunks = new OpenAIChunkReader(url, PROVIDER, endpoint.apiKey);
    let sawDone = false;
    let started = false;
    let modelSeen = false;
    let finishReason: string | undefined;
    let usage: Usage | undefined;
    let toolCalls: OpenAIToolCallPieces | undefined;
    try {
      await readSse(call, (batch) => {
        for (const message of batch) {
          if (sawDone) continue;
          const data = message.data;
          if (data === '[DONE]') {
            sawDone = true;
            continue;
          }
          let delta;
          try {
            delta = chunks.read(data);
          } catch (err) {
            call.skipMalformed(err);
            continue;
          }
          if (!modelSeen && delta.model !== undefined) {
            modelSeen = true;
            emit({ type: 'model', model: delta.model });
          }
          if (delta.reasoning || delta.text) {
            if (!started) {
              started = true;
              call.contentStarted();
            }
            if (delta.reasoning) emit({ type: 'reasoning', delta: delta.reasoning });
            if (delta.text) emit({ type: 'text', delta: delta.text });
          }
          if (delta.toolCalls) {
            if (!started) {
              started = true;
              call.contentStarted();
            }
            for (const piece of (toolCalls ??= new OpenAIToolCallPieces()).read(delta.toolCalls)) emit(piece);
          }
          if (delta.finishReason) finishReason = delta.finishReason;
          if (delta.usage) usage = usageFromOpenAI(delta.usage);
        }
      });
    } catch (err) {
      const failure = call.fail(err);
      // After [DONE] the answer is whole; a connection that then fails to close cleanly does not spoil it.
      if (!sawDone || failure.kind === 'aborted') throw failure;
    } finally {
      call.close();
    }
    // Closed with neither [DONE] nor a finish reason after text: a truncated stream (a proxy ended it), not an answer.
    if (!sawDone && finishReason === undefined && started) throw truncated(url);
    if (usage) emit({ type: 'usage', usage });
    emit({ type: 'done', finishReason, sawDone });
  }

  async complete(request: ProviderRequest, signal: AbortSignal): Promise<ProviderResult> {
    const { endpoint } = request;
    const url = openaiRoot(endpoint.url).url('/chat/completions');
    const raw = await this.http.json(
      traced(postJson(endpoint, url, requestBody(request, false), signal, 'blocking'), request.traceparent),
      PROVIDER,
    );
    const body = asObject<OpenAICompletion>(raw, url, PROVIDER);
    const choice = body.choices?.[0];
    const message = choice?.message;
    const reasoning = message?.reasoning_content ?? message?.reasoning;
    return {
      text: typeof message?.content === 'string' ? message.content : '',
      reasoning: typeof reasoning === 'string' && reasoning !== '' ? reasoning : undefined,
      usage: usageFromOpenAI(body.usage),
      model: typeof body.model === 'string' ? body.model : undefined,
      finishReason: choice?.finish_reason ?? undefined,
      toolCalls: toolCallsOfMessage(message?.tool_calls),
    };
  }
}
