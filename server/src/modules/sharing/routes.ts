import type { FastifyInstance } from 'fastify';
import type { RouteOptions } from '../../app.js';
import { ok } from '../../http/response.js';
import { principalOf } from '../../plugins/authenticate.js';
import { actorOf } from '../auth/request-context.js';
import type { ShareLinkRow } from './share-repository.js';
import { ExportQuery, ExportResponses, SessionParams, ShareCreatedResponses, ShareListResponses, ShareParams, ShareResponses, SharedViewResponses, TokenParams } from './schema.js';

function linkJson(l: ShareLinkRow) {
  return { id: l.id, createdAt: l.created_at.toISOString(), revokedAt: l.revoked_at?.toISOString() ?? null };
}

/** The web app's page for a link (web/src/features/sharing). */
export const sharePagePath = (token: string) => `/s/${token}`;

/** `/api/chat-sessions/:id/export` and `/shares`: the owner's export and links. */
export async function conversationSharingRoutes(app: FastifyInstance, { deps, guards }: RouteOptions): Promise<void> {
  const { sharing } = deps;
  app.addHook('onRequest', guards.requireUser);

  app.get('/:id/export', { schema: { params: SessionParams, querystring: ExportQuery, response: ExportResponses } }, async (request, reply) => {
    const { id } = request.params as { id: string };
    const { format } = request.query as { format: 'markdown' | 'json' };
    const file = await sharing.exportConversation(principalOf(request), id, format);
    const ascii = file.fileName.replace(/[^\x20-\x7e]/g, '_').replace(/["\\]/g, '_');
    return reply
      .type(file.contentType)
      .header('content-disposition', `attachment; filename="${ascii}"; filename*=UTF-8''${encodeURIComponent(file.fileName)}`)
      .send(file.body);
  });

  app.post('/:id/shares', { schema: { params: SessionParams, response: ShareCreatedResponses } }, async (request, reply) => {
    const { id } = request.params as { id: string };
    const link = await sharing.createLink(actorOf(request), id);
    return reply.status(201).send(ok({ ...linkJson(link), token: link.token, path: sharePagePath(link.token) }));
  });

  app.get('/:id/shares', { schema: { params: SessionParams, response: ShareListResponses } }, async (request) => {
    const { id } = request.params as { id: string };
    return ok((await sharing.listLinks(principalOf(request), id)).map(linkJson));
  });

  app.delete('/:id/shares/:shareId', { schema: { params: ShareParams, response: ShareResponses } }, async (request) => {
    const { id, shareId } = request.params as { id: string; shareId: string };
    return ok(linkJson(await sharing.revokeLink(actorOf(request), id, shareId)));
  });
}

/**
 * `GET /api/shared/:token`: a conversation through its link. Signed in
 * (any account) unless an admin set SHARE_LINKS_PUBLIC. Never cached (the
 * app's no-store) and never indexed.
 */
export async function sharedViewRoutes(app: FastifyInstance, { deps, guards }: RouteOptions): Promise<void> {
  const { sharing } = deps;
  if (!sharing.publicLinks) app.addHook('onRequest', guards.requireUser);
  app.addHook('onSend', async (_request, reply) => {
    reply.header('x-robots-tag', 'noindex, nofollow');
  });

  app.get('/:token', { schema: { params: TokenParams, response: SharedViewResponses } }, async (request) => {
    const { token } = request.params as { token: string };
    const shared = await sharing.view(token);
    return ok({ ...shared, sharedAt: shared.sharedAt.toISOString(), messages: shared.messages.map((m) => ({ ...m, createdAt: m.createdAt.toISOString() })) });
  });
}
