import type { OpenAIToolCallDelta } from './tool-calls.js';
import { inStreamError, parseChunk, type OpenAIUsageWire } from './wire.js';

/**
 * What LLMChat reads from one OpenAI-style stream chunk (FastGPT's answer
 * events are such chunks too): the text and reasoning deltas and finish
 * reason of the first choice, the model and the usage. (A chunk that
 * carries an error has no fields: it is the provider's in-stream error.)
 */
export interface OpenAIChunkFields {
  model: string | undefined;
  text: string | undefined;
  reasoning: string | undefined;
  finishReason: string | undefined;
  /** The chunk's `usage` as sent, when present and not null. */
  usage: OpenAIUsageWire | undefined;
  /** The first choice's `delta.tool_calls` as sent (function-call pieces), when a non-empty array. */
  toolCalls: OpenAIToolCallDelta[] | undefined;
}

/** The parts of an OpenAI chat-completions stream chunk we read. Everything is optional on the wire. */
export interface OpenAIChunk {
  id?: string;
  model?: string;
  choices?: Array<{
    delta?: { content?: unknown; reasoning_content?: unknown; reasoning?: unknown; tool_calls?: unknown } | null;
    finish_reason?: string | null;
  }>;
  usage?: OpenAIUsageWire | null;
  error?: unknown;
}

/** The fields of a chunk already parsed with JSON.parse (the reference the fast reader must agree with). */
export function openAIChunkFields(chunk: OpenAIChunk): OpenAIChunkFields {
  const choice = chunk.choices?.[0];
  const delta = choice?.delta;
  const reasoning = delta?.reasoning_content ?? delta?.reasoning;
  const text = delta?.content;
  return {
    model: typeof chunk.model === 'string' && chunk.model !== '' ? chunk.model : undefined,
    text: typeof text === 'string' && text !== '' ? text : undefined,
    reasoning: typeof reasoning === 'string' && reasoning !== '' ? reasoning : undefined,
    finishReason: choice?.finish_reason ?? undefined,
    usage: chunk.usage ? chunk.usage : undefined,
    toolCalls: Array.isArray(delta?.tool_calls) && delta.tool_calls.length > 0 ? (delta.tool_calls as OpenAIToolCallDelta[]) : undefined,
  };
}

/*
 * The fast reader. A streamed answer arrives as one small JSON object per
 * token or two, and JSON.parse builds the whole object (id, object, created,
 * system_fingerprint, logprobs, the choice and delta objects) only for all
 * of it but one string to become garbage at once: parsing was the largest
 * item of the server's own code in a CPU profile at 1000 streams (6% of its
 * busy time, plus the collections). A hand-written JSON scanner was tried
 * and was slower than JSON.parse.
 *
 * But within one stream the chunks are the same text but for the delta:
 * same id, created, model and fingerprint, same keys in the same order. So
 * the reader keeps the last chunk it parsed as a template: the text before
 * the value that carries the text (or reasoning) delta, and the text after
 * it. A chunk that starts with that prefix, continues with one valid JSON
 * string and ends with that suffix is the template with another string in
 * that one place, so its fields are the template's with that string in
 * place of the delta; only the string is decoded (by JSON.parse of its own
 * quoted text, which also makes a fresh copy rather than a slice that would
 * keep the chunk alive as long as the answer's text).
 *
 * A template is made only from a chunk JSON.parse accepted, and only once
 * a probe proves the slot: the prefix and suffix around a marker string
 * parse to the template's fields with the marker as the delta. Any other
 * chunk is parsed whole, as before. A stream whose chunks keep missing (a
 * provider that varies other fields per chunk) stops making templates.
 */

/** A chunk's slot for the varying string: `text` (`content`) or `reasoning` (`reasoning_content` or `reasoning`). */
type Slot = 'text' | 'reasoning';

interface Template {
  prefix: string;
  suffix: string;
  slot: Slot;
  fields: OpenAIChunkFields;
}

const SLOT_KEYS: ReadonlyArray<readonly [Slot, string]> = [
  ['text', '"content":"'],
  ['reasoning', '"reasoning_content":"'],
  ['reasoning', '"reasoning":"'],
];

const PROBE = 'llmchat-probe-1f3a';

/** Templates made in a row without a chunk using them, after which a stream stops making them. */
const MAX_FUTILE_TEMPLATES = 3;

