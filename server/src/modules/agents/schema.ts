import { Type, type Static, type TSchema } from '@sinclair/typebox';
import { CONTINUATION_KINDS } from '../providers/continuation-kinds.js';

/**
 * Request and response schemas of the agents API, and the shape of one agent
 * in agents.json (the original LLMChat field names, plus ours: welcomeText,
 * fallbacks, timeouts). The same `AgentInput` schema validates POST bodies
 * (through Fastify) and agents.json files (through agents-file.ts).
 */

export const AGENT_ID_PATTERN = '^[a-zA-Z0-9][a-zA-Z0-9_-]{0,63}$';
/** Structural check only; agents-file.ts parses the URL as well. */
export const HTTP_URL_PATTERN = '^[hH][tT][tT][pP][sS]?://[^\\s/?#]+[^\\s]*$';

export const Limits = {
  nameLength: 200,
  descriptionLength: 2_000,
  urlLength: 2_048,
  apiKeyLength: 4_096,
  appIdLength: 200,
  modelLength: 200,
  systemPromptLength: 50_000,
  welcomeTextLength: 5_000,
  capabilityLength: 64,
  capabilities: 50,
  fallbacks: 8,
  agentsPerImport: 500,
  maxTokens: 200_000,
  timeoutMs: 3_600_000,
  requestsPerMinute: 1_000_000,
  tokensPerMinute: 1_000_000_000,
  tokenBudget: 2_000_000_000,
  timestampLength: 64,
} as const;

export const PROVIDER_KINDS = ['openai', 'fastgpt', 'anthropic', 'dify'] as const;

export const AgentId = Type.String({ pattern: AGENT_ID_PATTERN, patternMessage: 'must be 1-64 letters, digits, _ or -, starting with a letter or digit', minLength: 1, maxLength: 64, description: 'Slug: letters, digits, _ and -, starting with a letter or digit, at most 64.' });
export const ProviderKindSchema = Type.Union(PROVIDER_KINDS.map((k) => Type.Literal(k)), { description: 'openai (any OpenAI-compatible endpoint), fastgpt, anthropic or dify.' });
const HttpUrl = Type.String({ minLength: 1, maxLength: Limits.urlLength, pattern: HTTP_URL_PATTERN, patternMessage: 'must be an http:// or https:// URL', description: 'http(s) URL of the provider chat endpoint.' });
const ApiKey = Type.String({ minLength: 1, maxLength: Limits.apiKeyLength, description: 'Upstream API key. Write-only: never returned.' });
const AppId = Type.String({ minLength: 1, maxLength: Limits.appIdLength, description: 'FastGPT app id / Dify app id.' });
const Model = Type.String({ minLength: 1, maxLength: Limits.modelLength });
const Timestamp = Type.String({ maxLength: Limits.timestampLength });
const Millis = Type.Integer({ minimum: 1, maximum: Limits.timeoutMs });

export const TimeoutsSchema = Type.Object(
  {
    connectMs: Type.Optional(Millis),
    firstTokenMs: Type.Optional(Millis),
    idleMs: Type.Optional(Millis),
    totalMs: Type.Optional(Millis),
  },
  { additionalProperties: false, description: 'Upstream deadlines in milliseconds; unset ones use the platform defaults.' },
);

const ContinuationSchema = Type.Union(CONTINUATION_KINDS.map((k) => Type.Literal(k)), {
  description: 'How a later attempt continues an answer that broke off here: prefill (the partial answer as a trailing assistant message), continue_final_message (the same with vLLM\'s flags) or restart. Unset: the provider\'s default (README, "Continuation per provider").',
});

export const RateLimitSchema = Type.Object(
  {
    requestsPerMinute: Type.Optional(Type.Integer({ minimum: 1, maximum: Limits.requestsPerMinute })),
    tokensPerMinute: Type.Optional(Type.Integer({ minimum: 1, maximum: Limits.tokensPerMinute, description: 'Tokens per minute through this agent, all users together (reserved before each call, settled to the real usage).' })),
    tokensPerDay: Type.Optional(Type.Integer({ minimum: 1, maximum: Limits.tokenBudget, description: 'Tokens per UTC day through this agent, all users together.' })),
    tokensPerMonth: Type.Optional(Type.Integer({ minimum: 1, maximum: Limits.tokenBudget, description: 'Tokens per UTC calendar month through this agent, all users together.' })),
    tokensPerUserPerDay: Type.Optional(Type.Integer({ minimum: 1, maximum: Limits.tokenBudget, description: 'Tokens per user per UTC day through this agent.' })),
    tokensPerUserPerMonth: Type.Optional(Type.Integer({ minimum: 1, maximum: Limits.tokenBudget, description: 'Tokens per user per UTC calendar month through this agent.' })),
  },
  { additionalProperties: false },
);

