import { fastgptRoot } from './endpoint-url.js';
import type { UpstreamHttp } from './http.js';
import { OpenAIChunkReader } from './openai-chunk.js';
import { readSse } from './sse.js';
import type {
  ChatContentPart,
  ChatMessage,
  FeedbackRequest,
  ProviderAdapter,
  ProviderEventSink,
  ProviderRequest,
  ProviderResult,
  ResolvedEndpoint,
  Usage,
} from './types.js';
import {
  asObject,
  bearer,
  inStreamError,
  jsonHeaders,
  makeUsage,
  needsPartMapping,
  openAIStylePart,
  parseChunk,
  usageFromOpenAI,
  withSystemMessage,
  type OpenAIUsageWire,
  postJson,
  traced,
} from './wire.js';

const PROVIDER = 'fastgpt';

interface FlowNodeStatus {
  status?: unknown;
  name?: unknown;
}

interface FlowResponseItem {
  inputTokens?: unknown;
  outputTokens?: unknown;
  tokens?: unknown;
}

interface ToolEvent {
  tool?: { toolName?: unknown; functionName?: unknown } | null;
}

interface FastGPTCompletion {
  id?: string;
  model?: string;
  usage?: OpenAIUsageWire | null;
  choices?: Array<{
    message?: { content?: unknown; reasoning_content?: unknown } | null;
    finish_reason?: string | null;
  }>;
  responseData?: unknown;
}

interface FastGPTInit {
  code?: unknown;
  data?: { app?: { chatConfig?: { welcomeText?: unknown } | null; welcomeText?: unknown } | null } | null;
}

/** An uploaded file as FastGPT takes files: a `file_url` it fetches (a signed link), else its text. */
function fastgptPart(part: ChatContentPart): ChatContentPart {
  if (part.type !== 'file_url') return openAIStylePart(part);
  if (part.attachment === undefined) return part;
  return part.attachment.link === undefined ? openAIStylePart(part) : { type: 'file_url', name: part.attachment.name, url: part.attachment.link };
}

/**
 * FastGPT takes OpenAI's parts plus `file_url`: an uploaded image goes as a
 * data URL; an uploaded file as a signed, expiring link to this server when
 * ATTACHMENT_LINK_BASE_URL says where FastGPT reaches it (FastGPT reads files
 * only from a URL), else as its extracted text.
 */
export function toFastGPTMessages(messages: ChatMessage[], systemPrompt: string | undefined): ChatMessage[] {
  const list = withSystemMessage(messages, systemPrompt);
  if (!list.some((m) => needsPartMapping(m.content))) return list;
  return list.map((m) => (typeof m.content === 'string' ? m : { ...m, content: m.content.map(fastgptPart) }));
}

function requestBody(request: ProviderRequest, stream: boolean): string {
  const body: Record<string, unknown> = {
    stream,
    detail: request.detail ?? false,
    messages: toFastGPTMessages(request.messages, request.systemPrompt),
  };
  if (request.chatId) body.chatId = request.chatId;
  if (request.variables) body.variables = request.variables;
  if (request.responseChatItemId) body.responseChatItemId = request.responseChatItemId;
  // FastGPT apps pick their own model; `model` is informational for OpenAI-shaped proxies in front of it.
  if (request.endpoint.model) body.model = request.endpoint.model;
  return JSON.stringify(body);
}

/** Sums the token counts FastGPT reports per workflow node (detail mode), when no usage chunk came. */
function usageFromFlowResponses(items: unknown): Usage | undefined {
  if (!Array.isArray(items)) return undefined;
  let input = 0;
  let output = 0;
  let seen = false;
  for (const item of items as FlowResponseItem[]) {
    if (typeof item !== 'object' || item === null) continue;
    if (typeof item.inputTokens === 'number' || typeof item.outputTokens === 'number') {
      seen = true;
      input += typeof item.inputTokens === 'number' ? item.inputTokens : 0;
      output += typeof item.outputTokens === 'number' ? item.outputTokens : 0;
    } else if (typeof item.tokens === 'number') {
      seen = true;
      output += item.tokens;
    }
  }
  return seen ? makeUsage(input, output) : undefined;
}

/**
 * FastGPT apps (`/api/v1/chat/completions`). With `detail` the stream carries
 * named events (answer, flowNodeStatus, flowResponses, interactive, tool
 * events); without it, plain OpenAI chunks. `[DONE]` is not the last thing
 * FastGPT sends (flowResponses follows it), so the stream is read to its end.
 */
export class FastGPTAdapter implements ProviderAdapter {
  readonly kind = 'fastgpt' as const;

  constructor(private readonly http: UpstreamHttp) {}

