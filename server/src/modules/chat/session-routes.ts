import { DeletedResponses, SearchResponses, SessionCreatedResponses, SessionListResponses, SessionMessagesResponses, SessionResponses, VersionShownResponses } from './response-schema.js';
import type { FastifyInstance } from 'fastify';
import type { RouteOptions } from '../../app.js';
import { ok } from '../../http/response.js';
import { actsAsAdmin, principalOf } from '../../plugins/authenticate.js';
import { errorForViewer } from '../resilience/failure-policy.js';
import type { SessionSummary } from './chat-repository.js';
import { AgentSwitchBody, SearchQuery, SessionCreateBody, SessionListQuery, SessionMessagesQuery, SessionParams, TitleBody, VersionBody } from './schema.js';

function sessionJson(s: SessionSummary) {
  return { ...s, createdAt: s.createdAt.toISOString(), updatedAt: s.updatedAt.toISOString() };
}

/** `/api/chat-sessions`: the user's own sessions. Admins see only their own here too. */
export async function sessionRoutes(app: FastifyInstance, { deps, guards }: RouteOptions): Promise<void> {
  const { sessions } = deps.chat;
  app.addHook('onRequest', guards.requireUser);

  app.get('/', { schema: { querystring: SessionListQuery, response: SessionListResponses } }, async (request) => {
    const q = request.query as { agentId?: string; archived?: 'exclude' | 'only' | 'include'; hidden?: 'exclude' | 'only' | 'include'; page?: number; pageSize?: number };
    const page = q.page ?? 1;
    const pageSize = q.pageSize ?? 20;
    const result = await sessions.list(principalOf(request), { agentId: q.agentId, archived: q.archived, hidden: q.hidden, page, pageSize });
    return ok({ items: result.items.map(sessionJson), total: result.total, page, pageSize });
  });

  app.post('/', { schema: { body: SessionCreateBody, response: SessionCreatedResponses } }, async (request, reply) => {
    const body = request.body as { agentId: string; title?: string };
    const session = await sessions.create(principalOf(request), body.agentId, body.title);
    return reply.status(201).send(ok(sessionJson(session)));
  });

  app.get('/search', { schema: { querystring: SearchQuery, response: SearchResponses } }, async (request) => {
    const q = request.query as { q: string; limit?: number };
    const hits = await sessions.search(principalOf(request), q.q, q.limit ?? 20);
    return ok(hits.map((h) => ({ ...h, updatedAt: h.updatedAt.toISOString() })));
  });

  app.get('/:id', { schema: { params: SessionParams, querystring: SessionMessagesQuery, response: SessionMessagesResponses } }, async (request) => {
    const { id } = request.params as { id: string };
    const q = request.query as { limit?: number; before?: number };
    const principal = principalOf(request);
    const { session, messages, hasMore } = await sessions.get(principal, id, { limit: q.limit ?? 100, beforeSeq: q.before });
    return ok({
      id: session.id,
      agentId: session.agent_id,
      title: session.title,
      messageCount: session.message_count,
      archived: session.archived_at !== null,
      hidden: session.hidden,
      createdAt: session.created_at.toISOString(),
      updatedAt: session.updated_at.toISOString(),
      messages: messages.map((m) => ({
        id: m.id,
        seq: m.seq,
        role: m.role,
        content: m.content,
        reasoning: m.reasoning,
        status: m.status,
        agentId: m.agent_id,
        error: m.error_code ? errorForViewer({ code: m.error_code, message: m.error_message ?? 'The answer failed' }, actsAsAdmin(principal)) : null,
        provider: m.provider,
        model: m.model,
        usage: m.total_tokens === null ? null : { promptTokens: m.prompt_tokens, completionTokens: m.completion_tokens, totalTokens: m.total_tokens },
        firstTokenMs: m.first_token_ms,
        totalMs: m.total_ms,
        interactive: m.interactive,
        feedback: m.rating ? { rating: m.rating, comment: m.comment } : null,
        createdAt: m.created_at.toISOString(),
        completedAt: m.completed_at?.toISOString() ?? null,
        versions: m.versions,
      })),
      hasMore,
    });
  });

  app.patch('/:id/title', { schema: { params: SessionParams, body: TitleBody, response: SessionResponses } }, async (request) => {
    const { id } = request.params as { id: string };
    const { title } = request.body as { title: string };
    return ok(sessionJson(await sessions.rename(principalOf(request), id, title)));
  });

  app.patch('/:id/agent', { schema: { params: SessionParams, body: AgentSwitchBody, response: SessionResponses } }, async (request) => {
    const { id } = request.params as { id: string };
    const { agentId } = request.body as { agentId: string };
    return ok(sessionJson(await sessions.switchAgent(principalOf(request), id, agentId)));
  });

  /** Answer versions: show this version of its message; what the conversation shows from there on follows it. */
  app.post('/:id/versions', { schema: { params: SessionParams, body: VersionBody, response: VersionShownResponses } }, async (request) => {
    const { id } = request.params as { id: string };
    const { messageId } = request.body as { messageId: string };
    return ok(await sessions.showVersion(principalOf(request), id, messageId));
  });

  app.post('/:id/archive', { schema: { params: SessionParams, response: SessionResponses } }, async (request) => {
    const { id } = request.params as { id: string };
    return ok(sessionJson(await sessions.setArchived(principalOf(request), id, true)));
  });

  app.post('/:id/unarchive', { schema: { params: SessionParams, response: SessionResponses } }, async (request) => {
    const { id } = request.params as { id: string };
    return ok(sessionJson(await sessions.setArchived(principalOf(request), id, false)));
  });

  app.delete('/:id', { schema: { params: SessionParams, response: DeletedResponses } }, async (request) => {
    const { id } = request.params as { id: string };
    await sessions.remove(principalOf(request), id);
    return ok(null);
  });
}
