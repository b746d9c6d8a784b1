/**
 * Fault specs: which misbehaviour a single request asks the mock for.
 *
 * A spec can come from three places, applied in this order (later wins):
 * the URL prefix `/fault/<spec>/…`, the `x-mock-fault` header, and a
 * `[[mock <spec>]]` directive inside the last user message.
 */

export interface FaultSpec {
  /** Answer with this HTTP status (400–599) and the provider's error body. */
  status?: number;
  /** Provider error code (or Anthropic error type) used in error bodies. */
  code?: string;
  /** Value of the `Retry-After` header on an error response. */
  retryAfter?: string;
  /** Milliseconds to wait before sending response headers. */
  headersDelay?: number;
  /** Milliseconds to wait after the headers before the first chunk. */
  firstTokenDelay?: number;
  /** Number of text chunks. */
  chunks?: number;
  /** Milliseconds between chunks. */
  interval?: number;
  /** After this many text chunks, stop sending. */
  stallAfter?: number;
  /** How long a stall lasts before the stream resumes; absent: until the client gives up. */
  stall?: number;
  /** After this many text chunks, destroy the socket. */
  cutAfter?: number;
  /** After this many text chunks, send one chunk that is not valid JSON (`malformed` of them), then go on. */
  malformedAfter?: number;
  /** How many unreadable chunks `malformedAfter` sends in a row (default 1). */
  malformed?: number;
  /** After this many text chunks, send the provider's in-stream error event and end. */
  errorAfter?: number;
  /** End the stream cleanly but without the provider's final marker. */
  noDone?: boolean;
  /** After this many text chunks, end the response cleanly with no closing frames at all (no finish reason, no end marker): a truncated stream. */
  endAfter?: number;
  /** Number of reasoning chunks before the answer. */
  reasoning?: number;
  /** FastGPT (detail mode): end with an interactive node. */
  interactive?: 'select' | 'form';
  /** Use this text as the answer. */
  answer?: string;
  /** Why the answer ends, in OpenAI's words; each provider's script says it in its own (Anthropic `max_tokens`, `tool_use`, `refusal`). */
  finish?: MockFinishReason;
  /** `refuse`: a request whose last message is the assistant's (a prefill to continue) gets HTTP 400, as endpoints without prefill do. */
  prefill?: 'refuse';
  /**
   * When the request offers tools (OpenAI, Anthropic) and does not end with
   * tool results: call this function (default: the first one offered);
   * `none` answers with text instead.
   */
  tool?: string;
  /** How many calls of that function the answer makes at once (parallel calls; default 1). */
  toolCalls?: number;
  /** Stateful: the spec's faults apply to the first N requests carrying this same spec only; later ones are served (`FaultSchedule`). */
  times?: number;
  /** Stateful: the spec's faults apply to every Nth request carrying this same spec only (the Nth, 2Nth, …); the others are served. */
  every?: number;
}

export type MockFinishReason = 'stop' | 'length' | 'tool_calls' | 'content_filter';
const FINISH_REASONS: readonly MockFinishReason[] = ['stop', 'length', 'tool_calls', 'content_filter'];

export interface ParsedFaults {
  spec: FaultSpec;
  /** Human-readable problems (unknown keys, bad values); the server answers 400 when not empty. */
  errors: string[];
}

const MAX_DELAY_MS = 3_600_000;
const MAX_COUNT = 100_000;

type IntegerKey =
  | 'headersDelay'
  | 'firstTokenDelay'
  | 'chunks'
  | 'interval'
  | 'stallAfter'
  | 'stall'
  | 'cutAfter'
  | 'malformedAfter'
  | 'malformed'
  | 'errorAfter'
  | 'endAfter'
  | 'reasoning'
  | 'toolCalls'
  | 'times'
  | 'every';

