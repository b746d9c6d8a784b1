import { api, apiFetch, session } from './client';

import type { Agent, Attachment, ApiKey, QuestionContent, ApiKeyScope, ChatInit, CreatedApiKey, Profile, SearchHit, SessionDetail, SessionList, SessionSummary, SharedConversation, ShareLink, SignedIn } from './types';

/** Every server call the web app makes, typed, in one place. */

export const authApi = {
  options: () => api<{ registrationOpen: boolean }>('/api/auth/options'),
  async login(username: string, password: string): Promise<SignedIn> {
    const signedIn = await api<SignedIn>('/api/auth/login', { method: 'POST', body: { username, password } });
    session.set(signedIn);
    return signedIn;
  },
  async register(input: { username: string; password: string; displayName?: string }): Promise<SignedIn> {
    const signedIn = await api<SignedIn>('/api/auth/register', { method: 'POST', body: input });
    session.set(signedIn);
    return signedIn;
  },
  async logout(): Promise<void> {
    try {
      await api('/api/auth/logout', { method: 'POST' });
    } finally {
      session.set(undefined);
    }
  },
  profile: () => api<Profile>('/api/auth/profile'),
  /** The answer carries a new access token: the change revoked every earlier one, this session's included. */
  changePassword: (currentPassword: string, newPassword: string, revokeApiKeys: boolean) =>
    api<{ done: true; accessToken: string; expiresIn: number; apiKeysRevoked: number }>('/api/auth/change-password', { method: 'POST', body: { currentPassword, newPassword, revokeApiKeys } }),
  apiKeys: () => api<ApiKey[]>('/api/auth/api-keys'),
  createApiKey: (name: string, scopes: ApiKeyScope[], expiresInDays?: number) => api<CreatedApiKey>('/api/auth/api-keys', { method: 'POST', body: { name, scopes, expiresInDays } }),
  revokeApiKey: (id: string) => api<ApiKey>(`/api/auth/api-keys/${encodeURIComponent(id)}`, { method: 'DELETE' }),
};

export const agentsApi = {
  list: () => api<Agent[]>('/api/agents'),
  init: (agentId: string) => api<ChatInit>('/api/chat/init', { query: { appId: agentId } }),
};

export const sessionsApi = {
  list: (archived: 'exclude' | 'only') => api<SessionList>('/api/chat-sessions', { query: { archived, pageSize: 100 } }),
  get: (id: string, before?: number, limit = 500) => api<SessionDetail>(`/api/chat-sessions/${id}`, { query: { before, limit } }),
  rename: (id: string, title: string) => api<SessionSummary>(`/api/chat-sessions/${id}/title`, { method: 'PATCH', body: { title } }),
  archive: (id: string, archived: boolean) => api<SessionSummary>(`/api/chat-sessions/${id}/${archived ? 'archive' : 'unarchive'}`, { method: 'POST' }),
  remove: (id: string) => api<null>(`/api/chat-sessions/${id}`, { method: 'DELETE' }),
  search: (q: string, signal?: AbortSignal) => api<SearchHit[]>('/api/chat-sessions/search', { query: { q, limit: 20 }, signal }),
  switchAgent: (id: string, agentId: string) => api<SessionSummary>(`/api/chat-sessions/${id}/agent`, { method: 'PATCH', body: { agentId } }),
  /** Shows another version of a message; what the conversation shows from there on follows it. */
  showVersion: (id: string, messageId: string) => api<{ sessionId: string; messageId: string }>(`/api/chat-sessions/${id}/versions`, { method: 'POST', body: { messageId } }),
  /** The conversation as a file: its body and the name the server gave it. */
  exportFile: async (id: string, format: 'markdown' | 'json') => {
    const res = await apiFetch(`/api/chat-sessions/${id}/export`, { query: { format } });
    const disposition = res.headers.get('content-disposition') ?? '';
    const utf8 = /filename\*=UTF-8''([^;]+)/.exec(disposition)?.[1];
    return { blob: await res.blob(), fileName: utf8 ? decodeURIComponent(utf8) : `conversation.${format === 'json' ? 'json' : 'md'}` };
  },
  shares: (id: string) => api<ShareLink[]>(`/api/chat-sessions/${id}/shares`),
  createShare: (id: string) => api<ShareLink & { token: string; path: string }>(`/api/chat-sessions/${id}/shares`, { method: 'POST' }),
  revokeShare: (id: string, shareId: string) => api<ShareLink>(`/api/chat-sessions/${id}/shares/${shareId}`, { method: 'DELETE' }),
  shared: (token: string, signedOut: boolean) => api<SharedConversation>(`/api/shared/${encodeURIComponent(token)}`, { signedOut }),
};

