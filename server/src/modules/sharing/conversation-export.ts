import { questionAsText, readableQuestion } from '../attachments/stored-question.js';
import type { ConversationMessage } from './share-repository.js';

/** A conversation as it is exported: the session and its messages, with each answer's agent by name. */
export interface ConversationExport {
  session: { id: string; title: string; agentId: string; agentName: string; createdAt: Date; updatedAt: Date };
  messages: ConversationMessage[];
  agentName: (agentId: string | null) => string;
  exportedAt: Date;
}

/** A question in the JSON export: its text as `content`, and `attachments` (kind, name, URL) when it has any. */
function questionJson(stored: string): { content: string; attachments?: ReturnType<typeof readableQuestion>['attachments'] } {
  const { text, attachments } = readableQuestion(stored);
  return attachments.length === 0 ? { content: text } : { content: text, attachments };
}

/** JSON export: a versioned format, every message with its role, status, agent and usage. */
export function conversationJson(c: ConversationExport): string {
  return JSON.stringify(
    {
      format: 'llmchat.conversation.v1',
      exportedAt: c.exportedAt.toISOString(),
      session: { ...c.session, createdAt: c.session.createdAt.toISOString(), updatedAt: c.session.updatedAt.toISOString() },
      messages: c.messages.map((m) => ({
        role: m.role,
        ...(m.role === 'user' ? questionJson(m.content) : { content: m.content }),
        reasoning: m.reasoning,
        status: m.status,
        agentId: m.role === 'assistant' ? m.agent_id : null,
        agentName: m.role === 'assistant' ? c.agentName(m.agent_id) : null,
        model: m.model,
        usage: m.total_tokens === null ? null : { promptTokens: m.prompt_tokens, completionTokens: m.completion_tokens, totalTokens: m.total_tokens },
        createdAt: m.created_at.toISOString(),
        completedAt: m.completed_at?.toISOString() ?? null,
      })),
    },
    null,
    2,
  );
}

/** Markdown export: a heading per message naming who wrote it; answers keep their own markdown. */
export function conversationMarkdown(c: ConversationExport): string {
  const lines = [`# ${c.session.title.trim() || 'Untitled conversation'}`, '', `- Agent: ${c.session.agentName}`, `- Created: ${c.session.createdAt.toISOString()}`, `- Exported: ${c.exportedAt.toISOString()}`, ''];
  for (const m of c.messages) {
    const who = m.role === 'user' ? 'You' : m.role === 'system' ? 'System' : c.agentName(m.agent_id);
    const note = m.status === 'stopped' ? ' (stopped)' : m.status === 'error' ? ' (failed)' : m.status === 'streaming' ? ' (still being written)' : '';
    lines.push(`## ${who}${note}`, '', `_${m.created_at.toISOString()}_`, '', m.role === 'user' ? questionAsText(m.content) : m.content, '');
  }
  return lines.join('\n');
}

/** A file name for the download: the title's letters and digits (any script), else "conversation". */
export function exportFileName(title: string, extension: 'md' | 'json'): string {
  const base = title.normalize('NFC').replace(/[^\p{L}\p{N}]+/gu, '-').replace(/^-+|-+$/g, '').slice(0, 60);
  return `${base || 'conversation'}.${extension}`;
}
