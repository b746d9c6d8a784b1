import { continuationOf } from '../providers/continuation-kinds.js';
import type { EndpointHealth } from '../resilience/endpoint-health.js';
import type { AgentStatusViewType, AgentViewType } from './schema.js';
import type { AgentConfig, ResolvedAgent } from './types.js';

/**
 * What leaves the server about an agent. Built field by field from the
 * key-free AgentConfig, so no key or ciphertext can slip into a response.
 */

/** Host (and port) of an endpoint URL; never its path or query, which may carry tokens. */
export function hostOf(url: string): string {
  try {
    return new URL(url).host;
  } catch {
    return '';
  }
}

/** The original LLMChat list shape plus ours; admins also get the configuration. */
export function agentView(agent: AgentConfig, admin: boolean): AgentViewType {
  const view: AgentViewType = {
    id: agent.id,
    name: agent.name,
    description: agent.description,
    provider: agent.provider,
    model: agent.model ?? '',
    status: agent.isActive ? 'active' : 'inactive',
    capabilities: [...agent.capabilities],
    features: { ...agent.features },
    welcomeText: agent.welcomeText,
    simulated: agent.simulated,
    canContinue: continuationOf({ provider: agent.provider, continuation: agent.continuation, url: agent.endpoint }) !== 'restart',
  };
  if (!admin) return view;
  return {
    ...view,
    isActive: agent.isActive,
    endpoint: agent.endpoint,
    appId: agent.appId,
    hasApiKey: agent.hasApiKey,
    maxTokens: agent.maxTokens,
    temperature: agent.temperature,
    systemPrompt: agent.systemPrompt,
    rateLimit: agent.rateLimit,
    retry: agent.retry,
    hedge: agent.hedge,
    contentPolicy: agent.contentPolicy,
    timeouts: agent.timeouts,
    continuation: agent.continuation,
    fallbacks: agent.fallbacks.map((f) => ({
      provider: f.provider,
      endpoint: f.endpoint,
      appId: f.appId,
      model: f.model,
      timeouts: f.timeouts,
      continuation: f.continuation,
      hasApiKey: f.hasApiKey,
    })),
    createdAt: agent.createdAt,
    updatedAt: agent.updatedAt,
  };
}

/** Endpoint hosts, breakers and failure counts are shown to admins only (`health` is given for admins). */
export function statusView(resolved: ResolvedAgent, admin: boolean, health?: readonly EndpointHealth[]): AgentStatusViewType {
  const { agent } = resolved;
  return {
    agentId: agent.id,
    status: agent.isActive ? 'active' : 'inactive',
    isActive: agent.isActive,
    endpoints: resolved.endpoints.map((e, i) => ({
      position: e.position,
      provider: e.provider,
      ...(admin ? { host: hostOf(e.url) } : {}),
      ...(admin && health?.[i] ? { breaker: health[i].breaker, failures: health[i].failures } : {}),
    })),
  };
}