export const RetrySchema = Type.Object(
  {
    maxAttempts: Type.Optional(Type.Integer({ minimum: 1, maximum: 10, description: 'Calls to one endpoint per turn, first try included.' })),
    baseDelayMs: Type.Optional(Type.Integer({ minimum: 0, maximum: 60_000, description: 'Base of the full-jitter exponential backoff.' })),
    maxDelayMs: Type.Optional(Type.Integer({ minimum: 0, maximum: 300_000, description: 'Longest backoff.' })),
  },
  { additionalProperties: false, description: 'Retries of one endpoint for transient failures; unset fields use the UPSTREAM_* defaults.' },
);

export const HedgeSchema = Type.Object(
  {
    afterMs: Type.Union([Type.Integer({ minimum: 1, maximum: Limits.timeoutMs }), Type.Literal('p95')], {
      description: "Milliseconds without a first token after which the agent's next endpoint is called too (the first token wins, the other call is cancelled); `p95`: the endpoint's observed 95th percentile time to first token (no hedging until 20 turns were observed).",
    }),
  },
  { additionalProperties: false, description: 'Hedged first token: an opt-in that costs a second upstream call on slow turns. Unset or null: off.' },
);

export const ContentPolicySchema = Type.Union([Type.Literal('pass-through'), Type.Literal('other-model')], {
  description:
    "A provider's content-policy refusal: `pass-through` (the default) gives it to the caller as UPSTREAM_CONTENT_POLICY; `other-model` tries the agent's next endpoint with another model, an explicit opt-in that routes around the provider's safety policy.",
});

export const StreamingConfigSchema = Type.Object(
  {
    enabled: Type.Optional(Type.Boolean()),
    endpoint: Type.Optional(Type.Union([Type.Literal('same'), Type.Literal('different')])),
    statusEvents: Type.Optional(Type.Boolean()),
    flowNodeStatus: Type.Optional(Type.Boolean()),
  },
  { additionalProperties: false },
);

export const FeaturesSchema = Type.Object(
  {
    supportsStream: Type.Optional(Type.Boolean()),
    supportsChatId: Type.Optional(Type.Boolean()),
    supportsDetail: Type.Optional(Type.Boolean()),
    supportsFiles: Type.Optional(Type.Boolean()),
    supportsImages: Type.Optional(Type.Boolean()),
    streamingConfig: Type.Optional(StreamingConfigSchema),
  },
  { additionalProperties: false },
);

export const FallbackInputSchema = Type.Object(
  {
    provider: ProviderKindSchema,
    endpoint: HttpUrl,
    apiKey: Type.Optional(ApiKey),
    appId: Type.Optional(AppId),
    model: Type.Optional(Model),
    timeouts: Type.Optional(TimeoutsSchema),
    continuation: Type.Optional(ContinuationSchema),
  },
  { additionalProperties: false },
);

const Capabilities = Type.Array(Type.String({ minLength: 1, maxLength: Limits.capabilityLength }), { maxItems: Limits.capabilities });
const Name = Type.String({ minLength: 1, maxLength: Limits.nameLength, pattern: '\\S' });
const Description = Type.String({ maxLength: Limits.descriptionLength });
const MaxTokens = Type.Integer({ minimum: 1, maximum: Limits.maxTokens });
const Temperature = Type.Number({ minimum: 0, maximum: 2 });
const SystemPrompt = Type.String({ maxLength: Limits.systemPromptLength });
const WelcomeText = Type.String({ maxLength: Limits.welcomeTextLength });
const Fallbacks = Type.Array(FallbackInputSchema, { maxItems: Limits.fallbacks, description: 'Tried in order after the primary endpoint.' });

/** One agent as written in agents.json or sent to `POST /api/agents`. */
export const AgentInputSchema = Type.Object(
  {
    id: AgentId,
    name: Name,
    description: Type.Optional(Description),
    provider: ProviderKindSchema,
    endpoint: HttpUrl,
    apiKey: Type.Optional(ApiKey),
    appId: Type.Optional(AppId),
    model: Type.Optional(Model),
    maxTokens: Type.Optional(MaxTokens),
    temperature: Type.Optional(Temperature),
    systemPrompt: Type.Optional(SystemPrompt),
    welcomeText: Type.Optional(WelcomeText),
    capabilities: Type.Optional(Capabilities),
    rateLimit: Type.Optional(RateLimitSchema),
    retry: Type.Optional(RetrySchema),
    hedge: Type.Optional(HedgeSchema),
    contentPolicy: Type.Optional(ContentPolicySchema),
    features: Type.Optional(FeaturesSchema),
    isActive: Type.Optional(Type.Boolean()),
    timeouts: Type.Optional(TimeoutsSchema),
    continuation: Type.Optional(ContinuationSchema),
    fallbacks: Type.Optional(Fallbacks),
    // Present in files written by the original LLMChat; accepted and ignored (the database keeps its own).
    createdAt: Type.Optional(Timestamp),
    updatedAt: Type.Optional(Timestamp),
  },
  { additionalProperties: false },
);
export type AgentInput = Static<typeof AgentInputSchema>;

