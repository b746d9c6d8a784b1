/** Deterministic answers: the same question and fault spec always give the same chunks. */

import type { FaultSpec } from './faults.js';

export const SYSTEM_PROMPT_MARK = '[system prompt received] ';
export const ANSWER_PREFIX = 'Simulated answer to: ';

const FILLER = [
  'lorem', 'ipsum', 'dolor', 'sit', 'amet', 'consectetur', 'adipiscing', 'elit',
  'sed', 'do', 'eiusmod', 'tempor', 'incididunt', 'ut', 'labore', 'et', 'dolore',
  'magna', 'aliqua',
] as const;

/** What a provider protocol extracted from one chat request. */
export interface TurnInput {
  /** Last user message text with `[[mock …]]` directives removed. */
  question: string;
  systemPrompt: boolean;
  /** Characters of all input text (system prompt and messages), for usage. */
  promptChars: number;
  /** Names of the functions the request offers (function calling). */
  tools?: readonly string[] | undefined;
  /** The tool results the request ends with, in order: the answer echoes them. */
  toolResults?: readonly MockToolResult[] | undefined;
}

export interface MockToolResult {
  /** The call's id as the request named it (`tool_call_id`, `tool_use_id`). */
  id: string;
  content: string;
}

/** One function call of a planned answer; `pieces` are its arguments as streamed (their join is `arguments`). */
export interface MockToolCall {
  /** Without the provider's prefix (`call_`, `toolu_`). */
  id: string;
  name: string;
  arguments: string;
  pieces: string[];
}

/** The whole generated turn, computed once when the request arrives. */
export interface AnswerPlan {
  /** The question the answer echoes (directives removed). */
  question: string;
  text: string;
  chunks: string[];
  reasoningText: string;
  reasoning: string[];
  promptTokens: number;
  /** Equals the number of text chunks. */
  completionTokens: number;
  firstTokenDelayMs: number;
  intervalMs: number;
  /** The function calls the answer makes (after its text, if any). */
  toolCalls: MockToolCall[];
  fault: FaultSpec;
}

export interface AnswerDefaults {
  chunks: number;
  intervalMs: number;
}

/** About four characters per token, at least one. */
export function estimateTokens(chars: number): number {
  return Math.max(1, Math.ceil(chars / 4));
}

/** Splits text into `count` pieces of near-equal length without breaking a code point. */
export function splitText(text: string, count: number): string[] {
  if (count <= 0 || text === '') return [];
  const points = Array.from(text);
  const n = Math.min(count, points.length);
  const pieces: string[] = [];
  for (let i = 0; i < n; i++) {
    const from = Math.floor((i * points.length) / n);
    const to = Math.floor(((i + 1) * points.length) / n);
    pieces.push(points.slice(from, to).join(''));
  }
  return pieces;
}

/** `Simulated answer to: <question>` plus one filler word per chunk, so every chunk carries text. */
export function composeAnswer(question: string, systemPrompt: boolean, chunkCount: number): string {
  if (chunkCount <= 0) return '';
  let text = (systemPrompt ? SYSTEM_PROMPT_MARK : '') + ANSWER_PREFIX + question;
  for (let i = 0; i < chunkCount; i++) text += ' ' + FILLER[i % FILLER.length];
  return text + '.';
}

/** Why the answer ends, in OpenAI's words: the `finish` fault, else `tool_calls` when it calls functions. */
export function finishOf(plan: AnswerPlan): NonNullable<FaultSpec['finish']> {
  return plan.fault.finish ?? (plan.toolCalls.length > 0 ? 'tool_calls' : 'stop');
}

export function composeReasoning(count: number): string[] {
  const steps: string[] = [];
  for (let i = 0; i < count; i++) steps.push(`Reasoning step ${i + 1}. `);
  return steps;
}

/** What the model echoes of tool results: `Tool results: <id> → <content>; …`. */
export const TOOL_RESULTS_PREFIX = 'Tool results: ';

export function composeToolEcho(results: readonly MockToolResult[]): string {
  return TOOL_RESULTS_PREFIX + results.map((r) => `${r.id} → ${r.content}`).join('; ');
}

/**
 * The calls an answer makes: when the request offers functions and does not
 * end with tool results, `toolCalls` (default 1) calls of the `tool` fault's
 * function (default the first offered) with `{"question": …, "call": i}`,
 * each streamed in three pieces. Deterministic but for the ids.
 */
function planToolCalls(turn: TurnInput, fault: FaultSpec): MockToolCall[] {
  const offered = turn.tools ?? [];
  if (offered.length === 0 || (turn.toolResults?.length ?? 0) > 0 || fault.tool === 'none') return [];
  const name = fault.tool ?? offered[0] ?? '';
  const calls: MockToolCall[] = [];
  for (let i = 0; i < (fault.toolCalls ?? 1); i++) {
    const args = JSON.stringify({ question: turn.question, call: i });
    calls.push({ id: `mock${i}${Math.random().toString(36).slice(2, 10)}`, name, arguments: args, pieces: splitText(args, 3) });
  }
  return calls;
}

/**
 * The chunks that follow `prefill`, the start of the answer a request asks to
 * continue: when the planned answer begins with it, only the rest (the
 * chunk it ends inside cut at its end), so the prefill and the continuation
 * join into the planned answer exactly, wherever the earlier call broke off;
 * the whole planned answer when it does not.
 */
export function continuationChunks(chunks: readonly string[], prefill: string): string[] {
  if (!chunks.join('').startsWith(prefill)) return [...chunks];
  const rest: string[] = [];
  let offset = 0;
  for (const chunk of chunks) {
    const end = offset + chunk.length;
    if (end > prefill.length) rest.push(offset >= prefill.length ? chunk : chunk.slice(prefill.length - offset));
    offset = end;
  }
  return rest;
}

export function planAnswer(turn: TurnInput, fault: FaultSpec, defaults: AnswerDefaults, prefill?: string): AnswerPlan {
  const toolCalls = planToolCalls(turn, fault);
  // An answer that calls functions has no text unless asked for; one after tool results echoes them.
  const chunkCount = toolCalls.length > 0 && fault.answer === undefined ? 0 : (fault.chunks ?? defaults.chunks);
  const echo = turn.toolResults !== undefined && turn.toolResults.length > 0 ? composeToolEcho(turn.toolResults) : undefined;
  const text = fault.answer ?? echo ?? composeAnswer(turn.question, turn.systemPrompt, chunkCount);
  const planned = splitText(text, chunkCount);
  // A continued answer has done its thinking: no reasoning again.
  const chunks = prefill === undefined ? planned : continuationChunks(planned, prefill);
  const reasoning = composeReasoning(prefill === undefined ? (fault.reasoning ?? 0) : 0);
  return {
    question: turn.question,
    text: chunks.join(''),
    chunks,
    reasoningText: reasoning.join(''),
    reasoning,
    promptTokens: estimateTokens(turn.promptChars),
    completionTokens: chunks.length,
    firstTokenDelayMs: fault.firstTokenDelay ?? 0,
    intervalMs: fault.interval ?? defaults.intervalMs,
    toolCalls,
    fault,
  };
}
