import type { UpstreamRequest } from './http.js';
import type { AttachedFile, ChatContentPart, ChatMessage, ResolvedEndpoint, Usage } from './types.js';
import { UpstreamError, isNonRetryableCode } from './upstream-error.js';

/** Small pieces shared by the adapters' wire formats. */

export function excerpt(text: string, max = 500): string {
  return text.length > max ? `${text.slice(0, max)}…` : text;
}

/** Removes the endpoint's secret and anything that looks like a bearer token. */
export function redact(text: string, secret: string | undefined): string {
  let out = text;
  if (secret && secret.length >= 4 && out.includes(secret)) out = out.split(secret).join('[redacted]');
  return out.replace(/(Bearer\s+)[A-Za-z0-9._~+/=-]{8,}/gi, '$1[redacted]');
}

function asRecord(value: unknown): Record<string, unknown> | undefined {
  return typeof value === 'object' && value !== null && !Array.isArray(value) ? (value as Record<string, unknown>) : undefined;
}

function str(value: unknown): string | undefined {
  return typeof value === 'string' && value.length > 0 ? value : undefined;
}

/**
 * Pulls the provider's error code and message out of an error body:
 * OpenAI `{error:{code,type,message}}`, Anthropic `{type:'error',error:{type,message}}`,
 * FastGPT `{code,statusText,message}`, Dify `{code,message,status}`.
 */
export function providerErrorFromBody(text: string): { code?: string | undefined; message?: string | undefined } {
  if (!text) return {};
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch {
    return {};
  }
  return providerErrorFromObject(parsed);
}

export function providerErrorFromObject(parsed: unknown): { code?: string | undefined; message?: string | undefined } {
  const root = asRecord(parsed);
  if (!root) return {};
  const nested = asRecord(root.error);
  if (nested) {
    return {
      code: str(nested.code) ?? str(nested.type) ?? str(root.code),
      message: str(nested.message) ?? str(root.message),
    };
  }
  return {
    code: str(root.code) ?? str(root.statusText) ?? (typeof root.code === 'number' ? String(root.code) : undefined),
    message: str(root.message) ?? str(root.msg) ?? str(root.error),
  };
}

/**
 * A stream that closed cleanly after text with neither its end marker nor a
 * finish reason: it broke off (a proxy or load balancer ended it), so the
 * answer is not whole and the next attempt continues it.
 */
export function truncated(url: string): UpstreamError {
  return new UpstreamError('protocol', 'the stream ended after text with neither its end marker nor a finish reason', { retryable: true, url });
}

/** An error the provider reported inside a stream that had already started (HTTP 200). */
export function inStreamError(
  provider: string,
  payload: unknown,
  url: string,
  secret: string | undefined,
  fallbackStatus?: number,
): UpstreamError {
  const { code, message } = providerErrorFromObject(payload);
  const rec = asRecord(payload);
  // FastGPT puts the HTTP-like status in a numeric `code`.
  const status =
    typeof rec?.status === 'number'
      ? rec.status
      : typeof rec?.code === 'number' && rec.code >= 400 && rec.code <= 599
        ? rec.code
        : fallbackStatus;
  const statusRetryable =
    status === undefined ? true : status === 408 || status === 409 || status === 425 || status === 429 || status >= 500;
  return new UpstreamError('http', redact(`${provider} stream error${code ? ` ${code}` : ''}: ${message ?? 'unknown error'}`, secret), {
    status,
    providerCode: code,
    retryable: isNonRetryableCode(code) ? false : statusRetryable,
    url,
  });
}

/** Parses one stream chunk; anything that is not a JSON object is a protocol error. */
export function parseChunk<T extends object>(data: string, url: string, provider: string): T {
  let parsed: unknown;
  try {
    parsed = JSON.parse(data);
  } catch (err) {
    throw new UpstreamError('protocol', `${provider} sent a stream chunk that is not valid JSON`, {
      url,
      body: excerpt(data, 200),
      cause: err,
    });
  }
  if (typeof parsed !== 'object' || parsed === null) {
    throw new UpstreamError('protocol', `${provider} sent a stream chunk that is not a JSON object`, {
      url,
      body: excerpt(data, 200),
    });
  }
  return parsed as T;
}

/** A blocking answer's parsed body; anything but a JSON object is a protocol error. */
export function asObject<T extends object>(raw: unknown, url: string, provider: string): T {
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) {
    throw new UpstreamError('protocol', `${provider} answered with JSON that is not an object`, { url });
  }
  return raw as T;
}

