import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import type { RouteOptions } from '../../app.js';
import { AppError } from '../../errors.js';
import { Envelope, ErrorResponse, ok } from '../../http/response.js';
import { actorOf } from '../auth/request-context.js';
import { CreateUserBody, ListUsersQuery, ResetPasswordBody, RoleBody, UpdateUserBody, UserPageSchema, UserParams, UserViewSchema } from './schema.js';

const Errors = { '4xx': ErrorResponse, '5xx': ErrorResponse };
const UserResponse = { 200: Envelope(UserViewSchema), ...Errors };

/** /api/admin/users: account administration, admins only. */
export const userAdminRoutes: FastifyPluginAsyncTypebox<RouteOptions> = (app, { deps, guards }) => {
  const { users } = deps;
  app.addHook('onRequest', guards.requireAdmin);
  app.addHook('onSend', async (_request, reply) => {
    void reply.header('cache-control', 'no-store');
  });

  app.get('/', { schema: { querystring: ListUsersQuery, response: { 200: Envelope(UserPageSchema), ...Errors } } }, async (request) => {
    return ok(await users.list(request.query));
  });

  app.post('/', { schema: { body: CreateUserBody, response: { 201: Envelope(UserViewSchema), ...Errors } } }, async (request, reply) => {
    const user = await users.create(actorOf(request), request.body);
    return reply.status(201).send(ok(user));
  });

  app.get('/:id', { schema: { params: UserParams, response: UserResponse } }, async (request) => {
    return ok(await users.get(request.params.id));
  });

  app.patch('/:id', { schema: { params: UserParams, body: UpdateUserBody, response: UserResponse } }, async (request) => {
    return ok(await users.update(actorOf(request), request.params.id, request.body));
  });

  app.post('/:id/disable', { schema: { params: UserParams, response: UserResponse } }, async (request) => {
    return ok(await users.disable(actorOf(request), request.params.id));
  });

  app.post('/:id/enable', { schema: { params: UserParams, response: UserResponse } }, async (request) => {
    return ok(await users.enable(actorOf(request), request.params.id));
  });

  app.post('/:id/reset-password', { schema: { params: UserParams, body: ResetPasswordBody, response: UserResponse } }, async (request) => {
    const { password, newPassword, revokeApiKeys } = request.body;
    if (password !== undefined && newPassword !== undefined && password !== newPassword) {
      throw new AppError('VALIDATION_FAILED', 'password and newPassword differ: send only one of them');
    }
    const chosen = password ?? newPassword;
    if (chosen === undefined) throw new AppError('VALIDATION_FAILED', 'Send the new password as password: the server does not generate one');
    return ok(await users.resetPassword(actorOf(request), request.params.id, chosen, { revokeApiKeys }));
  });

  const setRole = { schema: { params: UserParams, body: RoleBody, response: UserResponse } };
  app.patch('/:id/role', setRole, async (request) => ok(await users.setRole(actorOf(request), request.params.id, request.body.role)));
  app.post('/:id/role', setRole, async (request) => ok(await users.setRole(actorOf(request), request.params.id, request.body.role)));
  return Promise.resolve();
};
