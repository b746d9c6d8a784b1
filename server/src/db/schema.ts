import type { ColumnType, Generated, Insertable, Selectable, Updateable } from 'kysely';

/** Kysely's view of the tables created in `migrations/`. */

type Timestamp = ColumnType<Date, Date | string | undefined, Date | string>;
type NullableTimestamp = ColumnType<Date | null, Date | string | null | undefined, Date | string | null>;
type Json<T> = ColumnType<T, string, string>;
type NullableJson<T> = ColumnType<T | null, string | null | undefined, string | null>;

export type Role = 'user' | 'admin';
export type UserStatus = 'active' | 'disabled';
export type ProviderKind = 'openai' | 'fastgpt' | 'anthropic' | 'dify';
/**
 * How a later attempt carries on an answer that broke off mid-way: send the
 * partial answer as a trailing assistant message (`prefill`), the same with
 * vLLM's `continue_final_message` flags, or start over (`restart`).
 */
export type ContinuationKind = 'prefill' | 'continue_final_message' | 'restart';
export type MessageRole = 'system' | 'user' | 'assistant';
export type MessageStatus = 'streaming' | 'complete' | 'stopped' | 'error';

export interface UsersTable {
  id: Generated<string>;
  username: string;
  display_name: string | null;
  email: string | null;
  password_hash: string;
  role: ColumnType<Role, Role | undefined, Role>;
  status: ColumnType<UserStatus, UserStatus | undefined, UserStatus>;
  failed_logins: Generated<number>;
  locked_until: NullableTimestamp;
  daily_token_quota: number | null;
  /** Tokens per UTC calendar month; null means MONTHLY_TOKEN_QUOTA, 0 unlimited. */
  monthly_token_quota: ColumnType<number | null, number | null | undefined, number | null>;
  created_at: Generated<Date>;
  updated_at: Timestamp;
  last_login_at: NullableTimestamp;
  password_changed_at: Timestamp;
  /** Access tokens issued before this are refused (a password change or reset); null: none. */
  tokens_valid_after: NullableTimestamp;
}

export interface RefreshTokensTable {
  id: Generated<string>;
  user_id: string;
  family_id: string;
  token_hash: string;
  expires_at: Timestamp;
  rotated_at: NullableTimestamp;
  revoked_at: NullableTimestamp;
  created_at: Generated<Date>;
  user_agent: string | null;
  ip: string | null;
}

export interface ApiKeysTable {
  id: Generated<string>;
  user_id: string;
  name: string;
  prefix: string;
  key_hash: string;
  created_at: Generated<Date>;
  last_used_at: NullableTimestamp;
  expires_at: NullableTimestamp;
  revoked_at: NullableTimestamp;
  /** Space-separated ApiKeyScope values, always including `chat`. */
  scopes: ColumnType<string, string | undefined, string>;
}

export interface AgentFeatures {
  supportsStream?: boolean;
  supportsChatId?: boolean;
  supportsDetail?: boolean;
  supportsFiles?: boolean;
  supportsImages?: boolean;
}

export interface AgentRateLimit {
  requestsPerMinute?: number;
  /** Tokens per minute through this agent, all users together. */
  tokensPerMinute?: number;
  /** Tokens per UTC day / calendar month through this agent, all users together. */
  tokensPerDay?: number;
  tokensPerMonth?: number;
  /** Tokens per user per UTC day / calendar month through this agent. */
  tokensPerUserPerDay?: number;
  tokensPerUserPerMonth?: number;
}

export interface EndpointTimeouts {
  connectMs?: number;
  firstTokenMs?: number;
  idleMs?: number;
  totalMs?: number;
}

/** Per-agent retry settings; unset fields use the UPSTREAM_* defaults. */
export interface AgentRetry {
  maxAttempts?: number;
  baseDelayMs?: number;
  maxDelayMs?: number;
}

/** Per-agent hedged first token (migration 0012): call the next endpoint too after `afterMs` without a token. */
export interface AgentHedge {
  afterMs: number | 'p95';
}

/**
 * What a provider's content-policy refusal does (migration 0016): passed to
 * the caller (null, the default), or tried on an endpoint with another model
 * (`other-model`, an explicit opt-in).
 */
export type ContentPolicyRouting = 'pass-through' | 'other-model';

export interface AgentsTable {
  id: string;
  name: string;
  description: Generated<string>;
  max_tokens: number | null;
  temperature: number | null;
  system_prompt: string | null;
  welcome_text: string | null;
  capabilities: Json<string[]>;
  rate_limit: NullableJson<AgentRateLimit>;
  features: Json<AgentFeatures>;
  retry: NullableJson<AgentRetry>;
  hedge: NullableJson<AgentHedge>;
  content_policy: ContentPolicyRouting | null;
  is_active: Generated<boolean>;
  simulated: Generated<boolean>;
  created_at: Generated<Date>;
  updated_at: Timestamp;
}

export interface AgentEndpointsTable {
  id: Generated<string>;
  agent_id: string;
  position: number;
  provider: ProviderKind;
  url: string;
  api_key_encrypted: string | null;
  app_id: string | null;
  model: string | null;
  timeouts: NullableJson<EndpointTimeouts>;
  /** Null: the provider kind's default; migration 0013. */
  continuation: ColumnType<ContinuationKind | null, ContinuationKind | null | undefined, ContinuationKind | null>;
  created_at: Generated<Date>;
}

