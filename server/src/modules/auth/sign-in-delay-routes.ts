import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { Type } from '@sinclair/typebox';
import type { RouteOptions } from '../../app.js';
import { Envelope, ErrorResponse, ok } from '../../http/response.js';
import { UserParams } from '../users/schema.js';
import { actorOf } from './request-context.js';

const SignInDelaySchema = Type.Object({
  userId: Type.String(),
  username: Type.String(),
  recentFailures: Type.Integer({ description: 'Failed sign-ins counted against the hourly cap (this hour and the last)' }),
  limitPerHour: Type.Integer({ description: 'LOGIN_FAILURES_PER_ACCOUNT_PER_HOUR' }),
  refusedForSeconds: Type.Integer({ description: 'Seconds until the hourly cap lets sign-ins through again; 0 when it does now' }),
});
const Errors = { '4xx': ErrorResponse, '5xx': ErrorResponse };
const Response = { 200: Envelope(SignInDelaySchema), ...Errors };

/** /api/admin/users/:id/sign-in-delay: an account's sign-in delays, and clearing them (admins only). */
export const signInDelayRoutes: FastifyPluginAsyncTypebox<RouteOptions> = (app, { deps, guards }) => {
  const { signInDelays } = deps;
  app.addHook('onRequest', guards.requireAdmin);

  app.get('/:id/sign-in-delay', { schema: { params: UserParams, response: Response } }, async (request) => {
    return ok(await signInDelays.status(request.params.id));
  });

  app.delete('/:id/sign-in-delay', { schema: { params: UserParams, response: Response } }, async (request) => {
    return ok(await signInDelays.clear(actorOf(request), request.params.id));
  });
  return Promise.resolve();
};