/** The body of `POST /api/agents/import` and the content of agents.json. */
export const AgentsDocumentSchema = Type.Object(
  {
    $schema: Type.Optional(Type.String({ maxLength: Limits.urlLength })),
    agents: Type.Array(AgentInputSchema, { maxItems: Limits.agentsPerImport }),
  },
  { additionalProperties: false },
);
export type AgentsDocument = Static<typeof AgentsDocumentSchema>;

/** `null` first: with Ajv's type coercion a null tried against a string or number branch first would become "" or 0. */
function nullable<T extends TSchema>(schema: T) {
  return Type.Union([Type.Null(), schema]);
}

/**
 * `PUT` and `PATCH /api/agents/:id`: every field optional; an omitted field
 * keeps its value, `null` clears an optional one. An omitted `apiKey` keeps
 * the stored key; `fallbacks`, when given, replaces the whole list.
 */
export const AgentPatchSchema = Type.Object(
  {
    // Accepted so clients can send back a whole agent; it must equal the path id.
    id: Type.Optional(AgentId),
    name: Type.Optional(Name),
    description: Type.Optional(Description),
    provider: Type.Optional(ProviderKindSchema),
    endpoint: Type.Optional(HttpUrl),
    apiKey: Type.Optional(nullable(ApiKey)),
    appId: Type.Optional(nullable(AppId)),
    model: Type.Optional(nullable(Model)),
    maxTokens: Type.Optional(nullable(MaxTokens)),
    temperature: Type.Optional(nullable(Temperature)),
    systemPrompt: Type.Optional(nullable(SystemPrompt)),
    welcomeText: Type.Optional(nullable(WelcomeText)),
    capabilities: Type.Optional(Capabilities),
    rateLimit: Type.Optional(nullable(RateLimitSchema)),
    retry: Type.Optional(nullable(RetrySchema)),
    hedge: Type.Optional(nullable(HedgeSchema)),
    contentPolicy: Type.Optional(ContentPolicySchema),
    features: Type.Optional(FeaturesSchema),
    isActive: Type.Optional(Type.Boolean()),
    timeouts: Type.Optional(nullable(TimeoutsSchema)),
    continuation: Type.Optional(nullable(ContinuationSchema)),
    fallbacks: Type.Optional(Fallbacks),
    createdAt: Type.Optional(Timestamp),
    updatedAt: Type.Optional(Timestamp),
  },
  { additionalProperties: false, minProperties: 1 },
);
export type AgentPatch = Static<typeof AgentPatchSchema>;

// ---- requests ----

export const AgentParams = Type.Object({ id: AgentId }, { additionalProperties: false });
export const ListQuery = Type.Object(
  { includeInactive: Type.Optional(Type.Boolean({ description: 'Admins only; ignored for other callers.' })) },
  { additionalProperties: false },
);

// ---- responses ----

const FeaturesView = Type.Object({
  supportsStream: Type.Boolean(),
  supportsChatId: Type.Boolean(),
  supportsDetail: Type.Boolean(),
  supportsFiles: Type.Boolean(),
  supportsImages: Type.Boolean(),
  streamingConfig: Type.Optional(
    Type.Object({
      enabled: Type.Optional(Type.Boolean()),
      endpoint: Type.Optional(Type.String()),
      statusEvents: Type.Optional(Type.Boolean()),
      flowNodeStatus: Type.Optional(Type.Boolean()),
    }),
  ),
});

const TimeoutsView = Type.Object({
  connectMs: Type.Optional(Type.Integer()),
  firstTokenMs: Type.Optional(Type.Integer()),
  idleMs: Type.Optional(Type.Integer()),
  totalMs: Type.Optional(Type.Integer()),
});

const FallbackView = Type.Object({
  provider: Type.String(),
  endpoint: Type.String(),
  appId: Type.Optional(Type.String()),
  model: Type.Optional(Type.String()),
  timeouts: Type.Optional(TimeoutsView),
  continuation: Type.Optional(Type.String()),
  hasApiKey: Type.Boolean(),
});

/**
 * An agent as callers see it: the original LLMChat list shape plus
 * welcomeText and simulated. Admins also get the configuration fields
 * (never a key or its ciphertext: `hasApiKey` says whether one is stored).
 */
