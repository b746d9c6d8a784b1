import { AppError } from '../../errors.js';
import type { Principal } from '../../plugins/authenticate.js';
import type { AgentsService } from '../agents/agents-service.js';
import type { ChatRepository } from './chat-repository.js';

/** Sessions and their history. Everything is scoped to the principal: nobody else's session is visible, admins included. */
export function createSessionService(deps: { repo: ChatRepository; agents: AgentsService }) {
  const { repo } = deps;

  async function owned(principal: Principal, sessionId: string) {
    const session = await repo.findSession(sessionId, principal.userId);
    if (!session) throw new AppError('SESSION_NOT_FOUND', 'The chat session does not exist or is not yours');
    return session;
  }

  return {
    /** The chat list: without `/v1` calls' hidden sessions unless `hidden` asks for them. */
    list(principal: Principal, options: { agentId?: string | undefined; archived?: 'only' | 'exclude' | 'include' | undefined; hidden?: 'only' | 'exclude' | 'include' | undefined; page: number; pageSize: number }) {
      return repo.listSessions({
        userId: principal.userId,
        agentId: options.agentId,
        archived: options.archived ?? 'exclude',
        hidden: options.hidden ?? 'exclude',
        limit: options.pageSize,
        offset: (options.page - 1) * options.pageSize,
      });
    },

    async create(principal: Principal, agentId: string, title: string | undefined) {
      const resolved = deps.agents.getActive(agentId);
      return repo.createSession(principal.userId, resolved.agent.id, title?.trim() ?? '');
    },

    /** A page of the conversation as it is shown now; each message with more than one version lists them all (`versions`, in order). */
    async get(principal: Principal, sessionId: string, options: { limit: number; beforeSeq?: number | undefined }) {
      const session = await owned(principal, sessionId);
      const [page, groups] = await Promise.all([repo.listMessages(sessionId, principal.userId, options), repo.versionsOf(sessionId, principal.userId)]);
      const messages = page.messages.map((m) => ({ ...m, versions: groups.get(m.version_group ?? m.id) ?? null }));
      return { session, messages, hasMore: page.hasMore };
    },

    /** Shows another version of a message (answer versions): what the conversation shows from there on follows it. */
    async showVersion(principal: Principal, sessionId: string, messageId: string): Promise<{ sessionId: string; messageId: string }> {
      const outcome = await repo.showVersion(sessionId, principal.userId, messageId);
      if (outcome === 'no-session') throw new AppError('SESSION_NOT_FOUND', 'The chat session does not exist or is not yours');
      if (outcome === 'not-a-version') throw new AppError('MESSAGE_NOT_FOUND', 'That message is not a version in this conversation');
      if (outcome === 'running') throw new AppError('GENERATION_RUNNING', 'An answer is being generated in this conversation; wait for it or stop it first');
      return { sessionId, messageId };
    },

    async rename(principal: Principal, sessionId: string, title: string) {
      const session = await repo.renameSession(sessionId, principal.userId, title.trim());
      if (!session) throw new AppError('SESSION_NOT_FOUND', 'The chat session does not exist or is not yours');
      return session;
    },

    /** The agent that answers the session's next turns (issue 18); earlier answers keep the agent that wrote them. */
    async switchAgent(principal: Principal, sessionId: string, agentId: string) {
      const resolved = deps.agents.getActive(agentId);
      const session = await repo.setSessionAgent(sessionId, principal.userId, resolved.agent.id);
      if (!session) throw new AppError('SESSION_NOT_FOUND', 'The chat session does not exist or is not yours');
      return session;
    },

    async setArchived(principal: Principal, sessionId: string, archived: boolean) {
      const session = await repo.setArchived(sessionId, principal.userId, archived);
      if (!session) throw new AppError('SESSION_NOT_FOUND', 'The chat session does not exist or is not yours');
      return session;
    },

    async remove(principal: Principal, sessionId: string): Promise<void> {
      if (!(await repo.deleteSession(sessionId, principal.userId))) throw new AppError('SESSION_NOT_FOUND', 'The chat session does not exist or is not yours');
    },

    removeAllOfAgent(principal: Principal, agentId: string): Promise<number> {
      return repo.deleteSessionsOfAgent(principal.userId, agentId);
    },

    search(principal: Principal, q: string, limit: number) {
      return repo.search(principal.userId, q, limit);
    },
  };
}

export type SessionService = ReturnType<typeof createSessionService>;
