import type { ContinuationKind, EndpointTimeouts, ProviderKind } from '../../db/schema.js';

/** One upstream endpoint of an agent, with its secret decrypted (never serialised to clients). */
export interface ResolvedEndpoint {
  id: string;
  agentId: string;
  position: number;
  provider: ProviderKind;
  /** Full URL of the provider's chat endpoint or its base URL (see each adapter). */
  url: string;
  apiKey: string | undefined;
  appId: string | undefined;
  model: string | undefined;
  timeouts: EndpointTimeouts;
  /** How this endpoint continues a broken-off answer; unset: its provider kind's default (continuation-kinds.ts). */
  continuation?: ContinuationKind | undefined;
}

/**
 * An uploaded attachment a part names (`/api/attachments/<id>`), loaded for
 * the provider call: each adapter sends it in its provider's own form.
 * Never stored or sent as is (it holds the bytes).
 */
export interface AttachedFile {
  id: string;
  name: string;
  /** Decided from the bytes at upload. */
  contentType: string;
  size: number;
  sha256: string;
  data: Uint8Array;
  /** The extracted text of a text file or PDF; null for images and PDFs without text. */
  text: string | null;
  /** A signed, expiring link to the bytes that needs no sign-in (ATTACHMENT_LINK_BASE_URL), for providers that fetch files by URL. */
  link?: string | undefined;
}

export type ChatContentPart =
  | { type: 'text'; text: string }
  | { type: 'image_url'; image_url: { url: string }; attachment?: AttachedFile | undefined }
  | { type: 'file_url'; name?: string; url: string; attachment?: AttachedFile | undefined };

/**
 * One function call the model asked for, in OpenAI's wire form (the
 * platform's form for tools, as for content parts): `arguments` is the JSON
 * text the model wrote, not parsed.
 */
export interface ToolCall {
  id: string;
  type: 'function';
  function: { name: string; arguments: string };
}

/** A function the caller offers the model, in OpenAI's wire form (passed through unchanged to OpenAI-compatible endpoints). */
export interface ToolDefinition {
  type: 'function';
  function: { name: string; description?: string | undefined; parameters?: Record<string, unknown> | undefined; strict?: boolean | null | undefined };
}

/** OpenAI's `tool_choice`. */
export type ToolChoice = 'none' | 'auto' | 'required' | { type: 'function'; function: { name: string } };

export interface ChatMessage {
  role: 'system' | 'user' | 'assistant' | 'tool';
  /** An assistant message that only calls tools has '' here. */
  content: string | ChatContentPart[];
  /** Assistant: the calls it made (function calling). */
  toolCalls?: ToolCall[] | undefined;
  /** Tool: the call this message answers. */
  toolCallId?: string | undefined;
}

/** What the chat service asks of a provider, independent of wire format. */
export interface ProviderRequest {
  endpoint: ResolvedEndpoint;
  messages: ChatMessage[];
  systemPrompt?: string | undefined;
  temperature?: number | undefined;
  maxTokens?: number | undefined;
  /** Nucleus sampling (OpenAI `top_p`, Anthropic `top_p`). */
  topP?: number | undefined;
  /** Stop sequences (OpenAI `stop`, Anthropic `stop_sequences`). */
  stop?: string[] | undefined;
  /** OpenAI `seed`, for reproducible sampling where the endpoint supports it. */
  seed?: number | undefined;
  /** OpenAI `response_format` (`{type:'json_object'}`, a JSON schema), passed through to OpenAI-compatible endpoints. */
  responseFormat?: Record<string, unknown> | undefined;
  /** Function calling: the functions offered (OpenAI `tools`, Anthropic `tools` with `input_schema`). */
  tools?: ToolDefinition[] | undefined;
  toolChoice?: ToolChoice | undefined;
  /** OpenAI `parallel_tool_calls`; Anthropic `disable_parallel_tool_use` when false. */
  parallelToolCalls?: boolean | undefined;
  /** FastGPT chatId / Dify conversation_id, when the agent keeps context upstream. */
  chatId?: string | undefined;
  /** FastGPT: return flow-node status and response data. */
  detail?: boolean | undefined;
  /** FastGPT variables / Dify inputs. */
  variables?: Record<string, unknown> | undefined;
  /** FastGPT responseChatItemId (the platform's assistant message id). */
  responseChatItemId?: string | undefined;
  /** Stable end-user identifier (Dify `user`, OpenAI `user`). */
  user?: string | undefined;
  /**
   * Set when `messages` ends with the start of the answer (an assistant
   * message) for the provider to continue: `continue_final_message` adds
   * vLLM's flags to an OpenAI-compatible body; `prefill` sends it as is.
   */
  continuation?: 'prefill' | 'continue_final_message' | undefined;
  /**
   * The `/v1` caller's own end-user id (OpenAI `user`): sent instead of
   * `user` as OpenAI `user` and Anthropic `metadata.user_id`. Dify keeps
   * `user`, which owns its conversations and its stop API.
   */
  endUser?: string | undefined;
  /** W3C trace context of this upstream call, sent as the `traceparent` header (tracing on only). */
  traceparent?: string | undefined;
}