export const attachmentsApi = {
  /** Uploads a file as its raw bytes; the server decides its type from them (the browser's guess is only a claim). */
  upload: (file: Blob, name: string) =>
    api<Attachment>('/api/attachments', { method: 'POST', query: { name }, raw: { data: file, contentType: file.type || 'application/octet-stream' } }),
  setThumbnail: (id: string, thumbnail: Blob) => api<{ id: string }>(`/api/attachments/${id}/thumbnail`, { method: 'PUT', raw: { data: thumbnail, contentType: thumbnail.type } }),
  remove: (id: string) => api<{ id: string }>(`/api/attachments/${id}`, { method: 'DELETE' }),
  /** The user's attachments, newest first, with how much of the quota they take. */
  list: () => api<{ usedBytes: number; quotaBytes: number; maxBytes: number; items: Attachment[] }>('/api/attachments', { query: { limit: 500 } }),
  /** An attachment's bytes (or its thumbnail's), fetched with the access token: they are served to their owner only. */
  blob: async (url: string) => (await apiFetch(url)).blob(),
};

/**
 * A fresh Idempotency-Key: a proxy that sends the request on to another
 * instance (nginx's proxy_next_upstream) then gets the same turn, not a
 * second one. getRandomValues works outside secure contexts too (plain-HTTP
 * intranet hosts), where crypto.randomUUID does not exist.
 */
export function newIdempotencyKey(): string {
  const bytes = crypto.getRandomValues(new Uint8Array(16));
  return Array.from(bytes, (b) => b.toString(16).padStart(2, '0')).join('');
}

export const chatApi = {
  /** Starts a turn; the response body is the event stream. */
  complete: (body: { agentId: string; chatId?: string; content: QuestionContent; detail?: boolean }, signal?: AbortSignal) =>
    apiFetch('/api/chat/completions', {
      method: 'POST',
      headers: { 'idempotency-key': newIdempotencyKey() },
      body: { agentId: body.agentId, chatId: body.chatId, stream: true, detail: body.detail, messages: [{ role: 'user', content: body.content }] },
      signal,
    }),
  /** Regenerates the last answer, or answers an edited last question. */
  retry: (chatId: string, edited: string | undefined, signal?: AbortSignal) =>
    apiFetch(`/api/chat/history/${chatId}/retry`, { method: 'POST', body: { stream: true, detail: true, ...(edited === undefined ? {} : { content: edited }) }, signal }),
  /** Continues the session's last answer, stopped by its asker, where it stopped. */
  continueAnswer: (chatId: string, messageId: string, signal?: AbortSignal) =>
    apiFetch(`/api/chat/history/${chatId}/continue`, { method: 'POST', body: { stream: true, detail: true, dataId: messageId }, signal }),
  /** Follows a turn from after `lastEventId` (`<messageId>:<n>`). */
  resume: (messageId: string, lastEventId: string, signal?: AbortSignal) =>
    apiFetch('/api/chat/stream', { query: { messageId }, headers: { 'last-event-id': lastEventId }, signal }),
  stop: (messageId: string) => api<{ messageId: string; stopped: boolean }>('/api/chat/stop', { method: 'POST', body: { messageId } }),
  feedback: (messageId: string, rating: 'up' | 'down' | null, comment?: string) =>
    api<{ messageId: string; rating: 'up' | 'down' | null }>('/api/chat/feedback', { method: 'POST', body: { messageId, rating, comment } }),
};
