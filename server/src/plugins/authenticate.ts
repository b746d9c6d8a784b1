import { SpanStatusCode, type Tracer } from '@opentelemetry/api';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import type { Role } from '../db/schema.js';
import { AppError } from '../errors.js';
import type { ApiKeyScope } from '../modules/auth/scopes.js';
import { bindToRequestLog } from './request-tracing.js';

/** Who is calling. Domain code receives this, never the request. */
export interface Principal {
  userId: string;
  username: string;
  role: Role;
  /** How the caller proved it: an access token or a personal API key. */
  via: 'token' | 'api-key';
  /** What the credential may do: every scope for a session, the key's own for an API key. */
  scopes: readonly ApiKeyScope[];
}

/** Whether the caller may act as an admin: the role, and (for an API key) the `admin` scope. */
export function actsAsAdmin(principal: Principal | null): boolean {
  return principal?.role === 'admin' && principal.scopes.includes('admin');
}

/** Turns a bearer credential into a principal, or throws a 401/403 AppError. */
export interface Authenticator {
  authenticate(bearer: string): Promise<Principal>;
}

declare module 'fastify' {
  interface FastifyRequest {
    principal: Principal | null;
  }
}

function bearerOf(request: FastifyRequest): string | undefined {
  const header = request.headers.authorization;
  if (typeof header !== 'string') return undefined;
  const m = /^Bearer\s+(\S+)\s*$/i.exec(header);
  return m?.[1];
}

/** The credential of `x-api-key`, where Anthropic's SDKs send it. */
function xApiKeyOf(request: FastifyRequest): string | undefined {
  const header = request.headers['x-api-key'];
  const value = typeof header === 'string' ? header.trim() : undefined;
  return value === undefined || value === '' || /\s/.test(value) ? undefined : value;
}

/**
 * Decorates requests with `principal` and returns the guards routes use as
 * `onRequest` hooks: `requireUser`, `requireAdmin` and `requireScope(scope)`.
 */
export function registerAuthentication(app: FastifyInstance, authenticator: Authenticator, tracer?: Tracer) {
  app.decorateRequest('principal', null);

  /** authenticate() inside an `authenticate` span of the request's trace. */
  async function tracedAuthenticate(bearer: string, parent: NonNullable<FastifyRequest['traceContext']>, spans: Tracer): Promise<Principal> {
    const span = spans.startSpan('authenticate', undefined, parent);
    try {
      const principal = await authenticator.authenticate(bearer);
      span.setAttribute('llmchat.auth.via', principal.via);
      return principal;
    } catch (err) {
      span.setAttribute('error.type', err instanceof AppError ? err.code : 'INTERNAL');
      span.setStatus({ code: SpanStatusCode.ERROR });
      throw err;
    } finally {
      span.end();
    }
  }

  async function requireUser(request: FastifyRequest, _reply: FastifyReply): Promise<void> {
    await authenticateWith(request, bearerOf(request), 'Sign in first: send Authorization: Bearer <access token>');
  }

  /** requireUser that also takes the credential from `x-api-key`, as Anthropic's SDKs send it (`/v1/messages`). */
  async function requireUserOrXApiKey(request: FastifyRequest, _reply: FastifyReply): Promise<void> {
    await authenticateWith(request, bearerOf(request) ?? xApiKeyOf(request), 'Send your API key as x-api-key: <key> or Authorization: Bearer <key>');
  }

  async function authenticateWith(request: FastifyRequest, bearer: string | undefined, missing: string): Promise<void> {
    if (!bearer) throw new AppError('UNAUTHENTICATED', missing);
    const parent = request.traceContext;
    const principal = parent === undefined || tracer === undefined ? await authenticator.authenticate(bearer) : await tracedAuthenticate(bearer, parent, tracer);
    request.principal = principal;
    // Bound once on the request's own logger: every later line of this request (and of its turn) carries it.
    bindToRequestLog(request, { userId: principal.userId });
  }

  async function requireAdmin(request: FastifyRequest, reply: FastifyReply): Promise<void> {
    await requireUser(request, reply);
    if (request.principal?.role !== 'admin') throw new AppError('FORBIDDEN', 'This needs the admin role');
    if (!actsAsAdmin(request.principal)) throw new AppError('INSUFFICIENT_SCOPE', 'This API key lacks the admin scope: use a key created with it, or sign in');
  }

  /** A signed-in caller whose credential holds `scope` (sessions hold every scope). */
  function requireScope(scope: ApiKeyScope) {
    return async function requireScopeHook(request: FastifyRequest, reply: FastifyReply): Promise<void> {
      await requireUser(request, reply);
      if (!request.principal?.scopes.includes(scope)) throw new AppError('INSUFFICIENT_SCOPE', `This API key lacks the ${scope} scope: use a key created with it, or sign in`);
    };
  }

  return { requireUser, requireUserOrXApiKey, requireAdmin, requireScope };
}

export type Guards = ReturnType<typeof registerAuthentication>;

/** The principal of a request that passed `requireUser`. */
export function principalOf(request: FastifyRequest): Principal {
  if (!request.principal) throw new AppError('UNAUTHENTICATED', 'Sign in first');
  return request.principal;
}
