/** A JSON pointer segment (RFC 6901). */
function pointerSegment(key: string): string {
  return key.replaceAll('~', '~0').replaceAll('/', '~1');
}

/** Deeper input is refused: nothing the API takes nests this far, and deep values would overflow recursive code later. */
export const MAX_INPUT_DEPTH = 64;

const NUL = 'must not contain the NUL character (U+0000)';
const LONE_SURROGATE = 'must be well-formed Unicode (a lone UTF-16 surrogate such as \\ud83d is not a character)';

/**
 * ES2024's String.prototype.isWellFormed (Node 20 and later; the project's
 * TypeScript lib is ES2023): false when the string holds a lone surrogate.
 * Native, and free on one-byte strings; a /\p{Cs}/u test costs about 6× as
 * much on text with CJK characters, and every chat message passes here.
 */
function wellFormed(value: string): boolean {
  return (value as string & { isWellFormed(): boolean }).isWellFormed();
}

/** Why PostgreSQL could not store a string (in text or jsonb), or undefined when it can. */
function textProblem(value: string): string | undefined {
  if (value.includes('\u0000')) return NUL;
  if (!wellFormed(value)) return LONE_SURROGATE;
  return undefined;
}

/**
 * What no schema can say about an input that passed its schema: the NUL
 * character (U+0000) or a lone UTF-16 surrogate in a string or a key, which
 * PostgreSQL's text and jsonb cannot store (and UTF-8 cannot encode), and
 * nesting deeper than MAX_INPUT_DEPTH (free-form
 * fields such as `variables` take any JSON). Returns a problem with its
 * JSON pointer, or undefined. Iterative, so no input can
 * overflow the stack here.
 */
export function inputProblem(input: unknown): { pointer: string; message: string } | undefined {
  const stack: [unknown, string, number][] = [[input, '', 0]];
  for (let next = stack.pop(); next !== undefined; next = stack.pop()) {
    const [value, pointer, depth] = next;
    if (typeof value === 'string') {
      const message = textProblem(value);
      if (message !== undefined) return { pointer, message };
      continue;
    }
    if (typeof value !== 'object' || value === null) continue;
    if (depth >= MAX_INPUT_DEPTH) return { pointer, message: `must not nest more than ${MAX_INPUT_DEPTH} levels deep` };
    // Pushed in reverse, so the first problem in document order is the one reported.
    if (Array.isArray(value)) {
      for (let i = value.length - 1; i >= 0; i--) stack.push([value[i], `${pointer}/${i}`, depth + 1]);
      continue;
    }
    const keys = Object.keys(value);
    for (let i = keys.length - 1; i >= 0; i--) {
      const key = keys[i] as string;
      const at = `${pointer}/${pointerSegment(key)}`;
      const message = textProblem(key);
      if (message !== undefined) return { pointer: at, message };
      stack.push([(value as Record<string, unknown>)[key], at, depth + 1]);
    }
  }
  return undefined;
}
