import { FormatRegistry, Type, type TSchema, type TUnsafe } from '@sinclair/typebox';
import { TypeCompiler } from '@sinclair/typebox/compiler';
import { Value } from '@sinclair/typebox/value';
import type { FastifySchemaCompiler, FastifySchemaValidationError } from 'fastify';
import { inputProblem } from '../http/input-problem.js';
import { schemaErrors } from '../http/schema-errors.js';

/**
 * Request validation for every route, from the routes' TypeBox schemas.
 * Bodies are checked exactly as declared: nothing is coerced, so `123` is
 * not a string and `null` is not "". Query strings and path params are text
 * on the wire and are converted to the declared types. Every problem is
 * reported with its JSON pointer.
 */

const UUID_RE = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
const EMAIL_RE = /^[^\s@]+@[^\s@]+\.[^\s@]+$/;
const DATE_TIME_RE = /^\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}(:\d{2}(\.\d{1,9})?)?([Zz]|[+-]\d{2}:?\d{2})$/;

function registerFormat(name: string, check: (value: string) => boolean): void {
  if (!FormatRegistry.Has(name)) FormatRegistry.Set(name, check);
}

registerFormat('uuid', (v) => UUID_RE.test(v));
registerFormat('email', (v) => EMAIL_RE.test(v));
registerFormat('date-time', (v) => DATE_TIME_RE.test(v) && !Number.isNaN(Date.parse(v)));

const MAX_REPORTED = 20;

/** Whether a schema declares a default anywhere: only then is the input walked to apply them. */
function declaresDefaults(schema: unknown): boolean {
  if (Array.isArray(schema)) return schema.some(declaresDefaults);
  if (typeof schema !== 'object' || schema === null) return false;
  return Object.entries(schema).some(([key, value]) => key === 'default' || declaresDefaults(value));
}

/**
 * Where a request schema declares a number without both bounds, as JSON
 * pointers into the schema. Unbounded, a query string such as
 * `before=100000000000000000000000` converts to 1e23, passes as an
 * integer and reaches the database out of range; every number the API
 * takes states its range instead.
 */
export function unboundedNumbers(schema: unknown, at = ''): string[] {
  if (Array.isArray(schema)) return schema.flatMap((s, i) => unboundedNumbers(s, `${at}/${i}`));
  if (typeof schema !== 'object' || schema === null) return [];
  const node = schema as Record<string, unknown>;
  const found: string[] = [];
  if (node.type === 'integer' || node.type === 'number') {
    const low = typeof node.minimum === 'number' || typeof node.exclusiveMinimum === 'number';
    const high = typeof node.maximum === 'number' || typeof node.exclusiveMaximum === 'number';
    if (!low || !high) found.push(at || '/');
  }
  for (const [key, value] of Object.entries(node)) {
    if (typeof value === 'object' && value !== null) found.push(...unboundedNumbers(value, `${at}/${key}`));
  }
  return found;
}

/** A raw body (an upload): the schema documents it, the route's own parser hands a Buffer, and the route checks the bytes itself. */
export function binaryBody(description: string): TUnsafe<Buffer> {
  return Type.Unsafe<Buffer>({ type: 'string', format: 'binary', contentMediaType: 'application/octet-stream', description });
}

function isBinaryBody(schema: unknown): boolean {
  return typeof schema === 'object' && schema !== null && (schema as Record<string, unknown>).format === 'binary' && (schema as Record<string, unknown>).type === 'string';
}

export const validatorCompiler: FastifySchemaCompiler<TSchema> = ({ schema, httpPart, method, url }) => {
  if (httpPart === 'body' && isBinaryBody(schema)) {
    return (input: unknown) => (Buffer.isBuffer(input) ? { value: input } : { error: [{ keyword: 'schema', instancePath: '', schemaPath: '', params: {}, message: 'must be the file\'s bytes' }] });
  }
  const unbounded = unboundedNumbers(schema);
  if (unbounded.length > 0) {
    // At start, not per request: a route that takes an unbounded number does not boot.
    throw new Error(`${method} ${url}: the ${httpPart ?? 'request'} schema declares a number without minimum and maximum at ${unbounded.join(', ')}`);
  }
  const check = TypeCompiler.Compile(schema);
  const convert = httpPart !== 'body';
  const defaults = declaresDefaults(schema);
  return (input: unknown) => {
    let value = defaults ? Value.Default(schema, input) : input;
    if (convert) value = Value.Convert(schema, value);
    if (check.Check(value)) {
      const problem = inputProblem(value);
      if (problem === undefined) return { value };
      return { error: [{ keyword: 'schema', instancePath: problem.pointer, schemaPath: '', params: {}, message: problem.message }] };
    }
    const errors: FastifySchemaValidationError[] = schemaErrors(schema, value, MAX_REPORTED).map((e) => ({
      keyword: 'schema',
      instancePath: e.pointer,
      schemaPath: '',
      params: {},
      message: e.message,
    }));
    if (errors.length === 0) errors.push({ keyword: 'schema', instancePath: '', schemaPath: '', params: {}, message: 'is invalid' });
    return { error: errors };
  };
};
