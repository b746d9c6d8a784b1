import type { TurnEvent } from '../../shared-state/shared-state.js';
import type { ProviderRequest, ResolvedEndpoint } from '../providers/types.js';
import { continuationOf } from '../providers/continuation-kinds.js';
import { UpstreamError } from '../providers/upstream-error.js';

/**
 * Mid-answer continuation (README, "Continuation per provider"): when an
 * attempt breaks off after some text, the next one sends the question plus
 * the partial answer as a trailing assistant message and streams only what
 * follows, so the client sees one answer with no `reset`.
 */
export interface Continuation {
  kind: 'prefill' | 'continue_final_message';
  /** The trailing assistant message: the answer so far (Anthropic: without trailing whitespace, which it refuses). */
  prefill: string;
  /** Whitespace cut off the answer's end; the continuation's first text says it again and it is dropped there. */
  trimmed: string;
}

/** How `endpoint` goes on with `answer`, the text the client has; undefined: it starts over. */
export function planContinuation(endpoint: ResolvedEndpoint, answer: string): Continuation | undefined {
  if (answer === '') return undefined;
  const kind = continuationOf(endpoint);
  if (kind === 'restart') return undefined;
  if (endpoint.provider !== 'anthropic') return { kind, prefill: answer, trimmed: '' };
  const prefill = answer.trimEnd();
  return prefill === '' ? undefined : { kind, prefill, trimmed: answer.slice(prefill.length) };
}

/** The request with the answer so far as its last message. */
export function continuedRequest(request: ProviderRequest, continuation: Continuation): ProviderRequest {
  return { ...request, messages: [...request.messages, { role: 'assistant', content: continuation.prefill }], continuation: continuation.kind };
}

/**
 * An endpoint that does not take a trailing assistant message answers 400
 * (or 422): that is no failure of the endpoint, and the same call without
 * the prefill may well answer.
 */
export function refusedContinuation(err: unknown): boolean {
  return err instanceof UpstreamError && err.kind === 'http' && (err.status === 400 || err.status === 422);
}

/**
 * Drops from the start of a continuation's text what repeats `trimmed` (the
 * whitespace a prefill lost). Returns the text to keep and what of
 * `trimmed` is still to be matched (undefined: done).
 */
export function dropRepeatedWhitespace(trimmed: string, delta: string): { delta: string; rest: string | undefined } {
  let i = 0;
  while (i < trimmed.length && i < delta.length && trimmed[i] === delta[i]) i++;
  if (i === delta.length && i < trimmed.length) return { delta: '', rest: trimmed.slice(i) };
  return { delta: delta.slice(i), rest: undefined };
}

/**
 * Matches a restarted answer against the text a client already holds and
 * cannot take back (`/v1`): `accept` returns what of each new delta goes
 * past that text, '' while the restart is still repeating it, and undefined
 * once the restart has said something else.
 */
export class RepeatedPrefix {
  private matched = 0;

  constructor(private readonly sent: string) {}

  /** The restart has repeated the whole text sent before: what follows goes out as it comes. */
  get passed(): boolean {
    return this.matched >= this.sent.length;
  }

  accept(delta: string): string | undefined {
    if (this.passed) return delta;
    const want = this.sent.length - this.matched;
    const head = delta.slice(0, want);
    if (this.sent.slice(this.matched, this.matched + head.length) !== head) return undefined;
    this.matched += head.length;
    return delta.slice(head.length);
  }
}

/**
 * The text a taken-over answer goes on from: what the shared buffer shows
 * the client got since its last `reset`, when that extends the checkpoint
 * (the buffer is written every few tens of milliseconds, the checkpoint
 * every second or so); else the checkpoint. Undefined: no text yet, or
 * the answer had begun calling functions (a call cannot be prefilled, so
 * the answer starts over).
 */
export function partialAnswer(checkpoint: string, buffered: readonly TurnEvent[]): { content: string; reasoning: string } | undefined {
  let content = '';
  let reasoning = '';
  let calling = false;
  for (const event of buffered) {
    if (event.event === 'reset') {
      content = '';
      reasoning = '';
      calling = false;
    } else if (event.event === 'toolCall') {
      calling = true;
    } else if (event.event === 'chunk' || event.event === 'reasoning') {
      const delta = (JSON.parse(event.data) as { content?: unknown }).content;
      if (typeof delta !== 'string') continue;
      if (event.event === 'chunk') content += delta;
      else reasoning += delta;
    }
  }
  if (calling) return undefined;
  if (content.length >= checkpoint.length && content.startsWith(checkpoint)) return content === '' ? undefined : { content, reasoning };
  return checkpoint === '' ? undefined : { content: checkpoint, reasoning: '' };
}