const integerKeys: Record<IntegerKey, number> = {
  headersDelay: MAX_DELAY_MS,
  firstTokenDelay: MAX_DELAY_MS,
  chunks: MAX_COUNT,
  interval: MAX_DELAY_MS,
  stallAfter: MAX_COUNT,
  stall: MAX_DELAY_MS,
  cutAfter: MAX_COUNT,
  malformedAfter: MAX_COUNT,
  malformed: 1000,
  errorAfter: MAX_COUNT,
  endAfter: MAX_COUNT,
  reasoning: MAX_COUNT,
  toolCalls: 16,
  times: MAX_COUNT,
  every: MAX_COUNT,
};

type KnownKey = IntegerKey | 'status' | 'code' | 'retryAfter' | 'noDone' | 'interactive' | 'answer' | 'finish' | 'prefill' | 'tool';

const knownKeys: readonly KnownKey[] = [
  ...(Object.keys(integerKeys) as IntegerKey[]),
  'status',
  'code',
  'retryAfter',
  'noDone',
  'interactive',
  'answer',
  'finish',
  'prefill',
  'tool',
];

// Keys are matched case-insensitively so `retryafter=2` in a hand-typed header works too.
const keyByLowerCase = new Map<string, KnownKey>(knownKeys.map((key) => [key.toLowerCase(), key]));

function isIntegerKey(key: KnownKey): key is IntegerKey {
  return Object.hasOwn(integerKeys, key);
}

function decode(value: string): string | undefined {
  try {
    return decodeURIComponent(value);
  } catch {
    return undefined;
  }
}

/** Parses `key=value` pairs separated by commas, spaces or semicolons. */
export function parseFaultSpec(text: string): ParsedFaults {
  const spec: FaultSpec = {};
  const errors: string[] = [];
  for (const token of text.split(/[,;\s]+/)) {
    if (token === '') continue;
    const eq = token.indexOf('=');
    const rawKey = eq === -1 ? token : token.slice(0, eq);
    const value = eq === -1 ? undefined : token.slice(eq + 1);
    const key = keyByLowerCase.get(rawKey.toLowerCase());
    if (key === undefined) {
      errors.push(`unknown fault key "${rawKey}"`);
      continue;
    }
    if (isIntegerKey(key)) {
      const n = value === undefined || !/^\d+$/.test(value) ? Number.NaN : Number(value);
      if (!Number.isSafeInteger(n) || n > integerKeys[key]) {
        errors.push(`fault key "${key}" needs an integer from 0 to ${integerKeys[key]}`);
        continue;
      }
      spec[key] = n;
      continue;
    }
    switch (key) {
      case 'status': {
        const n = value !== undefined && /^\d{3}$/.test(value) ? Number(value) : Number.NaN;
        if (!(n >= 400 && n <= 599)) {
          errors.push('fault key "status" needs an HTTP status from 400 to 599');
          continue;
        }
        spec.status = n;
        break;
      }
      case 'code':
      case 'retryAfter':
      case 'answer':
      case 'tool': {
        const decoded = value === undefined ? undefined : decode(value);
        if (decoded === undefined || decoded === '') {
          errors.push(`fault key "${key}" needs a non-empty (URL-encoded) value`);
          continue;
        }
        spec[key] = decoded;
        break;
      }
      case 'noDone': {
        if (value === undefined || value === '1' || value === 'true') spec.noDone = true;
        else if (value === '0' || value === 'false') spec.noDone = false;
        else errors.push('fault key "noDone" needs 1, 0, true or false');
        break;
      }
      case 'interactive': {
        if (value === 'select' || value === 'form') spec.interactive = value;
        else errors.push('fault key "interactive" needs "select" or "form"');
        break;
      }
      case 'finish': {
        const reason = FINISH_REASONS.find((r) => r === value);
        if (reason) spec.finish = reason;
        else errors.push(`fault key "finish" needs one of ${FINISH_REASONS.join(', ')}`);
        break;
      }
      case 'prefill': {
        if (value === 'refuse') spec.prefill = 'refuse';
        else errors.push('fault key "prefill" needs "refuse"');
        break;
      }
      default: {
        const unreachable: never = key;
        errors.push(`unhandled fault key "${String(unreachable)}"`);
      }
    }
  }
  if (spec.every === 0) {
    delete spec.every;
    errors.push(`fault key "every" needs an integer from 1 to ${MAX_COUNT}`);
  }
  return { spec, errors };
}