export interface Usage {
  promptTokens: number;
  completionTokens: number;
  totalTokens: number;
}

/** The normalised event model every adapter translates its stream into. */
export type ProviderEvent =
  | { type: 'text'; delta: string }
  | { type: 'reasoning'; delta: string }
  /** Progress or FastGPT flow-node status: `{ status: 'running', name: 'AI Chat' }`. */
  | { type: 'status'; status: string; name?: string | undefined; data?: unknown }
  /** FastGPT interactive node (userSelect / userInput) payload, passed through. */
  | { type: 'interactive'; data: unknown }
  /** Provider conversation id (FastGPT chatId, Dify conversation_id). */
  | { type: 'chatId'; chatId: string }
  /**
   * Provider's id for this answer (Dify message_id, FastGPT responseChatItemId, Anthropic message id).
   * `taskId` is Dify's id of the running generation, the one `stop()` needs.
   */
  | { type: 'messageId'; messageId: string; taskId?: string | undefined }
  | { type: 'usage'; usage: Usage }
  /** The model that actually answered, when the provider reports it. */
  | { type: 'model'; model: string }
  /**
   * A piece of a function call, as OpenAI streams it: the call's `index`
   * among this answer's calls; `id` and `name` in its first piece, then
   * `arguments` text to append.
   */
  | { type: 'toolCall'; index: number; id?: string | undefined; name?: string | undefined; arguments: string }
  /** Clean end of the answer. `sawDone` is false when an OpenAI-style stream ended without `[DONE]`. */
  | { type: 'done'; finishReason?: string | undefined; sawDone: boolean };

/** Result of a blocking (non-streaming) call. */
export interface ProviderResult {
  text: string;
  reasoning?: string | undefined;
  usage?: Usage | undefined;
  model?: string | undefined;
  chatId?: string | undefined;
  messageId?: string | undefined;
  finishReason?: string | undefined;
  /** The function calls the model made. */
  toolCalls?: ToolCall[] | undefined;
  /** Raw extra data worth keeping (FastGPT responseData when detail=true). */
  extra?: unknown;
}

export interface FeedbackRequest {
  endpoint: ResolvedEndpoint;
  chatId: string | undefined;
  /** Provider message id (FastGPT dataId/responseChatItemId, Dify message_id). */
  messageId: string;
  rating: 'up' | 'down' | null;
  comment?: string | undefined;
  user?: string | undefined;
}

export interface ValidationResult {
  ok: boolean;
  latencyMs: number;
  model?: string | undefined;
  error?: { code: string; message: string; status?: number | undefined } | undefined;
}

/**
 * Takes a stream's events in order, synchronously, as the adapter reads them.
 * It may throw only an UpstreamError: the call then ends with that error
 * (a hedged call that lost its race does).
 */
export type ProviderEventSink = (event: ProviderEvent) => void;

export interface ProviderAdapter {
  readonly kind: ProviderKind;
  /**
   * Streams the answer into `emit`; resolves once it ended. Rejects with an
   * UpstreamError for every failure, including network ones.
   */
  stream(request: ProviderRequest, signal: AbortSignal, emit: ProviderEventSink): Promise<void>;
  /** Blocking call. Throws UpstreamError. */
  complete(request: ProviderRequest, signal: AbortSignal): Promise<ProviderResult>;
  /** Forward a rating where the provider supports it; returns false when it does not. */
  feedback?(request: FeedbackRequest, signal: AbortSignal): Promise<boolean>;
  /**
   * Tell the provider to stop generating (Dify); best effort. Dify's stop API takes the
   * generation's task id (`taskId` of the `messageId` event); the message id also works
   * while this process is reading that stream, as the adapter maps it to the task id.
   */
  stop?(endpoint: ResolvedEndpoint, providerMessageId: string, user: string, signal: AbortSignal): Promise<void>;
  /** The app's configured opening text (FastGPT chat init welcomeText, Dify opening_statement). Throws UpstreamError. */
  welcomeText?(endpoint: ResolvedEndpoint, signal: AbortSignal): Promise<string | undefined>;
}
