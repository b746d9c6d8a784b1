import { anthropicRoot } from './endpoint-url.js';
import type { UpstreamHttp } from './http.js';
import { readSse } from './sse.js';
import type { ChatContentPart, ChatMessage, ProviderAdapter, ProviderEventSink, ProviderRequest, ProviderResult } from './types.js';
import { AnthropicToolBlocks, anthropicToolChoice, anthropicToolResult, anthropicTools, anthropicToolUseBlocks, toolCallsOfAnthropic } from './tool-calls.js';
import { asObject, attachedFileText, contentText, fileAsText, inStreamError, makeUsage, parseChunk, postJson, traced, truncated } from './wire.js';

const PROVIDER = 'anthropic';
const API_VERSION = '2023-06-01';
/** The Messages API requires max_tokens; this is used when the agent sets none. */
export const ANTHROPIC_DEFAULT_MAX_TOKENS = 4096;

interface AnthropicUsageWire {
  input_tokens?: unknown;
  output_tokens?: unknown;
  cache_creation_input_tokens?: unknown;
  cache_read_input_tokens?: unknown;
}

/** One streamed event; the fields present depend on `type`. */
interface AnthropicStreamEvent {
  type?: string;
  message?: { id?: unknown; model?: unknown; usage?: AnthropicUsageWire | null } | null;
  index?: unknown;
  content_block?: { type?: unknown; id?: unknown; name?: unknown } | null;
  delta?: { type?: string; text?: unknown; thinking?: unknown; partial_json?: unknown; stop_reason?: unknown } | null;
  usage?: AnthropicUsageWire | null;
  error?: unknown;
}

interface AnthropicMessage {
  id?: unknown;
  model?: unknown;
  content?: Array<{ type?: string; text?: unknown; thinking?: unknown; id?: unknown; name?: unknown; input?: unknown }>;
  stop_reason?: unknown;
  usage?: AnthropicUsageWire | null;
}

type AnthropicContent = string | Array<Record<string, unknown>>;

function tokens(value: unknown): number {
  return typeof value === 'number' && Number.isFinite(value) ? value : 0;
}

function inputTokens(u: AnthropicUsageWire | null | undefined): number {
  if (!u) return 0;
  return tokens(u.input_tokens) + tokens(u.cache_creation_input_tokens) + tokens(u.cache_read_input_tokens);
}

function base64(data: Uint8Array): string {
  return Buffer.from(data.buffer, data.byteOffset, data.byteLength).toString('base64');
}

function toAnthropicPart(part: ChatContentPart): Record<string, unknown> {
  switch (part.type) {
    case 'text':
      return { type: 'text', text: part.text };
    case 'image_url': {
      if (part.attachment) return { type: 'image', source: { type: 'base64', media_type: part.attachment.contentType, data: base64(part.attachment.data) } };
      const url = part.image_url.url;
      const inline = /^data:([^;,]+);base64,(.*)$/s.exec(url);
      if (inline) return { type: 'image', source: { type: 'base64', media_type: inline[1], data: inline[2] } };
      return { type: 'image', source: { type: 'url', url } };
    }
    case 'file_url': {
      // Anthropic's own form for files: a `document` block, a PDF as base64, a text file as its text.
      const file = part.attachment;
      if (!file) return { type: 'text', text: fileAsText(part) };
      if (file.contentType === 'application/pdf') return { type: 'document', source: { type: 'base64', media_type: 'application/pdf', data: base64(file.data) }, title: file.name };
      if (file.text !== null) return { type: 'document', source: { type: 'text', media_type: 'text/plain', data: file.text }, title: file.name };
      return { type: 'text', text: attachedFileText(file) };
    }
  }
}

/**
 * Anthropic has no system role in `messages`: system text goes top-level.
 * As with OpenAI, messages that already start with a system message win over
 * the agent's system prompt; every system message is folded into `system`.
 * An assistant's function calls become `tool_use` blocks after its text; tool
 * messages become `tool_result` blocks of one user message (consecutive ones,
 * the results of parallel calls, share it, as Anthropic requires).
 */
