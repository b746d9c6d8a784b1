import type { SseEvent } from '../../api/sse';
import type { MessageStatus, StoredMessage } from '../../api/types';

/** The platform's events as the chat view uses them (server/src/modules/chat/generation.ts). */
export type TurnEvent =
  | { type: 'start'; messageId: string; userMessageId: string | undefined; sessionId: string }
  | { type: 'chunk'; content: string }
  | { type: 'reasoning'; content: string }
  | { type: 'status'; status: string; moduleName: string }
  | { type: 'interactive'; data: unknown }
  | { type: 'error'; code: string; message: string }
  | { type: 'end'; status: Exclude<MessageStatus, 'streaming'>; messageId: string; sessionId: string }
  /** The answer starts again (an upstream failed mid-answer, or another instance took it over): drop its text so far. */
  | { type: 'reset' }
  | { type: 'other' };

function str(v: unknown, fallback = ''): string {
  return typeof v === 'string' ? v : fallback;
}

/** Reads one SSE frame into a TurnEvent; frames it does not know become `other`. */
export function toTurnEvent(e: SseEvent): TurnEvent {
  let data: Record<string, unknown> = {};
  try {
    const parsed = JSON.parse(e.data) as unknown;
    if (parsed && typeof parsed === 'object') data = parsed as Record<string, unknown>;
  } catch {
    return { type: 'other' };
  }
  switch (e.event) {
    case 'start':
      return { type: 'start', messageId: str(data.messageId), userMessageId: typeof data.userMessageId === 'string' ? data.userMessageId : undefined, sessionId: str(data.sessionId) };
    case 'chunk':
      return { type: 'chunk', content: str(data.content) };
    case 'reasoning':
      return { type: 'reasoning', content: str(data.content) };
    case 'status':
      return { type: 'status', status: str(data.status), moduleName: str(data.moduleName) };
    case 'interactive':
      return { type: 'interactive', data };
    case 'error':
      return { type: 'error', code: str(data.code, 'UPSTREAM_ERROR'), message: str(data.message) };
    case 'reset':
      return { type: 'reset' };
    case 'end': {
      const status = data.status;
      return {
        type: 'end',
        status: status === 'complete' || status === 'stopped' || status === 'error' ? status : 'complete',
        messageId: str(data.messageId),
        sessionId: str(data.sessionId),
      };
    }
    default:
      return { type: 'other' };
  }
}

/** A message as the chat view shows it: the stored fields plus what only a live turn has. */
export interface UiMessage {
  id: string;
  role: 'user' | 'assistant' | 'system';
  content: string;
  reasoning: string;
  status: MessageStatus;
  error: { code: string; message: string } | null;
  feedback: { rating: 'up' | 'down'; comment: string | null } | null;
  interactive: unknown;
  /** The last flow-node status of a live FastGPT turn. */
  flow: { moduleName: string; status: string } | null;
  /** The agent that wrote an answer; a live answer takes its turn's. */
  agentId?: string | null;
  createdAt: string;
  /** Every version of this message, oldest first, when it has more than one (regenerated or edited). */
  versions?: string[] | null;
  /**
   * Set on an answer resumed after a reload: it shows the stored text until
   * the first replayed event arrives, which rebuilds it from the start.
   */
  replay?: boolean;
}

export function fromStored(m: StoredMessage): UiMessage {
  return {
    id: m.id,
    role: m.role,
    content: m.content,
    reasoning: m.reasoning ?? '',
    status: m.status,
    error: m.error ? { code: m.error.code, message: m.error.message ?? '' } : null,
    feedback: m.feedback,
    interactive: m.interactive ?? null,
    flow: null,
    agentId: m.agentId,
    createdAt: m.createdAt,
    versions: m.versions ?? null,
  };
}

/** Applies one event of a live turn to its assistant message. Pure: returns a new message. */
export function applyEvent(message: UiMessage, e: TurnEvent): UiMessage {
  if (e.type === 'other') return message;
  const m = message.replay ? { ...message, content: '', reasoning: '', replay: false } : message;
  switch (e.type) {
    case 'start':
      return { ...m, id: e.messageId || m.id, content: '', reasoning: '', status: 'streaming', error: null };
    case 'chunk':
      return { ...m, content: m.content + e.content };
    case 'reasoning':
      return { ...m, reasoning: m.reasoning + e.content };
    case 'status':
      return { ...m, flow: { moduleName: e.moduleName, status: e.status } };
    case 'interactive':
      return { ...m, interactive: e.data };
    case 'error':
      return { ...m, error: { code: e.code, message: e.message } };
    case 'reset':
      return { ...m, content: '', reasoning: '', interactive: null, flow: null, error: null, status: 'streaming' };
    case 'end':
      return { ...m, status: e.status, flow: null };
  }
}
