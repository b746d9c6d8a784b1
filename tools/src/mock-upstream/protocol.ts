/** What every provider protocol implements, plus small wire helpers they share. */

import type { IncomingHttpHeaders, OutgoingHttpHeaders } from 'node:http';
import type { AnswerPlan, MockToolCall, MockToolResult } from './answer.js';
import type { Exchange } from './exchange.js';
import type { ParsedFaults } from './faults.js';

export type ProviderName = 'openai' | 'fastgpt' | 'anthropic' | 'dify';

/** A refusal the mock answers with in the provider's error format. */
export class ErrorReply {
  constructor(
    readonly status: number,
    readonly message: string,
    /** Provider code; undefined: the provider's usual code for the status; null: explicitly none. */
    readonly code?: string | null,
  ) {}
}

/** A chat request as a protocol parsed it. */
export interface TurnRequest {
  stream: boolean;
  model: string;
  /** Raw text of the last user message, directives included. */
  userText: string;
  systemPrompt: boolean;
  promptChars: number;
  /** Text of a trailing assistant message: the start of the answer, to be continued (OpenAI-compatible and Anthropic only). */
  prefill?: string | undefined;
  /** Function names the request offers (OpenAI, Anthropic). */
  tools?: string[];
  /** The tool results the request ends with. */
  toolResults?: MockToolResult[];
}

/**
 * Frames of one streamed answer. Each method returns ready-to-write text so
 * the pacing loop only concatenates strings and calls `res.write`.
 */
export interface StreamScript {
  headers: OutgoingHttpHeaders;
  /** Written right after the headers (may be empty). */
  open: string;
  reasoning(piece: string, index: number): string;
  text(piece: string, index: number): string;
  /** Piece `piece` of call `index`'s arguments (its first piece also opens the call); providers with function calling only. */
  toolCall?(call: MockToolCall, index: number, piece: number): string;
  /** One frame whose payload is not valid JSON. */
  malformed(): string;
  /** The provider's in-stream error event; the stream ends after it. */
  error(code: string | undefined): string;
  /** Closing frames after `sent` text chunks; `withMarker: false` leaves out the final marker. */
  end(sent: number, withMarker: boolean): string;
}

/** Lets a provider end a running stream early (Dify's stop API). */
export interface StreamControl {
  stop(): void;
}

export interface ChatProtocol<T extends TurnRequest> {
  parseTurn(body: unknown): T | ErrorReply;
  streamScript(turn: T, plan: AnswerPlan): StreamScript;
  blockingBody(turn: T, plan: AnswerPlan): unknown;
  /** Called once the answer starts (after delays and status faults); returns a cleanup run on close. */
  onTurnStart?(turn: T, plan: AnswerPlan, control: StreamControl | undefined): (() => void) | undefined;
}

export interface RouteContext {
  exchange: Exchange;
  body: unknown;
  /** A multipart body's bytes and Content-Type (file uploads); undefined for JSON bodies. */
  raw?: { bytes: Buffer; contentType: string } | undefined;
  query: URLSearchParams;
  params: Readonly<Record<string, string>>;
  /** Faults from the URL prefix and the header; chat routes add message directives. */
  faults: ParsedFaults;
  /** Called with the effective faults once a chat route knows them (for the request log). */
  noteFaults(faults: ParsedFaults): void;
  /** Counts this request against its spec's `times`/`every` and returns the faults it gets (`FaultSchedule`); call once. */
  schedule(faults: ParsedFaults): ParsedFaults;
}

export interface Route {
  method: 'GET' | 'POST';
  /** Path pattern with `:name` segments. */
  path: string;
  /** Chat routes apply every fault themselves; other routes only get `headersDelay` and `status`. */
  chat: boolean;
  handle(ctx: RouteContext): void;
}

export interface ProviderModule {
  provider: ProviderName;
  /** Returns a refusal when the request's credentials are missing or `bad-key`. */
  authenticate(headers: IncomingHttpHeaders): ErrorReply | undefined;
  errorBody(reply: ErrorReply): unknown;
  routes: Route[];
}

export const BAD_KEY = 'bad-key';

export const SSE_HEADERS: Readonly<OutgoingHttpHeaders> = {
  'content-type': 'text/event-stream; charset=utf-8',
  'cache-control': 'no-cache',
};

/** Payload used by every provider for `malformedAfter`: a JSON object missing its closing brace. */
export const MALFORMED_JSON = '{"mock":"malformed chunk"';

export const sseData = (json: string): string => `data: ${json}\n\n`;
export const sseEvent = (event: string, json: string): string => `event: ${event}\ndata: ${json}\n\n`;
export const quote = (text: string): string => JSON.stringify(text);

export function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/** Bearer token from the Authorization header, or undefined. */
export function bearerToken(headers: IncomingHttpHeaders): string | undefined {
  const value = headers.authorization;
  if (value === undefined) return undefined;
  const match = /^Bearer\s+(\S+)\s*$/i.exec(value);
  return match?.[1];
}

/** Text of a message `content`: a string or an array of `{type:'text', text}` parts. */
export function contentText(content: unknown): string {
  if (typeof content === 'string') return content;
  if (!Array.isArray(content)) return '';
  let text = '';
  for (const part of content) {
    if (isRecord(part) && part.type === 'text' && typeof part.text === 'string') {
      text += text === '' ? part.text : '\n' + part.text;
    }
  }
  return text;
}

export interface ChatMessageSummary {
  userText: string;
  systemPrompt: boolean;
  promptChars: number;
  /** Text of the last message when it is the assistant's (a prefill); protocols that continue answers use it. */
  lastAssistant: string | undefined;
  /** The last user message's content as sent (its attachments, in the provider's form). */
  userContent: unknown;
}

/**
 * Reads an OpenAI-style `messages` array. Returns an error text when the
 * array is missing, empty or holds something that is not a message.
 */
export function summariseMessages(
  messages: unknown,
  systemRoles: readonly string[],
): ChatMessageSummary | string {
  if (!Array.isArray(messages) || messages.length === 0) return "'messages' must be a non-empty array";
  let userText = '';
  let systemPrompt = false;
  let promptChars = 0;
  let lastAssistant: string | undefined;
  let userContent: unknown;
  for (const [index, message] of messages.entries()) {
    if (!isRecord(message) || typeof message.role !== 'string') {
      return `'messages[${index}]' must be an object with a string 'role'`;
    }
    const text = contentText(message.content);
    promptChars += text.length;
    lastAssistant = message.role === 'assistant' ? text : undefined;
    if (message.role === 'user') {
      userText = text;
      userContent = message.content;
    }
    else if (systemRoles.includes(message.role) && text.trim() !== '') systemPrompt = true;
  }
  return { userText, systemPrompt, promptChars, lastAssistant, userContent };
}

export function simulatedErrorMessage(status: number): string {
  return `Simulated upstream error (HTTP ${status}) from the mock upstream`;
}

export const PREFILL_REFUSED_MESSAGE = 'This model does not support assistant message prefill: the final message must be the user\'s';

export const IN_STREAM_ERROR_MESSAGE = 'Simulated in-stream error from the mock upstream';
