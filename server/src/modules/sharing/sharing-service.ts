import crypto from 'node:crypto';
import type { DatabaseHandle } from '../../db/database.js';
import { AppError } from '../../errors.js';
import type { Principal } from '../../plugins/authenticate.js';
import type { AgentsService } from '../agents/agents-service.js';
import { AuditActions, type Actor, type AuditLog } from '../audit/audit-log.js';
import { conversationJson, conversationMarkdown, exportFileName } from './conversation-export.js';
import { createShareRepository } from './share-repository.js';
import { questionAsText } from '../attachments/stored-question.js';

/** 256 random bits per link, base64url: not guessable, and fits a URL. */
const TOKEN_BYTES = 32;
const TOKEN_PATTERN = /^[A-Za-z0-9_-]{43}$/;

function hashToken(token: string): string {
  return crypto.createHash('sha256').update(token).digest('hex');
}

const notYours = () => new AppError('SESSION_NOT_FOUND', 'The chat session does not exist or is not yours');

/**
 * Export of a conversation (Markdown, JSON) and its read-only share links.
 * A link's token is shown once, when it is made; only its hash is stored.
 * Someone else's session, link or token is a 404 like one that does not exist.
 * Making and revoking a link are audited (who, from where, which
 * conversation): a link lets others read a conversation.
 */
export function createSharingService(deps: { database: DatabaseHandle; agents: AgentsService; audit: AuditLog; publicLinks: boolean }) {
  const repo = createShareRepository(deps.database);
  const agentName = (agentId: string | null) => (agentId ? (deps.agents.find(agentId)?.agent.name ?? agentId) : '');

  return {
    /** Share links open without signing in only when an admin allowed it (SHARE_LINKS_PUBLIC). */
    publicLinks: deps.publicLinks,

    async exportConversation(principal: Principal, sessionId: string, format: 'markdown' | 'json'): Promise<{ body: string; fileName: string; contentType: string }> {
      const session = await repo.ownSession(sessionId, principal.userId);
      if (!session) throw notYours();
      const messages = await repo.allMessages(sessionId, principal.userId);
      const conversation = {
        session: { id: session.id, title: session.title, agentId: session.agent_id, agentName: agentName(session.agent_id), createdAt: session.created_at, updatedAt: session.updated_at },
        messages,
        agentName,
        exportedAt: new Date(),
      };
      return format === 'json'
        ? { body: conversationJson(conversation), fileName: exportFileName(session.title, 'json'), contentType: 'application/json; charset=utf-8' }
        : { body: conversationMarkdown(conversation), fileName: exportFileName(session.title, 'md'), contentType: 'text/markdown; charset=utf-8' };
    },

    async createLink(actor: Actor, sessionId: string) {
      const token = crypto.randomBytes(TOKEN_BYTES).toString('base64url');
      const link = await repo.create(sessionId, actor.id, hashToken(token));
      if (!link) throw notYours();
      await deps.audit.record({ actorId: actor.id, actorUsername: actor.username, ip: actor.ip, action: AuditActions.shareCreate, targetType: 'share_link', targetId: link.id, detail: { sessionId, public: deps.publicLinks } });
      return { ...link, token };
    },

    async listLinks(principal: Principal, sessionId: string) {
      if (!(await repo.ownSession(sessionId, principal.userId))) throw notYours();
      return repo.list(sessionId, principal.userId);
    },

    async revokeLink(actor: Actor, sessionId: string, shareId: string) {
      const link = await repo.revoke(shareId, sessionId, actor.id);
      if (!link) throw new AppError('SHARE_NOT_FOUND', 'No such share link on this conversation');
      const { revokedNow, ...revoked } = link;
      // Revoking it again changes nothing, so it is not audited again.
      if (!revokedNow) return revoked;
      await deps.audit.record({ actorId: actor.id, actorUsername: actor.username, ip: actor.ip, action: AuditActions.shareRevoke, targetType: 'share_link', targetId: link.id, detail: { sessionId } });
      return revoked;
    },

    /** What a link shows: the title and the finished questions and answers, nothing about the owner. */
    async view(token: string) {
      const shared = TOKEN_PATTERN.test(token) ? await repo.shared(hashToken(token)) : undefined;
      if (!shared) throw new AppError('SHARE_NOT_FOUND', 'This share link does not exist or was revoked');
      return {
        title: shared.title,
        sharedAt: shared.sharedAt,
        // A question's attachments are its owner's alone: the link names them, never serves them.
        messages: shared.messages.map((m) => ({ role: m.role, content: m.role === 'user' ? questionAsText(m.content) : m.content, status: m.status, agentName: m.role === 'assistant' ? agentName(m.agent_id) : null, createdAt: m.created_at })),
      };
    },
  };
}

export type SharingService = ReturnType<typeof createSharingService>;
