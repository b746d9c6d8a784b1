import { Type } from '@sinclair/typebox';
import Fastify from 'fastify';
import { describe, expect, it } from 'vitest';
import { unboundedNumbers, validatorCompiler } from './validation.js';

describe('request schemas', () => {
  it('name every number declared without both bounds', () => {
    const schema = Type.Object({
      before: Type.Optional(Type.Integer({ minimum: 1 })),
      limit: Type.Integer({ minimum: 1, maximum: 100 }),
      nested: Type.Array(Type.Union([Type.Number({ exclusiveMinimum: 0, exclusiveMaximum: 1 }), Type.Number()])),
    });
    expect(unboundedNumbers(schema)).toEqual(['/properties/before', '/properties/nested/items/anyOf/1']);
  });

  it('stop a route that takes an unbounded number from booting, naming the route and the field', async () => {
    const app = Fastify();
    app.setValidatorCompiler(validatorCompiler);
    app.get('/items', { schema: { querystring: Type.Object({ before: Type.Integer({ minimum: 1 }) }) } }, async () => ({}));
    await expect(app.ready()).rejects.toThrow(/GET \/items: the querystring schema declares a number without minimum and maximum at \/properties\/before/);
    await app.close();
  });

  it('refuse a number past its bound as a query string converts it, before any handler runs', async () => {
    const app = Fastify();
    app.setValidatorCompiler(validatorCompiler);
    let reached = 0;
    app.get('/items', { schema: { querystring: Type.Object({ before: Type.Integer({ minimum: 1, maximum: Number.MAX_SAFE_INTEGER }) }) } }, async () => ({ reached: ++reached }));
    for (const before of ['100000000000000000000000', '9223372036854775808', '9007199254740992']) {
      expect((await app.inject({ url: `/items?before=${before}` })).statusCode, before).toBe(400);
    }
    expect((await app.inject({ url: '/items?before=9007199254740991' })).statusCode).toBe(200);
    expect(reached).toBe(1);
    await app.close();
  });
});