  async stream(request: ProviderRequest, signal: AbortSignal, emit: ProviderEventSink): Promise<void> {
    const { endpoint } = request;
    const url = fastgptRoot(endpoint.url).url('/v1/chat/completions');
    const call = await this.http.open(
      traced(postJson(endpoint, url, requestBody(request, true), signal, 'stream'), request.traceparent),
      PROVIDER,
    );
    const chunks = new OpenAIChunkReader(url, PROVIDER, endpoint.apiKey);
    let sawDone = false;
    let started = false;
    let finishReason: string | undefined;
    // An unreadable side event (status, tool, flow responses) is skipped like an unreadable answer chunk.
    const readEvent = <T extends object>(text: string): T | undefined => {
      try {
        return parseChunk<T>(text, url, PROVIDER);
      } catch (err) {
        call.skipMalformed(err);
        return undefined;
      }
    };
    let usage: Usage | undefined;
    let flowUsage: Usage | undefined;
    try {
      if (request.chatId) emit({ type: 'chatId', chatId: request.chatId });
      if (request.responseChatItemId) emit({ type: 'messageId', messageId: request.responseChatItemId });
      await readSse(call, (batch) => {
        for (const message of batch) {
          const data = message.data;
          const event = message.event;
          if (event === undefined || event === 'answer' || event === 'fastAnswer') {
            if (data === '[DONE]') {
              sawDone = true;
              continue;
            }
            if (sawDone) continue;
            let delta;
            try {
              delta = chunks.read(data);
            } catch (err) {
              call.skipMalformed(err);
              continue;
            }
            if (delta.reasoning || delta.text) {
              if (!started) {
                started = true;
                call.contentStarted();
              }
              if (delta.reasoning) emit({ type: 'reasoning', delta: delta.reasoning });
              if (delta.text) emit({ type: 'text', delta: delta.text });
            }
            if (delta.finishReason) finishReason = delta.finishReason;
            if (delta.usage) usage = usageFromOpenAI(delta.usage);
            continue;
          }
          switch (event) {
            case 'flowNodeStatus': {
              const node = readEvent<FlowNodeStatus>(data);
              if (!node) break;
              emit({
                type: 'status',
                status: typeof node.status === 'string' ? node.status : 'running',
                name: typeof node.name === 'string' ? node.name : undefined,
              });
              break;
            }
            case 'flowResponses':
              flowUsage = usageFromFlowResponses(readEvent<object>(data)) ?? flowUsage;
              break;
            case 'interactive': {
              const payload = readEvent<{ interactive?: unknown }>(data);
              if (!payload) break;
              emit({ type: 'interactive', data: payload.interactive ?? payload });
              break;
            }
            case 'toolCall':
            case 'toolResponse': {
              const tool = readEvent<ToolEvent>(data)?.tool;
              const name = tool?.toolName ?? tool?.functionName;
              emit({ type: 'status', status: event, name: typeof name === 'string' ? name : undefined });
              break;
            }
            case 'error':
              throw inStreamError(PROVIDER, safeJson(data), url, endpoint.apiKey);
            default:
              // toolParams, updateVariables, workflowDuration…: nothing the platform shows.
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
    usage ??= flowUsage;
    if (usage) emit({ type: 'usage', usage });
    emit({ type: 'done', finishReason, sawDone });
  }

  async complete(request: ProviderRequest, signal: AbortSignal): Promise<ProviderResult> {
    const { endpoint } = request;
    const url = fastgptRoot(endpoint.url).url('/v1/chat/completions');
    const raw = await this.http.json(
      traced(postJson(endpoint, url, requestBody(request, false), signal, 'blocking'), request.traceparent),
      PROVIDER,
    );
    const body = asObject<FastGPTCompletion>(raw, url, PROVIDER);
    const choice = body.choices?.[0];
    const message = choice?.message;
    const reasoning = message?.reasoning_content;
    return {
      text: typeof message?.content === 'string' ? message.content : '',
      reasoning: typeof reasoning === 'string' && reasoning !== '' ? reasoning : undefined,
      usage: usageFromOpenAI(body.usage) ?? usageFromFlowResponses(body.responseData),
      model: typeof body.model === 'string' && body.model !== '' ? body.model : undefined,
      chatId: request.chatId ?? (typeof body.id === 'string' && body.id !== '' ? body.id : undefined),
      messageId: request.responseChatItemId,
      finishReason: choice?.finish_reason ?? undefined,
      extra: body.responseData,
    };
  }

  /** FastGPT rates one answer (`dataId`) in one chat; a null rating clears both marks. */
  async feedback(request: FeedbackRequest, signal: AbortSignal): Promise<boolean> {
    const { endpoint } = request;
    if (!request.chatId) return false;
    const url = fastgptRoot(endpoint.url).url('/core/chat/feedback/updateUserFeedback');
    const body: Record<string, unknown> = { appId: endpoint.appId, chatId: request.chatId, dataId: request.messageId };
    if (request.rating === 'up') body.userGoodFeedback = request.comment || 'yes';
    if (request.rating === 'down') body.userBadFeedback = request.comment || 'yes';
    const raw = await this.http.json(
      postJson(endpoint, url, JSON.stringify(body), signal, 'blocking'),
      PROVIDER,
    );
    return fastgptOk(raw);
  }

  async welcomeText(endpoint: ResolvedEndpoint, signal: AbortSignal): Promise<string | undefined> {
    const url = fastgptRoot(endpoint.url).url('/core/chat/init', { appId: endpoint.appId });
    const raw = await this.http.json(
      {
        method: 'GET',
        url,
        headers: jsonHeaders(bearer(endpoint.apiKey), false),
        timeouts: endpoint.timeouts,
        signal,
        mode: 'blocking',
        secret: endpoint.apiKey,
      },
      PROVIDER,
    );
    const body = asObject<FastGPTInit>(raw, url, PROVIDER);
    const app = body.data?.app;
    const text = app?.chatConfig?.welcomeText ?? app?.welcomeText;
    return typeof text === 'string' && text !== '' ? text : undefined;
  }
}

/** FastGPT answers HTTP 200 with `{code: 200}` on success and another code on failure. */
function fastgptOk(raw: unknown): boolean {
  if (typeof raw !== 'object' || raw === null) return false;
  const code = (raw as { code?: unknown }).code;
  return code === undefined || code === 200;
}

function safeJson(data: string): unknown {
  try {
    return JSON.parse(data) as unknown;
  } catch {
    return { message: data };
  }
}
