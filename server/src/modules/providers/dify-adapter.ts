import crypto from 'node:crypto';
import { difyRoot } from './endpoint-url.js';
import type { UpstreamHttp } from './http.js';
import { readSse } from './sse.js';
import { UpstreamError } from './upstream-error.js';
import type {
  AttachedFile,
  ChatMessage,
  FeedbackRequest,
  ProviderAdapter,
  ProviderEventSink,
  ProviderRequest,
  ProviderResult,
  ResolvedEndpoint,
  Usage,
} from './types.js';
import { asObject, bearer, contentText, inStreamError, jsonHeaders, parseChunk, usageFromOpenAI, type OpenAIUsageWire, postJson, traced } from './wire.js';

const PROVIDER = 'dify';
/** Dify requires a `user`; used when the platform gives none. */
export const DIFY_DEFAULT_USER = 'llmchat';
/** The Dify input that carries the agent's system prompt (Dify has no system field). */
export const DIFY_SYSTEM_PROMPT_INPUT = 'system_prompt';

/** One streamed event; Dify names the event inside the JSON (`event`), not on the SSE `event:` line. */
interface DifyStreamEvent {
  event?: string;
  task_id?: unknown;
  message_id?: unknown;
  id?: unknown;
  conversation_id?: unknown;
  answer?: unknown;
  tool?: unknown;
  thought?: unknown;
  metadata?: { usage?: OpenAIUsageWire | null } | null;
  data?: { title?: unknown } | null;
  status?: unknown;
  code?: unknown;
  message?: unknown;
}

interface DifyBlockingAnswer {
  task_id?: unknown;
  message_id?: unknown;
  id?: unknown;
  conversation_id?: unknown;
  answer?: unknown;
  metadata?: { usage?: OpenAIUsageWire | null } | null;
}

function str(value: unknown): string | undefined {
  return typeof value === 'string' && value !== '' ? value : undefined;
}

/**
 * Dify keeps the conversation upstream (conversation_id), so only the last
 * user message is sent, as `query`; its images and files go as remote-URL
 * `files`. Dify has no system field either: the system prompt travels as the
 * input `system_prompt`, which the Dify app must declare (and use in its
 * prompt) for it to have an effect — Dify drops inputs an app does not declare.
 */
function lastUserMessage(request: ProviderRequest): ChatMessage | undefined {
  for (let i = request.messages.length - 1; i >= 0; i--) {
    const m = request.messages[i];
    if (m?.role === 'user') return m;
  }
  return undefined;
}

