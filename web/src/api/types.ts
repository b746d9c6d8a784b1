/** Shapes of the server API as the web app uses them (see each server module's schema.ts). */

export type Role = 'user' | 'admin';

export interface SessionUser {
  id: string;
  username: string;
  displayName: string | null;
  role: Role;
}

export interface SignedIn {
  token: string;
  expiresIn: number;
  user: SessionUser;
}

/** One token budget of a user: limit null is unlimited; used null is not counted (unlimited) or unknown right now. */
export interface BudgetUsage {
  limit: number | null;
  own: boolean;
  used: number | null;
  remaining: number | null;
  resetAt: string;
}

export interface TokenUsage {
  daily: BudgetUsage;
  monthly: BudgetUsage;
}

export interface Profile {
  id: string;
  username: string;
  displayName: string | null;
  email: string | null;
  role: Role;
  tokenUsage?: TokenUsage;
  [key: string]: unknown;
}

export interface Agent {
  id: string;
  name: string;
  description: string;
  /** openai, fastgpt, anthropic or dify. */
  provider: string;
  model: string;
  status: 'active' | 'inactive';
  welcomeText?: string | null;
  simulated?: boolean;
  /** Its model provider can continue an answer where it stopped. */
  canContinue?: boolean;
  /** What the agent takes besides text: images, files (attachments). */
  features?: { supportsImages?: boolean; supportsFiles?: boolean };
}

/** One part of a question with attachments: its text, or an attachment named by its URL. */
export type QuestionPart = { type: 'text'; text: string } | { type: 'image_url'; image_url: { url: string } } | { type: 'file_url'; name?: string; url: string };
/** A question as sent: its text, or parts when it carries attachments (stored as the parts' JSON). */
export type QuestionContent = string | QuestionPart[];

/** An uploaded attachment (`POST /api/attachments`): its type was decided by the server from its bytes. */
export interface Attachment {
  id: string;
  name: string;
  contentType: string;
  kind: 'image' | 'file';
  size: number;
  sha256: string;
  /** Where it is served; a question names it by this URL. */
  url: string;
  createdAt: string;
}

export interface SessionSummary {
  id: string;
  agentId: string;
  title: string;
  messageCount: number;
  archived: boolean;
  createdAt: string;
  updatedAt: string;
}

export interface SessionList {
  items: SessionSummary[];
  total: number;
  page: number;
  pageSize: number;
}

export type MessageStatus = 'streaming' | 'complete' | 'stopped' | 'error';

export interface StoredMessage {
  id: string;
  seq: number;
  role: 'user' | 'assistant' | 'system';
  content: string;
  reasoning: string | null;
  status: MessageStatus;
  error: { code: string; message: string | null } | null;
  interactive: unknown;
  feedback: { rating: 'up' | 'down'; comment: string | null } | null;
  /** The agent that wrote an answer (a conversation may switch agents). */
  agentId: string | null;
  createdAt: string;
  /** Every version of this message, oldest first, when it was regenerated or edited; null otherwise. */
  versions?: string[] | null;
}

export interface ShareLink {
  id: string;
  createdAt: string;
  revokedAt: string | null;
}

/** What a share link shows: no ids, no owner. */
export interface SharedConversation {
  title: string;
  sharedAt: string;
  messages: { role: 'user' | 'assistant'; content: string; status: MessageStatus; agentName: string | null; createdAt: string }[];
}

export interface SessionDetail {
  id: string;
  agentId: string;
  title: string;
  messageCount: number;
  archived: boolean;
  messages: StoredMessage[];
  hasMore: boolean;
}

export interface SearchHit {
  sessionId: string;
  agentId: string;
  title: string;
  messageId: string | null;
  /** Safe HTML from the server: escaped text with matches in <mark>. Parsed, never injected. */
  snippet: string;
  updatedAt: string;
}

export interface ApiKey {
  id: string;
  name: string;
  prefix: string;
  createdAt: string;
  lastUsedAt: string | null;
  expiresAt: string | null;
  revokedAt: string | null;
  scopes: ApiKeyScope[];
}

export type ApiKeyScope = 'chat' | 'admin' | 'keys';

export interface CreatedApiKey {
  key: string;
  apiKey: ApiKey;
}

export interface ChatInit {
  welcomeText: string | null;
  app: { name: string };
}