/** The text of a message: the string itself, or its text parts joined. */
export function contentText(content: ChatMessage['content']): string {
  if (typeof content === 'string') return content;
  let out = '';
  for (const part of content) if (part.type === 'text') out += out ? `\n${part.text}` : part.text;
  return out;
}

/** An uploaded attachment inline, as OpenAI's `image_url` (and FastGPT's) takes an image: a base64 data URL. */
export function dataUrl(file: AttachedFile): string {
  return `data:${file.contentType};base64,${Buffer.from(file.data.buffer, file.data.byteOffset, file.data.byteLength).toString('base64')}`;
}

/** An uploaded file as text, for providers that take no files: its name and its extracted text. */
export function attachedFileText(file: AttachedFile): string {
  if (file.text === null) return `[Attached file ${file.name} (${file.contentType}): no text could be read from it]`;
  return `Attached file ${file.name} (${file.contentType}):\n\n${file.text}`;
}

/**
 * A content part as an OpenAI-style chat API takes it (OpenAI-compatible
 * endpoints, FastGPT): an uploaded image as a data URL, an uploaded file as
 * its text, an outside file link as text. Text and outside images stay as they are.
 */
export function openAIStylePart(part: ChatContentPart): ChatContentPart {
  if (part.type === 'image_url') return part.attachment ? { type: 'image_url', image_url: { url: dataUrl(part.attachment) } } : part;
  if (part.type === 'file_url') return { type: 'text', text: part.attachment ? attachedFileText(part.attachment) : fileAsText(part) };
  return part;
}

/** True when a message's parts need openAIStylePart before they go on the wire. */
export function needsPartMapping(content: ChatMessage['content']): boolean {
  return typeof content !== 'string' && content.some((p) => p.type === 'file_url' || (p.type === 'image_url' && p.attachment !== undefined));
}

/** A file part spelled as text, for providers without a file part. */
export function fileAsText(part: Extract<ChatContentPart, { type: 'file_url' }>): string {
  return `[file${part.name ? ` ${part.name}` : ''}](${part.url})`;
}

export interface OpenAIUsageWire {
  prompt_tokens?: number | undefined;
  completion_tokens?: number | undefined;
  total_tokens?: number | undefined;
}

function num(value: unknown): number {
  return typeof value === 'number' && Number.isFinite(value) ? value : 0;
}

export function usageFromOpenAI(u: OpenAIUsageWire | null | undefined): Usage | undefined {
  if (!u || typeof u !== 'object') return undefined;
  const promptTokens = num(u.prompt_tokens);
  const completionTokens = num(u.completion_tokens);
  const total = num(u.total_tokens);
  return { promptTokens, completionTokens, totalTokens: total || promptTokens + completionTokens };
}

export function makeUsage(promptTokens: unknown, completionTokens: unknown): Usage {
  const p = num(promptTokens);
  const c = num(completionTokens);
  return { promptTokens: p, completionTokens: c, totalTokens: p + c };
}

/** With a system prompt, messages get a leading system message unless they already start with one. */
export function withSystemMessage(messages: ChatMessage[], systemPrompt: string | undefined): ChatMessage[] {
  if (!systemPrompt || messages[0]?.role === 'system') return messages;
  return [{ role: 'system', content: systemPrompt }, ...messages];
}

export function jsonHeaders(extra: Record<string, string>, stream: boolean): Record<string, string> {
  return { 'content-type': 'application/json', accept: stream ? 'text/event-stream' : 'application/json', ...extra };
}

export function bearer(apiKey: string | undefined): Record<string, string> {
  return apiKey ? { authorization: `Bearer ${apiKey}` } : {};
}

/** `upstream` with the turn's `traceparent` header, when the turn is traced. */
export function traced(upstream: UpstreamRequest, traceparent: string | undefined): UpstreamRequest {
  if (traceparent !== undefined) upstream.headers.traceparent = traceparent;
  return upstream;
}

/** A JSON POST to an endpoint, authenticated with its key (a bearer token unless `auth` says otherwise). */
export function postJson(
  endpoint: ResolvedEndpoint,
  url: string,
  body: string,
  signal: AbortSignal,
  mode: 'stream' | 'blocking',
  auth: Record<string, string> = bearer(endpoint.apiKey),
): UpstreamRequest {
  return { method: 'POST', url, headers: jsonHeaders(auth, mode === 'stream'), body, timeouts: endpoint.timeouts, signal, mode, secret: endpoint.apiKey };
}