export interface ChatSessionsTable {
  id: Generated<string>;
  user_id: string;
  agent_id: string;
  title: Generated<string>;
  provider_chat_id: string | null;
  message_count: Generated<number>;
  archived_at: NullableTimestamp;
  /** Left out of the owner's chat list (a `/v1` call's session): migration 0012. */
  hidden: Generated<boolean>;
  created_at: Generated<Date>;
  updated_at: Timestamp;
}

export interface MessagesTable {
  id: Generated<string>;
  seq: ColumnType<number, never, never>;
  session_id: string;
  user_id: string;
  role: MessageRole;
  content: Generated<string>;
  reasoning: string | null;
  status: ColumnType<MessageStatus, MessageStatus | undefined, MessageStatus>;
  error_code: string | null;
  error_message: string | null;
  agent_id: string | null;
  provider: string | null;
  model: string | null;
  endpoint_id: string | null;
  prompt_tokens: number | null;
  completion_tokens: number | null;
  total_tokens: number | null;
  first_token_ms: number | null;
  total_ms: number | null;
  provider_chat_id: string | null;
  provider_message_id: string | null;
  interactive: NullableJson<unknown>;
  /** The instance running the answer while it streams (takeover fence). */
  owner_instance: string | null;
  /** The first version's id, on every later version of a message (migration 0017); null on a first version. */
  version_group: ColumnType<string | null, string | null | undefined, string | null>;
  /** Null on the conversation's current path; else the version whose replacement hid this message (migration 0017). */
  hidden_by: ColumnType<string | null, string | null | undefined, string | null>;
  metadata: NullableJson<Record<string, unknown>>;
  created_at: Generated<Date>;
  updated_at: Timestamp;
  completed_at: NullableTimestamp;
}

export interface FeedbackTable {
  id: Generated<string>;
  message_id: string;
  user_id: string;
  rating: 'up' | 'down';
  comment: string | null;
  forwarded: Generated<boolean>;
  created_at: Generated<Date>;
  updated_at: Timestamp;
}

export interface AuditLogTable {
  id: ColumnType<number, never, never>;
  at: Generated<Date>;
  actor_id: string | null;
  actor_username: string | null;
  action: string;
  target_type: string | null;
  target_id: string | null;
  success: Generated<boolean>;
  ip: string | null;
  detail: NullableJson<Record<string, unknown>>;
  /** Position in the hash chain (modules/audit/audit-chain.ts): 1, 2, 3, … without gaps. Written only by the chained insert. */
  chain_seq: ColumnType<number, never, never>;
  prev_hash: ColumnType<string, never, never>;
  hash: ColumnType<string, never, never>;
}

/** The last entry of the audit chain: one row, id 1. */
export interface AuditChainHeadTable {
  id: number;
  seq: number;
  hash: string;
}

export interface UpstreamFailuresTable {
  id: ColumnType<number, never, never>;
  at: Generated<Date>;
  agent_id: string;
  endpoint_id: string | null;
  position: number;
  provider: string;
  model: string | null;
  message_id: string | null;
  kind: string;
  status: number | null;
  provider_code: string | null;
  error_code: string;
  mid_answer: boolean;
  prompt_tokens: number | null;
  completion_tokens: number | null;
  elapsed_ms: number | null;
  /** What the provider said (admin-only detail, key redacted, at most 1000 characters); migration 0011. */
  detail: ColumnType<string | null, string | null | undefined, string | null>;
}

export interface IdempotencyKeysTable {
  user_id: string;
  key: string;
  request_hash: string;
  message_id: string;
  created_at: Generated<Date>;
}

export interface ShareLinksTable {
  id: Generated<string>;
  session_id: string;
  user_id: string;
  token_hash: string;
  up_to_seq: ColumnType<number, number, never>;
  created_at: Generated<Date>;
  revoked_at: NullableTimestamp;
}

export interface AttachmentsTable {
  id: Generated<string>;
  user_id: string;
  name: string;
  /** Decided from the bytes (modules/attachments/content-type.ts). */
  content_type: string;
  size: number;
  sha256: string;
  data: Uint8Array;
  /** The text of a text file or PDF, extracted at upload; null for images and PDFs without text. */
  text_content: string | null;
  /** A small image of an image attachment, made by the browser (checked by content). */
  thumbnail: Uint8Array | null;
  created_at: Generated<Date>;
}

export interface Database {
  users: UsersTable;
  refresh_tokens: RefreshTokensTable;
  api_keys: ApiKeysTable;
  agents: AgentsTable;
  agent_endpoints: AgentEndpointsTable;
  chat_sessions: ChatSessionsTable;
  messages: MessagesTable;
  feedback: FeedbackTable;
  audit_log: AuditLogTable;
  audit_chain_head: AuditChainHeadTable;
  upstream_failures: UpstreamFailuresTable;
  idempotency_keys: IdempotencyKeysTable;
  share_links: ShareLinksTable;
  attachments: AttachmentsTable;
}

export type UserRow = Selectable<UsersTable>;
export type NewUser = Insertable<UsersTable>;
export type UserUpdate = Updateable<UsersTable>;
export type AgentRow = Selectable<AgentsTable>;
export type AgentEndpointRow = Selectable<AgentEndpointsTable>;
export type ChatSessionRow = Selectable<ChatSessionsTable>;
export type MessageRow = Selectable<MessagesTable>;
export type FeedbackRow = Selectable<FeedbackTable>;
export type AuditLogRow = Selectable<AuditLogTable>;
