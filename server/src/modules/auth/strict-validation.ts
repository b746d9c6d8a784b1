import { FormatRegistry, type TSchema } from '@sinclair/typebox';
import { TypeCompiler } from '@sinclair/typebox/compiler';
import { Value } from '@sinclair/typebox/value';
import type { FastifySchemaCompiler, FastifySchemaValidationError } from 'fastify';

/**
 * Request validation for the account routes. The app-wide Ajv coerces types
 * in bodies too (`123` becomes `"123"`, `["x"]` becomes `"x"`), which would
 * let wrong-typed credentials through; here bodies are checked exactly as
 * declared, while query strings and path params (always text on the wire)
 * are converted to the declared types. Defaults apply to every part.
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

export const strictValidatorCompiler: FastifySchemaCompiler<TSchema> = ({ schema, httpPart }) => {
  const check = TypeCompiler.Compile(schema);
  return (input: unknown) => {
    let value = Value.Default(schema, input);
    if (httpPart !== 'body') value = Value.Convert(schema, value);
    if (check.Check(value)) return { value };
    const first = check.Errors(value).First();
    const error: FastifySchemaValidationError = {
      keyword: first ? String(first.type) : 'type',
      instancePath: first?.path ?? '',
      schemaPath: '',
      params: {},
      message: first?.message ?? 'is invalid',
    };
    return { error: [error] };
  };
};