const FAULT_PREFIX = '/fault/';

/**
 * Splits `/fault/<spec>/<rest>` into the spec and `/<rest>`; a URL without the
 * prefix comes back unchanged with no spec.
 */
export function splitFaultPrefix(url: string): { faults: ParsedFaults | undefined; url: string } {
  if (!url.startsWith(FAULT_PREFIX)) return { faults: undefined, url };
  const end = url.indexOf('/', FAULT_PREFIX.length);
  if (end === -1) return { faults: undefined, url };
  return {
    faults: parseFaultSpec(url.slice(FAULT_PREFIX.length, end)),
    url: url.slice(end),
  };
}

// Leading whitespace goes with the directive so `ask [[mock x]] more` reads `ask more`.
const DIRECTIVE = /\s*\[\[mock(?:\s+([^\]]*))?\]\]/g;

/**
 * Finds `[[mock …]]` directives in a user message. Returns the text with the
 * directives removed (so the answer echoes what the user really asked).
 */
export function extractDirectives(text: string): { faults: ParsedFaults | undefined; text: string } {
  if (!text.includes('[[mock')) return { faults: undefined, text };
  const merged: ParsedFaults = { spec: {}, errors: [] };
  let found = false;
  const stripped = text.replace(DIRECTIVE, (_match, body: string | undefined) => {
    found = true;
    const parsed = parseFaultSpec(body ?? '');
    Object.assign(merged.spec, parsed.spec);
    merged.errors.push(...parsed.errors);
    return '';
  });
  if (!found) return { faults: undefined, text };
  return { faults: merged, text: stripped.trim() };
}

/** Merges fault sources; later arguments win key by key. */
export function mergeFaults(...sources: (ParsedFaults | undefined)[]): ParsedFaults {
  const merged: ParsedFaults = { spec: {}, errors: [] };
  for (const source of sources) {
    if (source === undefined) continue;
    Object.assign(merged.spec, source.spec);
    merged.errors.push(...source.errors);
  }
  return merged;
}

/** Keys that shape an answer rather than break it: a request that `times` or `every` spares keeps them. */
const SHAPING_KEYS: readonly (keyof FaultSpec)[] = ['chunks', 'interval', 'answer', 'reasoning', 'interactive', 'finish', 'tool', 'toolCalls', 'times', 'every'];

/**
 * The state behind `times` and `every`: how many requests each spec has
 * had, per mock server. Requests "carry the same spec" when their merged
 * faults (URL prefix, header and directive) are equal key by key, so an
 * endpoint URL with `/fault/status=503,times=1/` fails its first call only.
 */
export class FaultSchedule {
  private readonly seen = new Map<string, number>();

  /** The faults this request gets: all of them, or (spared by `times`/`every`) only the answer-shaping keys. */
  apply(faults: ParsedFaults): ParsedFaults {
    const { spec } = faults;
    if (faults.errors.length > 0 || (spec.times === undefined && spec.every === undefined)) return faults;
    const key = JSON.stringify(Object.entries(spec).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)));
    const n = (this.seen.get(key) ?? 0) + 1;
    this.seen.set(key, n);
    const applies = (spec.times === undefined || n <= spec.times) && (spec.every === undefined || n % spec.every === 0);
    if (applies) return faults;
    const spared: FaultSpec = {};
    for (const k of SHAPING_KEYS) if (spec[k] !== undefined) Object.assign(spared, { [k]: spec[k] });
    return { spec: spared, errors: [] };
  }
}
