import type { TSchema } from '@sinclair/typebox';
import { ValueErrorType, type ValueError } from '@sinclair/typebox/errors';
import { Value } from '@sinclair/typebox/value';

/** Schema errors in words for people, one per JSON pointer; shared by request validation and agents.json. */

function bounds(schema: TSchema, unit = ''): string {
  const min = schema.minimum as number | undefined;
  const max = schema.maximum as number | undefined;
  if (min !== undefined && max !== undefined) return `between ${min} and ${max}${unit}`;
  if (min !== undefined) return `at least ${min}${unit}`;
  return `at most ${String(max)}${unit}`;
}

/** A schema may say in words what its pattern means: `Type.String({ pattern, patternMessage: 'must be a URL' })`. */
function patternMessage(schema: TSchema): string {
  if (typeof schema.patternMessage === 'string') return schema.patternMessage;
  if (schema.pattern === '\\S') return 'must not be blank';
  return `must match ${String(schema.pattern)}`;
}

function unionMessage(schema: TSchema): string {
  const branches = (schema.anyOf ?? []) as TSchema[];
  const options = branches.map((s) => s.const as unknown);
  if (options.length > 0 && options.every((o) => typeof o === 'string')) return `must be one of ${options.join(', ')}`;
  return 'has an invalid value';
}

/** The non-null branch of a `Union([Null, X])`, whose errors say more than "invalid union". */
function nullableBranch(schema: TSchema): TSchema | undefined {
  const branches = (schema.anyOf ?? []) as TSchema[];
  const others = branches.filter((s) => s.type !== 'null');
  return branches.length === 2 && others.length === 1 ? others[0] : undefined;
}

/** Messages for people, in place of TypeBox's generic ones; other error types keep TypeBox's message. */
const MESSAGES: Partial<Record<ValueErrorType, (schema: TSchema) => string>> = {
  [ValueErrorType.ObjectRequiredProperty]: () => 'is required',
  [ValueErrorType.ObjectAdditionalProperties]: () => 'is not a known field',
  [ValueErrorType.ObjectMinProperties]: () => 'must not be empty',
  [ValueErrorType.Object]: () => 'must be an object',
  [ValueErrorType.Array]: () => 'must be an array',
  [ValueErrorType.ArrayMaxItems]: (s) => `must have at most ${String(s.maxItems)} items`,
  [ValueErrorType.String]: () => 'must be a string',
  [ValueErrorType.StringMinLength]: (s) => (s.minLength === 1 ? 'must not be empty' : `must be at least ${String(s.minLength)} characters`),
  [ValueErrorType.StringMaxLength]: (s) => `must be at most ${String(s.maxLength)} characters`,
  [ValueErrorType.StringPattern]: patternMessage,
  [ValueErrorType.Boolean]: () => 'must be true or false',
  [ValueErrorType.Number]: () => 'must be a number',
  [ValueErrorType.Integer]: () => 'must be an integer',
  [ValueErrorType.NumberMinimum]: (s) => `must be ${bounds(s)}`,
  [ValueErrorType.NumberMaximum]: (s) => `must be ${bounds(s)}`,
  [ValueErrorType.IntegerMinimum]: (s) => `must be ${bounds(s)}`,
  [ValueErrorType.IntegerMaximum]: (s) => `must be ${bounds(s)}`,
  [ValueErrorType.Union]: unionMessage,
  [ValueErrorType.Null]: () => 'must be null',
  [ValueErrorType.StringFormat]: (s) => `must be a valid ${String(s.format)}`,
};

function describe(error: ValueError): string {
  return MESSAGES[error.type]?.(error.schema) ?? error.message;
}

/** Structural errors of `value` against `schema`, the first one per JSON pointer, in words for people. */
export function schemaErrors(schema: TSchema, value: unknown, limit = 100): { pointer: string; message: string }[] {
  const seen = new Set<string>();
  const out: { pointer: string; message: string }[] = [];
  const visit = (s: TSchema, v: unknown, prefix: string): void => {
    for (const error of Value.Errors(s, v)) {
      if (out.length >= limit) return;
      const pointer = prefix + error.path;
      if (seen.has(pointer)) continue;
      const inner = error.type === ValueErrorType.Union ? nullableBranch(error.schema) : undefined;
      if (inner) {
        visit(inner, error.value, pointer);
        continue;
      }
      seen.add(pointer);
      out.push({ pointer, message: describe(error) });
    }
  };
  visit(schema, value, '');
  return out;
}