export function toAnthropicMessages(
  messages: ChatMessage[],
  systemPrompt: string | undefined,
): { system: string | undefined; messages: Array<{ role: 'user' | 'assistant'; content: AnthropicContent }> } {
  const system: string[] = [];
  if (systemPrompt && messages[0]?.role !== 'system') system.push(systemPrompt);
  const out: Array<{ role: 'user' | 'assistant'; content: AnthropicContent }> = [];
  for (const m of messages) {
    if (m.role === 'system') {
      const text = contentText(m.content);
      if (text) system.push(text);
      continue;
    }
    if (m.role === 'tool') {
      const result = anthropicToolResult(m, contentText(m.content));
      const last = out.at(-1);
      if (last?.role === 'user' && Array.isArray(last.content) && last.content.every((b) => b.type === 'tool_result')) last.content.push(result);
      else out.push({ role: 'user', content: [result] });
      continue;
    }
    const content: AnthropicContent = typeof m.content === 'string' ? m.content : m.content.map(toAnthropicPart);
    if (m.toolCalls && m.toolCalls.length > 0) {
      const text = typeof content === 'string' ? (content === '' ? [] : [{ type: 'text', text: content }]) : content;
      out.push({ role: m.role, content: [...text, ...anthropicToolUseBlocks(m.toolCalls)] });
      continue;
    }
    out.push({ role: m.role, content });
  }
  return { system: system.length > 0 ? system.join('\n\n') : undefined, messages: out };
}

function requestBody(request: ProviderRequest, stream: boolean): string {
  const { system, messages } = toAnthropicMessages(request.messages, request.systemPrompt);
  const body: Record<string, unknown> = {
    model: request.endpoint.model,
    max_tokens: request.maxTokens ?? ANTHROPIC_DEFAULT_MAX_TOKENS,
    messages,
    stream,
  };
  if (system) body.system = system;
  if (request.temperature !== undefined) body.temperature = request.temperature;
  if (request.topP !== undefined) body.top_p = request.topP;
  if (request.stop !== undefined) body.stop_sequences = request.stop;
  const user = request.endUser ?? request.user;
  if (user) body.metadata = { user_id: user };
  if (request.tools !== undefined && request.tools.length > 0) body.tools = anthropicTools(request.tools);
  const toolChoice = body.tools === undefined ? undefined : anthropicToolChoice(request.toolChoice, request.parallelToolCalls);
  if (toolChoice !== undefined) body.tool_choice = toolChoice;
  return JSON.stringify(body);
}

function anthropicAuth(apiKey: string | undefined): Record<string, string> {
  return { 'x-api-key': apiKey ?? '', 'anthropic-version': API_VERSION };
}

/** Anthropic Messages API (`/v1/messages`). */
export class AnthropicAdapter implements ProviderAdapter {
  readonly kind = 'anthropic' as const;

  constructor(private readonly http: UpstreamHttp) {}

