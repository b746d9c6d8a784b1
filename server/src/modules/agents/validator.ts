import type { TSchema } from '@sinclair/typebox';
import { TypeCompiler } from '@sinclair/typebox/compiler';
import { Value } from '@sinclair/typebox/value';
import type { FastifySchemaCompiler, FastifySchemaValidationError } from 'fastify';
import { schemaErrors } from './agents-file.js';

/**
 * Request validation for the agents routes. Bodies are checked exactly as
 * declared: the app-wide Ajv would coerce `123` into `"123"`, `["x"]` into
 * `"x"` and a `null` meant to clear a field into `""` or `0`. Query strings
 * and path params (text on the wire) are converted to the declared types.
 * Every problem is reported, each with its JSON pointer.
 */
export const agentsValidatorCompiler: FastifySchemaCompiler<TSchema> = ({ schema, httpPart }) => {
  const check = TypeCompiler.Compile(schema);
  return (input: unknown) => {
    let value = Value.Default(schema, input);
    if (httpPart !== 'body') value = Value.Convert(schema, value);
    if (check.Check(value)) return { value };
    const errors: FastifySchemaValidationError[] = schemaErrors(schema, value, 20).map((e) => ({
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
