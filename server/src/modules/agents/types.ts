import type { AgentHedge, ContentPolicyRouting, AgentRateLimit, AgentRetry, ContinuationKind, EndpointTimeouts, ProviderKind } from '../../db/schema.js';
import type { Principal } from '../../plugins/authenticate.js';
import type { ResolvedEndpoint } from '../providers/types.js';

export interface StreamingConfig {
  enabled?: boolean;
  endpoint?: 'same' | 'different';
  statusEvents?: boolean;
  flowNodeStatus?: boolean;
}

/** Feature flags with their defaults applied (original LLMChat names). */
export interface AgentFeatureFlags {
  supportsStream: boolean;
  supportsChatId: boolean;
  supportsDetail: boolean;
  supportsFiles: boolean;
  supportsImages: boolean;
  streamingConfig?: StreamingConfig;
}

export const DEFAULT_FEATURES: AgentFeatureFlags = Object.freeze({
  supportsStream: true,
  supportsChatId: false,
  supportsDetail: false,
  supportsFiles: false,
  supportsImages: false,
});

/** A fallback endpoint as configured, without its key. */
export interface AgentFallbackConfig {
  provider: ProviderKind;
  endpoint: string;
  appId?: string | undefined;
  model?: string | undefined;
  timeouts?: EndpointTimeouts | undefined;
  continuation?: ContinuationKind | undefined;
  hasApiKey: boolean;
}

/**
 * One agent as the rest of the server sees it: the original LLMChat fields
 * (the primary endpoint's provider/endpoint/appId/model flattened in), ours,
 * and no secret. Keys live only in `ResolvedAgent.endpoints`.
 */
export interface AgentConfig {
  id: string;
  name: string;
  description: string;
  provider: ProviderKind;
  endpoint: string;
  appId?: string | undefined;
  model?: string | undefined;
  maxTokens?: number | undefined;
  temperature?: number | undefined;
  systemPrompt?: string | undefined;
  welcomeText?: string | undefined;
  capabilities: readonly string[];
  rateLimit?: AgentRateLimit | undefined;
  retry?: AgentRetry | undefined;
  /** Hedged first token (resilience/hedge.ts); unset: off. */
  hedge?: AgentHedge | undefined;
  /** A provider's content-policy refusal: passed to the caller, or tried on another model (opt-in). */
  contentPolicy: ContentPolicyRouting;
  features: AgentFeatureFlags;
  timeouts?: EndpointTimeouts | undefined;
  /** The primary endpoint's continuation setting (unset: its provider's default). */
  continuation?: ContinuationKind | undefined;
  fallbacks: readonly AgentFallbackConfig[];
  isActive: boolean;
  /** The built-in demo agent on the mock upstream; read-only. */
  simulated: boolean;
  hasApiKey: boolean;
  /** Endpoint positions whose stored key could not be decrypted (SECRETS_KEY changed?). */
  unreadableKeys: readonly number[];
  createdAt: string;
  updatedAt: string;
}

/**
 * What the chat path gets from `AgentsService.getActive(id)`: the agent and
 * its endpoints in order (position 0 is the primary), keys decrypted.
 * Frozen: callers share one object per agent.
 */
export interface ResolvedAgent {
  readonly agent: Readonly<AgentConfig>;
  readonly endpoints: readonly Readonly<ResolvedEndpoint>[];
}

/** One endpoint as it will be written: `apiKey` undefined keeps the stored key, null stores none. */
export interface EndpointDefinition {
  provider: ProviderKind;
  url: string;
  apiKey: string | null | undefined;
  appId: string | undefined;
  model: string | undefined;
  timeouts: EndpointTimeouts | undefined;
  continuation: ContinuationKind | undefined;
}

/** A validated agent with defaults applied, ready to be written. */
export interface AgentDefinition {
  id: string;
  name: string;
  description: string;
  maxTokens: number | undefined;
  temperature: number | undefined;
  systemPrompt: string | undefined;
  welcomeText: string | undefined;
  capabilities: string[];
  rateLimit: AgentRateLimit | undefined;
  retry: AgentRetry | undefined;
  hedge: AgentHedge | undefined;
  contentPolicy: ContentPolicyRouting;
  features: AgentFeatureFlags;
  isActive: boolean;
  /** Position 0 is the primary. */
  endpoints: EndpointDefinition[];
}

/** A problem found in an agent definition; `path` names the field (`agents[2].endpoint`). */
export interface ConfigProblem {
  path: string;
  message: string;
}

/** Who changes agents, for the audit log. */
export interface Actor extends Principal {
  ip?: string | undefined;
}