function sameFields(a: OpenAIChunkFields, b: OpenAIChunkFields): boolean {
  return a.model === b.model && a.text === b.text && a.reasoning === b.reasoning && a.finishReason === b.finishReason && JSON.stringify(a.usage) === JSON.stringify(b.usage) && a.toolCalls === b.toolCalls;
}

/** `i` at an opening quote: the index of the closing quote, or -1 if the string is not valid JSON. */
function stringEnd(s: string, i: number): number {
  for (i++; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c === 0x22) return i;
    if (c < 0x20) return -1;
    if (c === 0x5c) {
      const e = s.charCodeAt(i + 1);
      if (e === 0x75) {
        for (let h = i + 2; h < i + 6; h++) {
          const x = s.charCodeAt(h);
          if (!((x >= 0x30 && x <= 0x39) || (x >= 0x41 && x <= 0x46) || (x >= 0x61 && x <= 0x66))) return -1;
        }
        i += 5;
      } else if (e === 0x22 || e === 0x5c || e === 0x2f || e === 0x62 || e === 0x66 || e === 0x6e || e === 0x72 || e === 0x74) {
        i++;
      } else {
        return -1;
      }
    }
  }
  return -1;
}

/** Reads the chunks of one stream (one reader per stream). */
export class OpenAIChunkReader {
  private template: Template | undefined;
  private futile = 0;
  private used = false;
  /** Chunks read from the template, for tests and diagnostics. */
  hits = 0;

  constructor(
    private readonly url: string,
    private readonly provider: string,
    private readonly secret: string | undefined,
  ) {}

  /**
   * The fields of one chunk. A chunk that is not a JSON object is a
   * protocol error, and one that carries an error is the provider's
   * in-stream error.
   */
  read(data: string): OpenAIChunkFields {
    const fast = this.fromTemplate(data);
    if (fast) return fast;
    const chunk = parseChunk<OpenAIChunk>(data, this.url, this.provider);
    if (chunk.error !== undefined && chunk.error !== null) throw inStreamError(this.provider, chunk, this.url, this.secret);
    const fields = openAIChunkFields(chunk);
    this.learn(data, fields);
    return fields;
  }

  private fromTemplate(data: string): OpenAIChunkFields | undefined {
    const t = this.template;
    if (!t) return undefined;
    const open = t.prefix.length;
    // Equality of slices: several times faster in V8 than startsWith and endsWith.
    if (data.charCodeAt(open) !== 0x22 || data.slice(0, open) !== t.prefix) return undefined;
    const close = stringEnd(data, open);
    if (close < 0 || data.length - close - 1 !== t.suffix.length || data.slice(close + 1) !== t.suffix) return undefined;
    this.used = true;
    this.futile = 0;
    this.hits++;
    const value = (JSON.parse(data.slice(open, close + 1)) as string) || undefined;
    const f = t.fields;
    return t.slot === 'text'
      ? { model: f.model, text: value, reasoning: f.reasoning, finishReason: f.finishReason, usage: f.usage, toolCalls: undefined }
      : { model: f.model, text: f.text, reasoning: value, finishReason: f.finishReason, usage: f.usage, toolCalls: undefined };
  }

  /** Makes a chunk parsed whole the template, when a probe proves its slot. */
  private learn(data: string, fields: OpenAIChunkFields): void {
    if (this.template && !this.used) this.futile++;
    this.template = undefined;
    this.used = false;
    // A chunk with function-call pieces is never a template: its pieces would repeat on every hit.
    if (this.futile >= MAX_FUTILE_TEMPLATES || fields.toolCalls !== undefined) return;
    for (const [slot, key] of SLOT_KEYS) {
      if (fields[slot] === undefined) continue;
      const at = data.indexOf(key);
      if (at < 0) continue;
      const open = at + key.length - 1;
      const close = stringEnd(data, open);
      if (close < 0) continue;
      const prefix = data.slice(0, open);
      const suffix = data.slice(close + 1);
      let probe: OpenAIChunkFields;
      try {
        probe = openAIChunkFields(JSON.parse(`${prefix}"${PROBE}"${suffix}`) as OpenAIChunk);
      } catch {
        continue;
      }
      if (sameFields(probe, { ...fields, [slot]: PROBE })) {
        // Flattened copies: slices of the chunk would keep it alive.
        this.template = { prefix: flat(prefix), suffix: flat(suffix), slot, fields };
        return;
      }
    }
  }
}

/** A copy of a string that shares no memory with the one it was cut from. */
function flat(s: string): string {
  return JSON.parse(JSON.stringify(s)) as string;
}