/** A multipart/form-data body with one file and the `user` field, as Dify's upload API takes it. */
function uploadBody(file: AttachedFile, user: string): { body: Buffer; contentType: string } {
  const boundary = `----llmchat${crypto.randomUUID().replaceAll('-', '')}`;
  const name = file.name.replace(/["\r\n]/g, '_');
  const head = `--${boundary}\r\nContent-Disposition: form-data; name="user"\r\n\r\n${user}\r\n--${boundary}\r\nContent-Disposition: form-data; name="file"; filename="${name}"\r\nContent-Type: ${file.contentType}\r\n\r\n`;
  const body = Buffer.concat([Buffer.from(head), file.data, Buffer.from(`\r\n--${boundary}--\r\n`)]);
  return { body, contentType: `multipart/form-data; boundary=${boundary}` };
}

/**
 * The Dify `files` of a request: each uploaded attachment goes to Dify's
 * own file store first (`POST /files/upload`) and is named by the id it
 * gets (`local_file`), so Dify never has to reach this server; outside
 * links go as `remote_url`.
 */
async function difyFiles(http: UpstreamHttp, request: ProviderRequest, signal: AbortSignal): Promise<Array<Record<string, string>>> {
  const last = lastUserMessage(request);
  if (!last || typeof last.content === 'string') return [];
  const files: Array<Record<string, string>> = [];
  const user = request.user || DIFY_DEFAULT_USER;
  for (const part of last.content) {
    if (part.type === 'text') continue;
    const attachment = part.attachment;
    const type = part.type === 'image_url' ? 'image' : 'document';
    if (attachment) {
      const { endpoint } = request;
      const url = difyRoot(endpoint.url).url('/files/upload');
      const { body, contentType } = uploadBody(attachment, user);
      const raw = await http.json({ method: 'POST', url, headers: { ...bearer(endpoint.apiKey), 'content-type': contentType, accept: 'application/json' }, body, timeouts: endpoint.timeouts, signal, mode: 'blocking', secret: endpoint.apiKey }, PROVIDER);
      const id = str(asObject<{ id?: unknown }>(raw, url, PROVIDER).id);
      if (id === undefined) throw new UpstreamError('protocol', 'dify answered a file upload without the file\'s id', { url, retryable: false });
      files.push({ type, transfer_method: 'local_file', upload_file_id: id });
    } else if (part.type === 'image_url' && !part.image_url.url.startsWith('data:')) {
      files.push({ type, transfer_method: 'remote_url', url: part.image_url.url });
    } else if (part.type === 'file_url') {
      files.push({ type, transfer_method: 'remote_url', url: part.url });
    }
  }
  return files;
}

function requestBody(request: ProviderRequest, mode: 'streaming' | 'blocking', files: Array<Record<string, string>>): string {
  const last = lastUserMessage(request);
  const inputs: Record<string, unknown> = { ...request.variables };
  if (request.systemPrompt) inputs[DIFY_SYSTEM_PROMPT_INPUT] = request.systemPrompt;
  const body: Record<string, unknown> = {
    query: last ? contentText(last.content) : '',
    inputs,
    user: request.user || DIFY_DEFAULT_USER,
    response_mode: mode,
  };
  if (request.chatId) body.conversation_id = request.chatId;
  if (files.length > 0) body.files = files;
  return JSON.stringify(body);
}

/** Dify chat apps, agents and chatflows (`/v1/chat-messages`). */
export class DifyAdapter implements ProviderAdapter {
  readonly kind = 'dify' as const;
  /**
   * message_id → task_id of the generations this process is streaming: Dify's
   * stop API takes the task id, while callers know the message id.
   */
  private readonly running = new Map<string, string>();

  constructor(private readonly http: UpstreamHttp) {}

  async stream(request: ProviderRequest, signal: AbortSignal, emit: ProviderEventSink): Promise<void> {
    const { endpoint } = request;
    const url = difyRoot(endpoint.url).url('/chat-messages');
    const call = await this.http.open(
      traced(postJson(endpoint, url, requestBody(request, 'streaming', await difyFiles(this.http, request, signal)), signal, 'stream'), request.traceparent),
      PROVIDER,
    );
    let sawDone = false;
    let started = false;
    let chatIdSent = false;
    let messageId: string | undefined;
    let usage: Usage | undefined;
    let answerSoFar = '';
    let thoughts: Map<string, string> | undefined;
    try {
      await readSse(call, (batch) => {
        for (const message of batch) {
          if (sawDone) continue;
          let event: DifyStreamEvent;
          try {
            event = parseChunk<DifyStreamEvent>(message.data, url, PROVIDER);
          } catch (err) {
            call.skipMalformed(err);
            continue;
          }
          if (!chatIdSent) {
            const conversationId = str(event.conversation_id);
            if (conversationId) {
              chatIdSent = true;
              emit({ type: 'chatId', chatId: conversationId });
            }
          }
          if (messageId === undefined) {
            const id = str(event.message_id);
            if (id) {
              messageId = id;
              const taskId = str(event.task_id);
              if (taskId) this.running.set(id, taskId);
              emit({ type: 'messageId', messageId: id, taskId });
            }
          }
          const type = event.event ?? message.event;
          switch (type) {
            case 'message':
            case 'agent_message': {
              const answer = event.answer;
              if (typeof answer === 'string' && answer !== '') {
                if (!started) {
                  started = true;
                  call.contentStarted();
                }
                answerSoFar += answer;
                emit({ type: 'text', delta: answer });
              }
              break;
            }
            case 'agent_thought': {
              const thought = str(event.thought);
              const thoughtId = str(event.id) ?? '';
              // Dify re-sends a thought as it grows (same id); only the new part is reasoning. Function-calling
              // agents also put their streamed answer in `thought`, so a thought the answer already holds is skipped.
              if (thought && !answerSoFar.includes(thought)) {
                thoughts ??= new Map();
                const previous = thoughts.get(thoughtId) ?? '';
                const delta = thought.startsWith(previous) ? thought.slice(previous.length) : thought;
                thoughts.set(thoughtId, thought);
                if (delta !== '') {
                  if (!started) {
                    started = true;
                    call.contentStarted();
                  }
                  emit({ type: 'reasoning', delta });
                }
              }
              const tool = str(event.tool);
              if (tool) emit({ type: 'status', status: 'agent_thought', name: tool });
              break;
            }
            case 'node_started': {
              const title = str(event.data?.title);
              emit({ type: 'status', status: 'running', name: title });
              break;
            }
            case 'message_replace':
              // Content moderation replaced the answer; the platform decides what to show.
              emit({ type: 'status', status: 'message_replace', data: { answer: event.answer } });
              break;
            case 'message_end':
              usage = usageFromOpenAI(event.metadata?.usage);
              sawDone = true;
              break;
            case 'error':
              throw inStreamError(PROVIDER, event, url, endpoint.apiKey);
            case undefined:
            default:
              // ping, message_file, tts_message(_end), workflow/node_finished…
              break;
          }
        }
      });
    } catch (err) {
      const failure = call.fail(err);
      if (!sawDone || failure.kind === 'aborted') throw failure;
    } finally {
      call.close();
      if (messageId !== undefined) this.running.delete(messageId);
    }
    if (usage) emit({ type: 'usage', usage });
    emit({ type: 'done', finishReason: sawDone ? 'stop' : undefined, sawDone });
  }

  async complete(request: ProviderRequest, signal: AbortSignal): Promise<ProviderResult> {
    const { endpoint } = request;
    const url = difyRoot(endpoint.url).url('/chat-messages');
    const raw = await this.http.json(
      traced(postJson(endpoint, url, requestBody(request, 'blocking', await difyFiles(this.http, request, signal)), signal, 'blocking'), request.traceparent),
      PROVIDER,
    );
    const body = asObject<DifyBlockingAnswer>(raw, url, PROVIDER);
    return {
      text: typeof body.answer === 'string' ? body.answer : '',
      usage: usageFromOpenAI(body.metadata?.usage),
      chatId: str(body.conversation_id),
      messageId: str(body.message_id) ?? str(body.id),
      finishReason: 'stop',
    };
  }

  /** Dify rates a message `like`/`dislike`; null withdraws the rating. */
  async feedback(request: FeedbackRequest, signal: AbortSignal): Promise<boolean> {
    const { endpoint } = request;
    const url = difyRoot(endpoint.url).url(`/messages/${encodeURIComponent(request.messageId)}/feedbacks`);
    const body: Record<string, unknown> = {
      rating: request.rating === 'up' ? 'like' : request.rating === 'down' ? 'dislike' : null,
      user: request.user || DIFY_DEFAULT_USER,
    };
    if (request.comment) body.content = request.comment;
    const raw = await this.http.json(
      postJson(endpoint, url, JSON.stringify(body), signal, 'blocking'),
      PROVIDER,
    );
    return difySuccess(raw);
  }

  /**
   * Stops a running generation. `id` may be the task id or, for a stream this
   * process is reading, the message id (mapped to its task id).
   */
  async stop(endpoint: ResolvedEndpoint, id: string, user: string, signal: AbortSignal): Promise<void> {
    const taskId = this.running.get(id) ?? id;
    const url = difyRoot(endpoint.url).url(`/chat-messages/${encodeURIComponent(taskId)}/stop`);
    await this.http.json(
      postJson(endpoint, url, JSON.stringify({ user: user || DIFY_DEFAULT_USER }), signal, 'blocking'),
      PROVIDER,
    );
  }

  async welcomeText(endpoint: ResolvedEndpoint, signal: AbortSignal): Promise<string | undefined> {
    const url = difyRoot(endpoint.url).url('/parameters', { user: DIFY_DEFAULT_USER });
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
    const body = asObject<{ opening_statement?: unknown }>(raw, url, PROVIDER);
    return str(body.opening_statement);
  }
}

function difySuccess(raw: unknown): boolean {
  if (typeof raw !== 'object' || raw === null) return false;
  const result = (raw as { result?: unknown }).result;
  return result === undefined || result === 'success';
}
