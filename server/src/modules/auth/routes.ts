import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { Type } from '@sinclair/typebox';
import type { FastifyReply } from 'fastify';
import type { RouteOptions } from '../../app.js';
import { AppError } from '../../errors.js';
import { Envelope, ok } from '../../http/response.js';
import { principalOf } from '../../plugins/authenticate.js';
import type { Session } from './auth-service.js';
import { actorOf, clientOf } from './request-context.js';
import {
  ApiKeyParams,
  ApiKeySchema,
  AuthOptionsSchema,
  ChangePasswordBody,
  CreateApiKeyBody,
  CreatedApiKeySchema,
  Done,
  Errors,
  LoginBody,
  PasswordChanged,
  ProfileResponse,
  RegisterBody,
  SessionResponse,
} from './schema.js';

/** The refresh token's cookie: httpOnly, SameSite=Strict, sent only to /api/auth. */
export const REFRESH_COOKIE = 'llmchat_refresh';
const COOKIE_PATH = '/api/auth';

/** /api/auth: sign-in, sessions, the caller's profile and their personal API keys. */
export const authRoutes: FastifyPluginAsyncTypebox<RouteOptions> = (app, { deps, guards }) => {
  const { auth, apiKeys, config } = deps;
  // Tokens, keys and profiles must not sit in shared or browser caches.
  app.addHook('onSend', async (_request, reply) => {
    void reply.header('cache-control', 'no-store');
  });

  function setRefreshCookie(reply: FastifyReply, session: Session): void {
    void reply.setCookie(REFRESH_COOKIE, session.refreshToken, {
      httpOnly: true,
      sameSite: 'strict',
      secure: config.cookieSecure,
      path: COOKIE_PATH,
      expires: session.refreshExpiresAt,
    });
  }

  function clearRefreshCookie(reply: FastifyReply): void {
    void reply.clearCookie(REFRESH_COOKIE, { httpOnly: true, sameSite: 'strict', secure: config.cookieSecure, path: COOKIE_PATH });
  }

  function sessionBody(session: Session) {
    return { token: session.accessToken, accessToken: session.accessToken, expiresIn: session.expiresIn, user: session.user };
  }

  app.post('/login', { schema: { body: LoginBody, response: { 200: SessionResponse, ...Errors } } }, async (request, reply) => {
    const session = await auth.login(request.body, clientOf(request));
    setRefreshCookie(reply, session);
    return sessionBody(session);
  });

  app.post('/refresh', { schema: { response: { 200: SessionResponse, ...Errors } } }, async (request, reply) => {
    const token = request.cookies[REFRESH_COOKIE];
    if (!token) throw new AppError('REFRESH_TOKEN_INVALID', 'No session cookie: sign in again');
    try {
      const session = await auth.refresh(token, clientOf(request));
      setRefreshCookie(reply, session);
      return sessionBody(session);
    } catch (err) {
      if (err instanceof AppError && err.statusCode === 401) clearRefreshCookie(reply);
      throw err;
    }
  });

  app.post('/logout', { schema: { response: { 200: Done, ...Errors } } }, async (request, reply) => {
    await auth.logout(request.cookies[REFRESH_COOKIE], clientOf(request));
    clearRefreshCookie(reply);
    return ok({ done: true as const });
  });

  app.get('/profile', { onRequest: guards.requireUser, schema: { response: { 200: ProfileResponse, ...Errors } } }, async (request) => {
    return ok(await auth.profile(principalOf(request).userId));
  });

  app.post('/change-password', { onRequest: guards.requireUser, schema: { body: ChangePasswordBody, response: { 200: PasswordChanged, ...Errors } } }, async (request) => {
    const { oldPassword, currentPassword, newPassword, revokeApiKeys } = request.body;
    const current = currentPassword ?? oldPassword;
    if (current === undefined) throw new AppError('VALIDATION_FAILED', 'Send the current password as currentPassword (or oldPassword)');
    if (oldPassword !== undefined && currentPassword !== undefined && oldPassword !== currentPassword) {
      throw new AppError('VALIDATION_FAILED', 'currentPassword and oldPassword differ: send only one of them');
    }
    const changed = await auth.changePassword(principalOf(request), { currentPassword: current, newPassword, revokeApiKeys: revokeApiKeys ?? true }, request.cookies[REFRESH_COOKIE], clientOf(request));
    return ok({ done: true as const, ...changed });
  });

  /** What the sign-in page may offer before anyone is signed in. */
  app.get('/options', { schema: { response: { 200: Envelope(AuthOptionsSchema), ...Errors } } }, async () => {
    return ok({ registrationOpen: config.openRegistration });
  });

  app.post('/register', { schema: { body: RegisterBody, response: { 201: SessionResponse, ...Errors } } }, async (request, reply) => {
    const session = await auth.register(request.body, clientOf(request));
    setRefreshCookie(reply, session);
    return reply.status(201).send(sessionBody(session));
  });

  app.get('/api-keys', { onRequest: guards.requireUser, schema: { response: { 200: Envelope(Type.Array(ApiKeySchema)), ...Errors } } }, async (request) => {
    return ok(await apiKeys.list(principalOf(request).userId));
  });

  app.post('/api-keys', { onRequest: guards.requireScope('keys'), schema: { body: CreateApiKeyBody, response: { 201: Envelope(CreatedApiKeySchema), ...Errors } } }, async (request, reply) => {
    const created = await apiKeys.create(actorOf(request), principalOf(request), request.body);
    return reply.status(201).send(ok(created));
  });

  app.delete('/api-keys/:id', { onRequest: guards.requireScope('keys'), schema: { params: ApiKeyParams, response: { 200: Envelope(ApiKeySchema), ...Errors } } }, async (request) => {
    return ok(await apiKeys.revoke(actorOf(request), request.params.id));
  });
  return Promise.resolve();
};
