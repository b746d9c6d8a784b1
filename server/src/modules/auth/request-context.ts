import type { FastifyRequest } from 'fastify';
import { principalOf } from '../../plugins/authenticate.js';
import type { Actor } from '../audit/audit-log.js';
import type { ClientInfo } from './auth-service.js';

/** Where the request came from, for services (which never see the request itself). */
export function clientOf(request: FastifyRequest): ClientInfo {
  const ua = request.headers['user-agent'];
  return { ip: request.ip, userAgent: typeof ua === 'string' ? ua : undefined };
}

/** The signed-in caller as the audit log records them. */
export function actorOf(request: FastifyRequest): Actor {
  const principal = principalOf(request);
  return { id: principal.userId, username: principal.username, ip: request.ip };
}
