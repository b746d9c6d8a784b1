import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import type { Role } from '../db/schema.js';
import { AppError } from '../errors.js';
import type { ApiKeyScope } from '../modules/auth/scopes.js';

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

/**
 * Decorates requests with `principal` and returns the guards routes use as
 * `onRequest` hooks: `requireUser`, `requireAdmin` and `requireScope(scope)`.
 */
export function registerAuthentication(app: FastifyInstance, authenticator: Authenticator) {
  app.decorateRequest('principal', null);

  async function requireUser(request: FastifyRequest, _reply: FastifyReply): Promise<void> {
    const bearer = bearerOf(request);
    if (!bearer) throw new AppError('UNAUTHENTICATED', 'Sign in first: send Authorization: Bearer <access token>');
    request.principal = await authenticator.authenticate(bearer);
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

  return { requireUser, requireAdmin, requireScope };
}

export type Guards = ReturnType<typeof registerAuthentication>;

/** The principal of a request that passed `requireUser`. */
export function principalOf(request: FastifyRequest): Principal {
  if (!request.principal) throw new AppError('UNAUTHENTICATED', 'Sign in first');
  return request.principal;
}