export const AgentView = Type.Object({
  id: Type.String(),
  name: Type.String(),
  description: Type.String(),
  provider: Type.String(),
  model: Type.String(),
  status: Type.Union([Type.Literal('active'), Type.Literal('inactive')]),
  capabilities: Type.Array(Type.String()),
  features: FeaturesView,
  welcomeText: Type.Optional(Type.String()),
  simulated: Type.Boolean(),
  /** Its first endpoint can continue an answer where it stopped (the chat's "continue" action); false on FastGPT, Dify and `restart`. */
  canContinue: Type.Boolean(),
  // Admin-only fields.
  isActive: Type.Optional(Type.Boolean()),
  endpoint: Type.Optional(Type.String()),
  appId: Type.Optional(Type.String()),
  hasApiKey: Type.Optional(Type.Boolean()),
  maxTokens: Type.Optional(Type.Integer()),
  temperature: Type.Optional(Type.Number()),
  systemPrompt: Type.Optional(Type.String()),
  rateLimit: Type.Optional(
    Type.Object({
      requestsPerMinute: Type.Optional(Type.Integer()),
      tokensPerMinute: Type.Optional(Type.Integer()),
      tokensPerDay: Type.Optional(Type.Integer()),
      tokensPerMonth: Type.Optional(Type.Integer()),
      tokensPerUserPerDay: Type.Optional(Type.Integer()),
      tokensPerUserPerMonth: Type.Optional(Type.Integer()),
    }),
  ),
  retry: Type.Optional(Type.Object({ maxAttempts: Type.Optional(Type.Integer()), baseDelayMs: Type.Optional(Type.Integer()), maxDelayMs: Type.Optional(Type.Integer()) })),
  hedge: Type.Optional(Type.Object({ afterMs: Type.Union([Type.Integer(), Type.Literal('p95')]) })),
  contentPolicy: Type.Optional(Type.String()),
  timeouts: Type.Optional(TimeoutsView),
  continuation: Type.Optional(Type.String()),
  fallbacks: Type.Optional(Type.Array(FallbackView)),
  createdAt: Type.Optional(Type.String()),
  updatedAt: Type.Optional(Type.String()),
});
export type AgentViewType = Static<typeof AgentView>;

export const AgentStatusView = Type.Object({
  agentId: Type.String(),
  status: Type.Union([Type.Literal('active'), Type.Literal('inactive')]),
  isActive: Type.Boolean(),
  endpoints: Type.Array(
    Type.Object({
      position: Type.Integer(),
      provider: Type.String(),
      /** Admins only: the URL's host, never its path or query. */
      host: Type.Optional(Type.String()),
      /** Admins only: the endpoint's circuit breaker, shared by every instance. */
      breaker: Type.Optional(
        Type.Object({
          state: Type.Union([Type.Literal('closed'), Type.Literal('open'), Type.Literal('half_open'), Type.Literal('unknown')]),
          opens: Type.Optional(Type.Integer()),
          openUntil: Type.Optional(Type.String()),
          lastFailureAt: Type.Optional(Type.String()),
          error: Type.Optional(Type.String()),
        }),
      ),
      /** Admins only: failed upstream attempts in the last hour. */
      failures: Type.Optional(Type.Object({ lastHour: Type.Integer() })),
    }),
  ),
});
export type AgentStatusViewType = Static<typeof AgentStatusView>;

/** `GET /:id/validate`: the original LLMChat shape; no upstream call. */
export const AgentConfigCheckView = Type.Object({
  agentId: Type.String(),
  isValid: Type.Boolean(),
  exists: Type.Boolean(),
  isActive: Type.Boolean(),
});
export type AgentConfigCheck = Static<typeof AgentConfigCheckView>;

export const EndpointCheckView = Type.Object({
  position: Type.Integer(),
  provider: Type.String(),
  host: Type.String(),
  ok: Type.Boolean(),
  latencyMs: Type.Number(),
  model: Type.Optional(Type.String()),
  error: Type.Optional(Type.Object({ code: Type.String(), message: Type.String(), status: Type.Optional(Type.Integer()) })),
});
export type EndpointCheck = Static<typeof EndpointCheckView>;

/** `POST /:id/validate`: a real call to every endpoint. */
export const AgentValidationView = Type.Object({
  agentId: Type.String(),
  ok: Type.Boolean(),
  endpoints: Type.Array(EndpointCheckView),
});
export type AgentValidation = Static<typeof AgentValidationView>;

export const ReloadView = Type.Object({ totalAgents: Type.Integer(), activeAgents: Type.Integer() });
export const ImportView = Type.Object({ imported: Type.Integer(), created: Type.Integer(), updated: Type.Integer(), agents: Type.Array(AgentView) });
export const DeletedView = Type.Object({ id: Type.String(), deleted: Type.Literal(true) });
