import type { EndpointTimeouts, ProviderKind } from '../../db/schema.js';

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
}

export type ChatContentPart =
  | { type: 'text'; text: string }
  | { type: 'image_url'; image_url: { url: string } }
  | { type: 'file_url'; name?: string; url: string };

export interface ChatMessage {
  role: 'system' | 'user' | 'assistant';
  content: string | ChatContentPart[];
}

/** What the chat service asks of a provider, independent of wire format. */
export interface ProviderRequest {
  endpoint: ResolvedEndpoint;
  messages: ChatMessage[];
  systemPrompt?: string | undefined;
  temperature?: number | undefined;
  maxTokens?: number | undefined;
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

export interface ProviderAdapter {
  readonly kind: ProviderKind;
  /** Streams the answer. Throws UpstreamError for every failure, including network ones. */
  stream(request: ProviderRequest, signal: AbortSignal): AsyncIterable<ProviderEvent>;
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
