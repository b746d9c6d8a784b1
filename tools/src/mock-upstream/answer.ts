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

export function composeReasoning(count: number): string[] {
  const steps: string[] = [];
  for (let i = 0; i < count; i++) steps.push(`Reasoning step ${i + 1}. `);
  return steps;
}

export function planAnswer(turn: TurnInput, fault: FaultSpec, defaults: AnswerDefaults): AnswerPlan {
  const chunkCount = fault.chunks ?? defaults.chunks;
  const text = fault.answer ?? composeAnswer(turn.question, turn.systemPrompt, chunkCount);
  const chunks = splitText(text, chunkCount);
  const reasoning = composeReasoning(fault.reasoning ?? 0);
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
    fault,
  };
}
