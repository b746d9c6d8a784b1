import { api, apiFetch } from '../../api/client';
import type { TokenUsage } from '../../api/types';

/** The admin routes the console uses (server/src/modules/{agents,users,audit}). The server checks the role on each. */

export interface FallbackView {
  provider: string;
  endpoint: string;
  appId?: string | null;
  model?: string | null;
  /** How this endpoint continues a broken-off answer; unset: the provider's default. */
  continuation?: string | null;
  hasApiKey: boolean;
}

export interface AdminAgent {
  id: string;
  name: string;
  description: string;
  provider: string;
  model: string;
  status: 'active' | 'inactive';
  isActive: boolean;
  endpoint: string;
  appId?: string | null;
  hasApiKey: boolean;
  welcomeText?: string | null;
  systemPrompt?: string | null;
  continuation?: string | null;
  fallbacks: FallbackView[];
  /** Hedged first token: the next endpoint is called too after `afterMs` without a token. */
  hedge?: AgentHedge | null;
  /** A provider's content-policy refusal: passed to the caller, or tried on another model (opt-in). */
  contentPolicy?: ContentPolicyRouting;
  simulated?: boolean;
  /** What it takes besides text (attachments), among its other feature flags. */
  features?: { supportsImages?: boolean; supportsFiles?: boolean };
}

export type ContentPolicyRouting = 'pass-through' | 'other-model';

export interface AgentHedge {
  afterMs: number | 'p95';
}

export interface FallbackInput {
  provider: string;
  endpoint: string;
  apiKey?: string;
  appId?: string;
  model?: string;
  continuation?: string;
}

export interface AgentInput {
  id: string;
  name: string;
  description: string;
  provider: string;
  endpoint: string;
  apiKey?: string;
  appId?: string;
  model?: string;
  welcomeText?: string;
  systemPrompt?: string;
  /** Null (on update): back to the provider's default. */
  continuation?: string | null;
  isActive: boolean;
  fallbacks: FallbackInput[];
  /** Null clears it (on edit); left out: off (on create). */
  hedge?: AgentHedge | null;
  contentPolicy?: ContentPolicyRouting;
  /** Merged into the stored flags: only the ones named change. */
  features?: { supportsImages: boolean; supportsFiles: boolean };
}

export interface EndpointCheck {
  position: number;
  provider: string;
  host: string;
  ok: boolean;
  latencyMs: number;
  error?: { code: string; message: string; status?: number };
}

export interface AdminUser {
  id: string;
  username: string;
  displayName: string | null;
  email: string | null;
  role: 'user' | 'admin';
  status: 'active' | 'disabled';
  /** Always null: accounts are delayed, never locked (kept by the API for compatibility). */
  lockedUntil: string | null;
  lastLoginAt: string | null;
  /** Tokens per UTC day / month of the user's own; null: the platform default; 0: unlimited. */
  dailyTokenQuota: number | null;
  monthlyTokenQuota: number | null;
  tokenUsage?: TokenUsage;
}

export interface AuditEntry {
  id: number;
  at: string;
  actorUsername: string | null;
  action: string;
  targetType: string | null;
  targetId: string | null;
  success: boolean;
  ip: string | null;
}

export interface SignInDelay {
  userId: string;
  username: string;
  recentFailures: number;
  limitPerHour: number;
  refusedForSeconds: number;
}

export interface AuditFilters {
  action?: string | undefined;
  actor?: string | undefined;
  from?: string | undefined;
  to?: string | undefined;
}

export const adminApi = {
  agents: () => api<AdminAgent[]>('/api/agents', { query: { includeInactive: true } }),
  createAgent: (input: AgentInput) => api<AdminAgent>('/api/agents', { method: 'POST', body: input }),
  updateAgent: (id: string, patch: Partial<AgentInput>) => api<AdminAgent>(`/api/agents/${encodeURIComponent(id)}`, { method: 'PATCH', body: patch }),
  setAgentActive: (id: string, active: boolean) => api<AdminAgent>(`/api/agents/${encodeURIComponent(id)}/${active ? 'enable' : 'disable'}`, { method: 'POST', body: {} }),
  testAgent: (id: string) => api<{ ok: boolean; endpoints: EndpointCheck[] }>(`/api/agents/${encodeURIComponent(id)}/validate`, { method: 'POST', body: {} }),
  importAgents: (document: unknown) => api<{ imported: number; created: number; updated: number }>('/api/agents/import', { method: 'POST', body: document }),

  users: (q: string, page: number) => api<{ items: AdminUser[]; total: number; page: number; pageSize: number }>('/api/admin/users', { query: { q: q || undefined, page, pageSize: 20 } }),
  createUser: (input: { username: string; password: string; displayName?: string; role: 'user' | 'admin' }) => api<AdminUser>('/api/admin/users', { method: 'POST', body: input }),
  setUserDisabled: (id: string, disabled: boolean) => api<AdminUser>(`/api/admin/users/${id}/${disabled ? 'disable' : 'enable'}`, { method: 'POST', body: {} }),
  resetPassword: (id: string, password: string, revokeApiKeys: boolean) => api<AdminUser>(`/api/admin/users/${id}/reset-password`, { method: 'POST', body: { password, revokeApiKeys } }),
  /** Ends every sign-in delay on the account and resets its hourly cap of failed attempts. */
  clearSignInDelay: (id: string) => api<SignInDelay>(`/api/admin/users/${id}/sign-in-delay`, { method: 'DELETE' }),
  setRole: (id: string, role: 'user' | 'admin') => api<AdminUser>(`/api/admin/users/${id}/role`, { method: 'PATCH', body: { role } }),
  setQuota: (id: string, quota: { dailyTokenQuota: number | null; monthlyTokenQuota: number | null }) => api<AdminUser>(`/api/admin/users/${id}`, { method: 'PATCH', body: quota }),

  audit: (filters: AuditFilters, before?: number) => api<{ entries: AuditEntry[]; nextCursor: number | null }>('/api/admin/audit', { query: { ...filters, limit: 50, before } }),
  /** The CSV with the same filters, fetched with the token (a plain link would carry no Authorization header). */
  auditCsv: async (filters: AuditFilters) => (await apiFetch('/api/admin/audit/export.csv', { query: { ...filters } })).blob(),
};

export interface Percentiles {
  p50: number | null;
  p95: number | null;
  p99: number | null;
}

export interface UsageBreakdown {
  key: string;
  answers: number;
  errors: number;
  tokens: number;
  firstTokenMs: Percentiles;
  totalMs: Percentiles;
}

export interface UsageReport {
  from: string;
  to: string;
  bucket: 'hour' | 'day';
  totals: {
    conversations: number;
    questions: number;
    answers: number;
    errors: number;
    errorRate: number;
    promptTokens: number;
    completionTokens: number;
    totalTokens: number;
    firstTokenMs: Percentiles;
    totalMs: Percentiles;
  };
  series: { at: string; conversations: number; questions: number; answers: number; errors: number; tokens: number }[];
  byAgent: UsageBreakdown[];
  byProvider: UsageBreakdown[];
}

export interface SystemStatus {
  version: string;
  node: string;
  uptimeSeconds: number;
  startedAt: string;
  dependencies: Record<'database' | 'sharedState', { ok: boolean; kind: string; latencyMs?: number; error?: string }>;
  agents: { total: number; active: number };
  generations: { running: number };
}

export const statsApi = {
  usage: (from: string, to: string, bucket: 'hour' | 'day') => api<UsageReport>('/api/admin/usage', { query: { from, to, bucket } }),
  system: () => api<SystemStatus>('/api/admin/system'),
};