  async stream(request: ProviderRequest, signal: AbortSignal, emit: ProviderEventSink): Promise<void> {
    const { endpoint } = request;
    const url = anthropicRoot(endpoint.url).url('/messages');
    const call = await this.http.open(
      traced(postJson(endpoint, url, requestBody(request, true), signal, 'stream', anthropicAuth(endpoint.apiKey)), request.traceparent),
      PROVIDER,
    );
    let sawDone = false;
    let started = false;
    let sawUsage = false;
    let promptTokens = 0;
    let completionTokens = 0;
    let finishReason: string | undefined;
    const toolBlocks = new AnthropicToolBlocks();
    try {
      await readSse(call, (batch) => {
        for (const message of batch) {
          if (sawDone) continue;
          let event: AnthropicStreamEvent;
          try {
            event = parseChunk<AnthropicStreamEvent>(message.data, url, PROVIDER);
          } catch (err) {
            call.skipMalformed(err);
            continue;
          }
          const type = message.event ?? event.type;
          switch (type) {
            case 'content_block_delta': {
              const delta = event.delta;
              if (!delta) break;
              if (delta.type === 'text_delta' && typeof delta.text === 'string' && delta.text !== '') {
                if (!started) {
                  started = true;
                  call.contentStarted();
                }
                emit({ type: 'text', delta: delta.text });
              } else if (delta.type === 'thinking_delta' && typeof delta.thinking === 'string' && delta.thinking !== '') {
                if (!started) {
                  started = true;
                  call.contentStarted();
                }
                emit({ type: 'reasoning', delta: delta.thinking });
              } else if (delta.type === 'input_json_delta') {
                const piece = toolBlocks.delta(event.index, delta.partial_json);
                if (piece) emit(piece);
              }
              break;
            }
            case 'content_block_start': {
              const piece = toolBlocks.start(event.index, event.content_block);
              if (piece) {
                if (!started) {
                  started = true;
                  call.contentStarted();
                }
                emit(piece);
              }
              break;
            }
            case 'message_start': {
              const start = event.message;
              if (start?.usage) {
                sawUsage = true;
                promptTokens = inputTokens(start.usage);
                completionTokens = tokens(start.usage.output_tokens);
              }
              if (typeof start?.model === 'string' && start.model !== '') emit({ type: 'model', model: start.model });
              if (typeof start?.id === 'string' && start.id !== '') emit({ type: 'messageId', messageId: start.id });
              break;
            }
            case 'message_delta': {
              if (typeof event.delta?.stop_reason === 'string') finishReason = event.delta.stop_reason;
              const u = event.usage;
              if (u) {
                sawUsage = true;
                // output_tokens here is cumulative; input_tokens appears only on some gateways.
                if (u.output_tokens !== undefined) completionTokens = tokens(u.output_tokens);
                if (u.input_tokens !== undefined) promptTokens = inputTokens(u);
              }
              break;
            }
            case 'message_stop':
              sawDone = true;
              break;
            case 'error':
              throw inStreamError(PROVIDER, event, url, endpoint.apiKey);
            case undefined:
            default:
              // ping, content_block_stop, signature deltas.
              break;
          }
        }
      });
    } catch (err) {
      const failure = call.fail(err);
      if (!sawDone || failure.kind === 'aborted') throw failure;
    } finally {
      call.close();
    }
    // Closed with neither message_stop nor a stop reason after text: a truncated stream, not an answer.
    if (!sawDone && finishReason === undefined && started) throw truncated(url);
    if (sawUsage) emit({ type: 'usage', usage: makeUsage(promptTokens, completionTokens) });
    emit({ type: 'done', finishReason, sawDone });
  }

  async complete(request: ProviderRequest, signal: AbortSignal): Promise<ProviderResult> {
    const { endpoint } = request;
    const url = anthropicRoot(endpoint.url).url('/messages');
    const raw = await this.http.json(
      traced(postJson(endpoint, url, requestBody(request, false), signal, 'blocking', anthropicAuth(endpoint.apiKey)), request.traceparent),
      PROVIDER,
    );
    const body = asObject<AnthropicMessage>(raw, url, PROVIDER);
    let text = '';
    let reasoning = '';
    const blocks = Array.isArray(body.content) ? body.content : [];
    for (const block of blocks) {
      if (block.type === 'text' && typeof block.text === 'string') text += block.text;
      else if (block.type === 'thinking' && typeof block.thinking === 'string') reasoning += block.thinking;
    }
    return {
      text,
      reasoning: reasoning || undefined,
      usage: body.usage ? makeUsage(inputTokens(body.usage), body.usage.output_tokens) : undefined,
      model: typeof body.model === 'string' ? body.model : undefined,
      messageId: typeof body.id === 'string' ? body.id : undefined,
      finishReason: typeof body.stop_reason === 'string' ? body.stop_reason : undefined,
      toolCalls: toolCallsOfAnthropic(blocks),
    };
  }
}
