import type { FastifyReply, FastifyRequest } from 'fastify';
import type { Config } from '../config.js';
import { AppError } from '../errors.js';
import type { Guards } from '../plugins/authenticate.js';
import { addressMatcher } from './cidr.js';

/**
 * An `onRequest` hook for operators' endpoints (`/health/detailed`,
 * `/metrics`): addresses in HEALTH_DETAILED_ALLOW pass; anyone else needs an
 * admin token. A request a proxy forwarded (X-Forwarded-For) while
 * TRUST_PROXY is off shows the proxy's address, not the client's: it never
 * counts as internal.
 */
export function internalOrAdmin(config: Pick<Config, 'healthDetailedAllow' | 'trustProxy'>, guards: Guards, what: string) {
  const internal = addressMatcher(config.healthDetailedAllow);
  return async function requireInternalOrAdmin(request: FastifyRequest, reply: FastifyReply): Promise<void> {
    const forwardedUntrusted = config.trustProxy === false && request.headers['x-forwarded-for'] !== undefined;
    if (internal(request.ip) && !forwardedUntrusted) return;
    if (!request.headers.authorization) throw new AppError('FORBIDDEN', `${what} is for admins (send a bearer token) or the internal network`);
    await guards.requireAdmin(request, reply);
  };
}
