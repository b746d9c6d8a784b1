import crypto from 'node:crypto';
import fs from 'node:fs/promises';
import path from 'node:path';
import type { Logger } from 'pino';
import type { Config } from '../../config.js';
import type { DatabaseHandle } from '../../db/database.js';
import type { AgentEndpointRow, EndpointTimeouts } from '../../db/schema.js';
import { AppError, notFound } from '../../errors.js';
import type { Secrets } from '../../secrets.js';
import { Channels, type SharedState, type Unsubscribe } from '../../shared-state/shared-state.js';
import type { AuditLog } from '../audit/audit-log.js';
import { ADDRESS_FORBIDDEN_CODE, type OutboundPolicy } from '../providers/outbound-policy.js';
import type { ProviderRegistry } from '../providers/registry.js';
import type { ResolvedEndpoint } from '../providers/types.js';
import { hostOf } from './agent-views.js';
import { checkAgentInput, configInvalid, definitionProblems, parseAgentsFile, validateAgentsDocument, validationFailed } from './agents-file.js';
import * as repo from './repository.js';
import { AGENT_ID_PATTERN, type AgentConfigCheck, type AgentInput, type AgentPatch, type AgentValidation, type EndpointCheck } from './schema.js';
import { createSecretBox, type SecretBox } from './secret-box.js';
import { DEFAULT_FEATURES, type Actor, type AgentConfig, type AgentDefinition, type AgentFallbackConfig, type EndpointDefinition, type ResolvedAgent } from './types.js';

/**
 * Agents live in the database; every instance keeps all of them, endpoints
 * and decrypted keys included, in a Map for the chat path. A change is
 * written to the database, applied to this instance's cache, then announced
 * on `Channels.agentsChanged` (the agent id, or `*` for all) so every other
 * instance re-reads it. A periodic full reload covers lost notices.
 */

export interface AgentsServiceDeps {
  database: DatabaseHandle;
  state: SharedState;
  providers: Pick<ProviderRegistry, 'validate'>;
  /** Refuses endpoints whose host is an IP address upstream calls may not reach, at create and update time. */
  outbound: Pick<OutboundPolicy, 'literalRefusal'>;
  audit: Pick<AuditLog, 'record'>;
  config: Pick<Config, 'agentsConfigPath'>;
  secrets: Pick<Secrets, 'secretsKey' | 'secretsKeyPrevious'>;
  logger: Logger;
  /** Environment for `${NAME}` placeholders in agents.json (default: process.env). */
  env?: Readonly<Record<string, string | undefined>>;
  /** Period of the safety-net full reload (default 60 s; 0 turns it off). */
  reloadIntervalMs?: number;
}

export interface ImportResult {
  imported: number;
  created: number;
  updated: number;
  /** The imported agents, in document order. */
  agents: AgentConfig[];
}

export interface AgentCounts {
  totalAgents: number;
  activeAgents: number;
}

/** What `seedDemoAgent` did: created it, moved it to the mock's new URL, found it in place, or left an admin-owned `demo` alone. */
export type SeedDemoResult = 'created' | 'moved' | 'unchanged' | 'not-simulated';

export interface AgentsService {
  /** Imports AGENTS_CONFIG_PATH (if set), subscribes to change notices and loads the cache. */
  start(): Promise<void>;
  stop(): Promise<void>;
  /**
   * The chat path: a Map lookup, no I/O. Throws AGENT_NOT_FOUND (404) for an
   * unknown id and AGENT_INACTIVE (409) for a disabled agent.
   */
  getActive(id: string): ResolvedAgent;
  /** Any agent, active or not; undefined when unknown. */
  find(id: string): ResolvedAgent | undefined;
  /** Active agents by name. */
  listActive(): AgentConfig[];
  /** Agents by name; inactive ones only when asked. */
  list(options?: { includeInactive?: boolean }): AgentConfig[];
  counts(): AgentCounts;
  create(input: AgentInput, actor: Actor): Promise<AgentConfig>;
  /** Partial update (PUT and PATCH): omitted fields, `apiKey` included, keep their value; `null` clears. */
  update(id: string, patch: AgentPatch, actor: Actor): Promise<AgentConfig>;
  remove(id: string, actor: Actor): Promise<void>;
  setActive(id: string, active: boolean, actor: Actor): Promise<AgentConfig>;
  /** Upserts every agent of an agents document (`{agents: [...]}`) in one transaction; no placeholders. */
  importDocument(document: unknown, actor: Actor): Promise<ImportResult>;
  /** Re-imports AGENTS_CONFIG_PATH when set, then reloads every instance's cache. */
  reload(actor?: Actor): Promise<AgentCounts>;
  /** A real call to each endpoint of the agent through its provider adapter. */
  validateEndpoints(id: string, actor: Actor): Promise<AgentValidation>;
  /** The original LLMChat config check, without calling the upstream. */
  checkConfig(id: string): AgentConfigCheck;
  /**
   * Embedded default: creates the simulated `demo` agent on the in-process
   * mock upstream (base URL, e.g. `http://127.0.0.1:3099`) when no `demo`
   * exists; if a simulated one exists, points it at `mockUrl` (the port may change).
   */
  seedDemoAgent(mockUrl: string): Promise<SeedDemoResult>;
}

export const DEMO_AGENT_ID = 'demo';
const DEFAULT_RELOAD_MS = 60_000;
const SUBSCRIBE_WAIT_MS = 5_000;
const SUBSCRIBE_RETRY_MS = 5_000;
/** How long a probe may take to come back before the subscription is considered lost. */
const PROBE_WAIT_MS = 3_000;
/** Subscription checks soon after start (a lost subscription shows up within moments), then with each periodic reload. */
const EARLY_CHECKS_MS = [1_000, 5_000];
const ALL = '*';
const PROBE_PREFIX = 'probe:';
const ID = new RegExp(AGENT_ID_PATTERN);

function deepFreeze<T>(value: T): T {
  if (value !== null && typeof value === 'object' && !Object.isFrozen(value)) {
    Object.freeze(value);
    for (const child of Object.values(value)) deepFreeze(child);
  }
  return value;
}

function iso(value: Date | string): string {
  return new Date(value).toISOString();
}

function clip(id: string): string {
  return id.length > 64 ? `${id.slice(0, 64)}…` : id;
}

function orUndefined<T>(value: T | null | undefined): T | undefined {
  return value ?? undefined;
}

function byName(a: AgentConfig, b: AgentConfig): number {
  return a.name.localeCompare(b.name) || a.id.localeCompare(b.id);
}

/** The definition currently stored, with every key "kept" (undefined). */
function definitionFromStored(stored: repo.StoredAgent): AgentDefinition {
  const { row } = stored;
  return {
    id: row.id,
    name: row.name,
    description: row.description,
    maxTokens: orUndefined(row.max_tokens),
    temperature: orUndefined(row.temperature),
    systemPrompt: orUndefined(row.system_prompt),
    welcomeText: orUndefined(row.welcome_text),
    capabilities: [...row.capabilities],
    rateLimit: orUndefined(row.rate_limit),
    retry: orUndefined(row.retry),
    hedge: orUndefined(row.hedge),
    contentPolicy: row.content_policy ?? 'pass-through',
    features: { ...DEFAULT_FEATURES, ...row.features },
    isActive: row.is_active,
    endpoints: stored.endpoints.map((e) => ({
      provider: e.provider,
      url: e.url,
      apiKey: undefined,
      appId: orUndefined(e.app_id),
      model: orUndefined(e.model),
      timeouts: orUndefined(e.timeouts),
      continuation: orUndefined(e.continuation),
    })),
  };
}

function emptyToUndefined<T extends object>(value: T | null | undefined): T | undefined {
  if (!value) return undefined;
  const entries = Object.entries(value).filter(([, v]) => v !== undefined);
  return entries.length === 0 ? undefined : (Object.fromEntries(entries) as T);
}

/** Applies a PUT/PATCH body to the stored definition. */
function applyPatch(current: AgentDefinition, patch: AgentPatch): AgentDefinition {
  const pick = <T>(value: T | null | undefined, fallback: T | undefined): T | undefined => (value === undefined ? fallback : (value ?? undefined));
  const primary = current.endpoints[0];
  if (!primary) throw new AppError('INTERNAL', 'Stored agent has no primary endpoint');
  const nextPrimary: EndpointDefinition = {
    provider: patch.provider ?? primary.provider,
    url: patch.endpoint ?? primary.url,
    apiKey: patch.apiKey,
    appId: pick(patch.appId, primary.appId),
    model: pick(patch.model, primary.model),
    timeouts: patch.timeouts === undefined ? primary.timeouts : emptyToUndefined(patch.timeouts),
    continuation: pick(patch.continuation, primary.continuation),
  };
  const fallbacks: EndpointDefinition[] = patch.fallbacks
    ? patch.fallbacks.map((f) => ({ provider: f.provider, url: f.endpoint, apiKey: f.apiKey, appId: f.appId, model: f.model, timeouts: emptyToUndefined(f.timeouts), continuation: f.continuation }))
    : current.endpoints.slice(1);
  return {
    id: current.id,
    name: patch.name ?? current.name,
    description: patch.description ?? current.description,
    maxTokens: pick(patch.maxTokens, current.maxTokens),
    temperature: pick(patch.temperature, current.temperature),
    systemPrompt: pick(patch.systemPrompt, current.systemPrompt),
    welcomeText: pick(patch.welcomeText, current.welcomeText),
    capabilities: patch.capabilities ? [...patch.capabilities] : current.capabilities,
    rateLimit: patch.rateLimit === undefined ? current.rateLimit : emptyToUndefined(patch.rateLimit),
    retry: patch.retry === undefined ? current.retry : emptyToUndefined(patch.retry),
    hedge: patch.hedge === undefined ? current.hedge : (patch.hedge ?? undefined),
    contentPolicy: patch.contentPolicy ?? current.contentPolicy,
    features: patch.features ? { ...current.features, ...emptyToUndefined(patch.features) } : current.features,
    isActive: patch.isActive ?? current.isActive,
    endpoints: [nextPrimary, ...fallbacks],
  };
}

/** Whether two endpoint URLs reach the same origin (scheme, host and port): a stored key may stay only then. */
function sameOrigin(a: string, b: string): boolean {
  try {
    return new URL(a).origin === new URL(b).origin;
  } catch {
    return false;
  }
}

/** Scrubs a key out of an upstream message (some providers echo part of it) and bounds its length. */
function scrub(message: string, key: string | undefined): string {
  let out = message;
  if (key && key.length >= 4) out = out.split(key).join('[redacted]');
  return out.length > 500 ? `${out.slice(0, 500)}…` : out;
}

export function createAgentsService(deps: AgentsServiceDeps): AgentsService {
  const { database, state, providers, outbound, audit, config, logger } = deps;
  const db = database.db;
  const log = logger.child({ module: 'agents' });
  const box: SecretBox = createSecretBox(deps.secrets.secretsKey, deps.secrets.secretsKeyPrevious);
  const env = deps.env ?? process.env;
  const reloadIntervalMs = deps.reloadIntervalMs ?? DEFAULT_RELOAD_MS;

  let cache = new Map<string, ResolvedAgent>();
  let stopped = false;
  let timer: NodeJS.Timeout | undefined;
  let retryTimer: NodeJS.Timeout | undefined;
  let unsubscribe: Unsubscribe | undefined;
  const earlyChecks: NodeJS.Timeout[] = [];
  const instanceId = crypto.randomUUID();
  let probeSeq = 0;
  let pendingProbe: { token: string; arrived: () => void } | undefined;
  let checking = false;

  // ---- cache ----

  /** Builds the frozen cache entry; undefined (logged) when the rows are unusable. */
  function resolve(stored: repo.StoredAgent): ResolvedAgent | undefined {
    const { row } = stored;
    const primary = stored.endpoints[0];
    if (!primary || primary.position !== 0) {
      log.error({ agentId: row.id }, 'agent has no primary endpoint; it is left out of the cache');
      return undefined;
    }
    const unreadableKeys: number[] = [];
    const keyOf = (e: AgentEndpointRow): string | undefined => {
      if (e.api_key_encrypted === null) return undefined;
      try {
        return box.decrypt(e.api_key_encrypted);
      } catch (err) {
        unreadableKeys.push(e.position);
        log.error({ agentId: row.id, position: e.position, err: (err as Error).message }, 'stored API key cannot be decrypted (was SECRETS_KEY changed?)');
        return undefined;
      }
    };
    const primaryTimeouts: EndpointTimeouts = primary.timeouts ?? {};
    const endpoints: ResolvedEndpoint[] = stored.endpoints.map((e) => ({
      id: e.id,
      agentId: row.id,
      position: e.position,
      provider: e.provider,
      url: e.url,
      apiKey: keyOf(e),
      appId: orUndefined(e.app_id),
      // A fallback without its own model or timeouts uses the agent's.
      model: orUndefined(e.model) ?? orUndefined(primary.model),
      timeouts: e.position === 0 ? { ...primaryTimeouts } : { ...primaryTimeouts, ...(e.timeouts ?? {}) },
      continuation: orUndefined(e.continuation),
    }));
    const fallbacks: AgentFallbackConfig[] = stored.endpoints.slice(1).map((e) => ({
      provider: e.provider,
      endpoint: e.url,
      appId: orUndefined(e.app_id),
      model: orUndefined(e.model),
      timeouts: orUndefined(e.timeouts),
      continuation: orUndefined(e.continuation),
      hasApiKey: e.api_key_encrypted !== null,
    }));
    const agent: AgentConfig = {
      id: row.id,
      name: row.name,
      description: row.description,
      provider: primary.provider,
      endpoint: primary.url,
      appId: orUndefined(primary.app_id),
      model: orUndefined(primary.model),
      maxTokens: orUndefined(row.max_tokens),
      temperature: orUndefined(row.temperature),
      systemPrompt: orUndefined(row.system_prompt),
      welcomeText: orUndefined(row.welcome_text),
      capabilities: [...row.capabilities],
      rateLimit: orUndefined(row.rate_limit),
      retry: orUndefined(row.retry),
      hedge: orUndefined(row.hedge),
      contentPolicy: row.content_policy ?? 'pass-through',
      features: { ...DEFAULT_FEATURES, ...row.features },
      timeouts: orUndefined(primary.timeouts),
      continuation: orUndefined(primary.continuation),
      fallbacks,
      isActive: row.is_active,
      simulated: row.simulated,
      hasApiKey: primary.api_key_encrypted !== null,
      unreadableKeys,
      createdAt: iso(row.created_at),
      updatedAt: iso(row.updated_at),
    };
    return deepFreeze({ agent, endpoints });
  }

  // Cache loads run one at a time, in order, so an older read never lands after a newer one.
  let tail: Promise<unknown> = Promise.resolve();
  let queuedFullReload: Promise<void> | undefined;

  function serial<T>(task: () => Promise<T>): Promise<T> {
    const run = tail.then(task);
    tail = run.catch(() => undefined);
    return run;
  }

  function reloadAll(): Promise<void> {
    // A full reload that has not started yet will see every change made so far.
    if (queuedFullReload) return queuedFullReload;
    const run = serial(async () => {
      queuedFullReload = undefined;
      const stored = await repo.listAgents(db);
      const next = new Map<string, ResolvedAgent>();
      for (const s of stored) {
        const resolved = resolve(s);
        if (resolved) next.set(s.row.id, resolved);
      }
      cache = next;
    });
    queuedFullReload = run;
    return run;
  }

  function reloadOne(id: string): Promise<void> {
    return serial(async () => {
      const stored = await repo.findAgent(db, id);
      const resolved = stored ? resolve(stored) : undefined;
      if (resolved) cache.set(id, resolved);
      else cache.delete(id);
    });
  }

  /** After a committed change: refresh here, then tell the others. Neither failure undoes the change. */
  async function announce(id: string): Promise<void> {
    try {
      await (id === ALL ? reloadAll() : reloadOne(id));
    } catch (err) {
      log.warn({ err: (err as Error).message, agentId: id }, 'agent cache refresh failed; the periodic reload will retry');
    }
    await publishNotice(id);
  }

  async function publishNotice(id: string): Promise<void> {
    try {
      await state.publish(Channels.agentsChanged, id);
    } catch (err) {
      log.warn({ err: (err as Error).message, agentId: id }, 'agents-changed notice not published; other instances pick the change up at their next periodic reload');
    }
  }

  function onNotice(message: string): void {
    if (message.startsWith(PROBE_PREFIX)) {
      // Every instance sees every probe; only the sender's own matters.
      if (pendingProbe?.token === message) pendingProbe.arrived();
      return;
    }
    if (stopped) return;
    if (message !== ALL && !ID.test(message)) {
      log.warn({ message: message.slice(0, 80) }, 'ignoring malformed agents-changed notice');
      return;
    }
    (message === ALL ? reloadAll() : reloadOne(message)).catch((err: unknown) => {
      log.warn({ err: (err as Error).message, agentId: message }, 'agent cache reload after a notice failed; the periodic reload will retry');
    });
  }

  /** Subscribes without holding up start() while Redis is away; retries until it works. */
  async function subscribe(): Promise<void> {
    const attempt = state.subscribe(Channels.agentsChanged, onNotice).then(
      async (unsub) => {
        if (stopped) await unsub();
        else unsubscribe = unsub;
        return true;
      },
      (err: unknown) => {
        log.warn({ err: (err as Error).message }, 'cannot subscribe to agents-changed notices; retrying');
        if (!stopped) {
          retryTimer = setTimeout(() => void subscribe(), SUBSCRIBE_RETRY_MS);
          retryTimer.unref();
        }
        return false;
      },
    );
    let waited: NodeJS.Timeout | undefined;
    const timeout = new Promise<'timeout'>((r) => (waited = setTimeout(() => r('timeout'), SUBSCRIBE_WAIT_MS)));
    const outcome = await Promise.race([attempt, timeout]);
    clearTimeout(waited);
    if (outcome === 'timeout') log.warn('subscribing to agents-changed notices is taking long; going on, the periodic reload covers the gap');
  }

  /** Sends a probe on the channel; false when it does not come back (the subscription is silently gone). */
  async function probe(): Promise<boolean> {
    const token = `${PROBE_PREFIX}${instanceId}:${++probeSeq}`;
    let timer: NodeJS.Timeout | undefined;
    const arrived = new Promise<boolean>((resolve) => {
      pendingProbe = { token, arrived: () => resolve(true) };
      timer = setTimeout(() => resolve(false), PROBE_WAIT_MS);
    });
    try {
      await state.publish(Channels.agentsChanged, token);
      return await arrived;
    } catch {
      // Redis unreachable: nothing to learn about the subscription now.
      return true;
    } finally {
      clearTimeout(timer);
      pendingProbe = undefined;
    }
  }

  /**
   * A subscription can vanish without an error (a Redis client that
   * recycles its connection before it is ready forgets channels it had
   * confirmed). Probe it; when lost, subscribe again and catch up.
   */
  async function checkSubscription(): Promise<void> {
    if (stopped || !unsubscribe || checking) return;
    checking = true;
    try {
      if ((await probe()) || stopped) return;
      log.warn('agents-changed subscription was lost; subscribing again');
      const unsub = unsubscribe;
      unsubscribe = undefined;
      await unsub?.().catch(() => undefined);
      await subscribe();
      await reloadAll();
    } finally {
      checking = false;
    }
  }

  function checkSubscriptionLater(): void {
    checkSubscription().catch((err: unknown) => log.warn({ err: (err as Error).message }, 'agents-changed subscription check failed'));
  }

  // ---- writes ----

  /**
   * Seals each endpoint's key. `apiKey` undefined keeps a stored key, but
   * never sends it to another host: the primary keeps the primary's only
   * while its origin (scheme, host, port) stays the same; a fallback keeps
   * the key of a stored endpoint with the same provider and URL (same
   * position first), so a key never follows a reordered list either. An
   * endpoint moved elsewhere without a key in the same request has none.
   */
  function sealEndpoints(endpoints: EndpointDefinition[], stored: AgentEndpointRow[]): repo.EndpointValues[] {
    return endpoints.map((e, position) => {
      let apiKeyEncrypted: string | null;
      if (typeof e.apiKey === 'string') apiKeyEncrypted = box.encrypt(e.apiKey);
      else if (e.apiKey === null) apiKeyEncrypted = null;
      else if (position === 0) {
        const primary = stored.find((s) => s.position === 0);
        apiKeyEncrypted = primary !== undefined && sameOrigin(primary.url, e.url) ? primary.api_key_encrypted : null;
      }
      else {
        const same = (s: AgentEndpointRow) => s.provider === e.provider && s.url === e.url && s.api_key_encrypted !== null;
        const match = stored.find((s) => s.position === position && same(s)) ?? stored.find((s) => s.position > 0 && same(s)) ?? stored.find(same);
        apiKeyEncrypted = match?.api_key_encrypted ?? null;
      }
      return { provider: e.provider, url: e.url, apiKeyEncrypted, appId: e.appId, model: e.model, timeouts: e.timeouts, continuation: e.continuation };
    });
  }

  /** Throws 400 UPSTREAM_ADDRESS_FORBIDDEN when an endpoint's host is an IP address upstream calls may not reach; names are checked when connecting. */
  function refuseForbiddenAddresses(definition: AgentDefinition, prefix = ''): void {
    const problems: { path: string; message: string }[] = [];
    definition.endpoints.forEach((endpoint, position) => {
      const refusal = outbound.literalRefusal(endpoint.url);
      const at = position === 0 ? 'endpoint' : `fallbacks[${position - 1}].endpoint`;
      if (refusal) problems.push({ path: prefix ? `${prefix}.${at}` : at, message: refusal.message });
    });
    if (problems.length > 0) {
      throw new AppError('UPSTREAM_ADDRESS_FORBIDDEN', `Agent endpoint refused: ${problems.map((p) => `${p.path}: ${p.message}`).join('; ')}`, problems);
    }
  }

  async function record(action: string, actor: Actor | undefined, targetId: string | undefined, detail?: Record<string, unknown>, success = true): Promise<void> {
    await audit.record({
      actorId: actor?.userId,
      actorUsername: actor?.username ?? 'system',
      action,
      targetType: 'agent',
      targetId,
      success,
      ip: actor?.ip,
      detail,
    });
  }

  function mustFind(id: string): ResolvedAgent {
    const resolved = cache.get(id);
    if (!resolved) throw notFound('AGENT_NOT_FOUND', `Agent "${clip(id)}"`);
    return resolved;
  }

  /** The cache entry just written; a failed refresh (logged) falls back to a direct read. */
  async function fresh(id: string): Promise<AgentConfig> {
    const cached = cache.get(id);
    if (cached) return cached.agent;
    const stored = await repo.findAgent(db, id);
    const resolved = stored ? resolve(stored) : undefined;
    if (!resolved) throw notFound('AGENT_NOT_FOUND', `Agent "${clip(id)}"`);
    return resolved.agent;
  }

  async function importDefinitions(definitions: AgentDefinition[], actor: Actor | undefined, source: string): Promise<ImportResult> {
    definitions.forEach((definition, index) => refuseForbiddenAddresses(definition, `agents[${index}]`));
    let created = 0;
    let updated = 0;
    // Rows are locked in id order so concurrent imports (several instances starting) cannot deadlock.
    const ordered = [...definitions].sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
    await db.transaction().execute(async (trx) => {
      for (const definition of ordered) {
        let current = await repo.findAgent(trx, definition.id, { forUpdate: true });
        if (!current) {
          if (await repo.insertAgent(trx, definition, sealEndpoints(definition.endpoints, []))) {
            created += 1;
            continue;
          }
          // Inserted meanwhile by another instance: update it instead.
          current = await repo.findAgent(trx, definition.id, { forUpdate: true });
          if (!current) throw new AppError('INTERNAL', 'Agent vanished during import');
        }
        await repo.replaceAgent(trx, current, definition, sealEndpoints(definition.endpoints, current.endpoints), false);
        updated += 1;
      }
    });
    await announce(ALL);
    await record('agent.import', actor, undefined, { source, created, updated, ids: definitions.map((d) => d.id) });
    const agents = definitions.map((d) => cache.get(d.id)?.agent).filter((a): a is AgentConfig => a !== undefined);
    return { imported: definitions.length, created, updated, agents };
  }

  async function importFile(actor: Actor | undefined): Promise<void> {
    const file = config.agentsConfigPath;
    if (!file) return;
    let text: string;
    try {
      text = await fs.readFile(file, 'utf8');
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code ?? 'error';
      throw configInvalid([{ path: '(file)', message: `cannot read ${file} (${code})` }], 'AGENTS_CONFIG_PATH');
    }
    const definitions = parseAgentsFile(text, env, path.basename(file));
    await importDefinitions(definitions, actor, `file:${path.basename(file)}`);
    log.info({ file, agents: definitions.length }, 'agents imported from AGENTS_CONFIG_PATH');
  }

  function counts(): AgentCounts {
    let activeAgents = 0;
    for (const { agent } of cache.values()) if (agent.isActive) activeAgents += 1;
    return { totalAgents: cache.size, activeAgents };
  }

  return {
    async start() {
      stopped = false;
      await importFile(undefined);
      // Subscribe before the first load so no change slips between the two.
      await subscribe();
      await reloadAll();
      for (const ms of EARLY_CHECKS_MS) {
        const early = setTimeout(checkSubscriptionLater, ms);
        early.unref();
        earlyChecks.push(early);
      }
      if (reloadIntervalMs > 0) {
        timer = setInterval(() => {
          checkSubscriptionLater();
          reloadAll().catch((err: unknown) => log.warn({ err: (err as Error).message }, 'periodic agent reload failed; keeping the cached agents'));
        }, reloadIntervalMs);
        timer.unref();
      }
      log.info(counts(), 'agents loaded');
    },

    async stop() {
      stopped = true;
      if (timer) clearInterval(timer);
      if (retryTimer) clearTimeout(retryTimer);
      for (const early of earlyChecks.splice(0)) clearTimeout(early);
      pendingProbe?.arrived();
      timer = retryTimer = undefined;
      const unsub = unsubscribe;
      unsubscribe = undefined;
      if (unsub) await unsub().catch(() => undefined);
      await tail;
    },

    getActive(id) {
      const resolved = cache.get(id);
      if (resolved === undefined) throw notFound('AGENT_NOT_FOUND', `Agent "${clip(id)}"`);
      if (!resolved.agent.isActive) throw new AppError('AGENT_INACTIVE', `Agent "${clip(id)}" is disabled; pick another agent`);
      return resolved;
    },

    find(id) {
      return cache.get(id);
    },

    listActive() {
      const out: AgentConfig[] = [];
      for (const { agent } of cache.values()) if (agent.isActive) out.push(agent);
      return out.sort(byName);
    },

    list(options = {}) {
      const out: AgentConfig[] = [];
      for (const { agent } of cache.values()) if (options.includeInactive || agent.isActive) out.push(agent);
      return out.sort(byName);
    },

    counts,

    async create(input, actor) {
      const definition = checkAgentInput(input);
      refuseForbiddenAddresses(definition);
      const inserted = await db.transaction().execute((trx) => repo.insertAgent(trx, definition, sealEndpoints(definition.endpoints, [])));
      if (!inserted) throw new AppError('AGENT_EXISTS', `An agent with id "${definition.id}" already exists; pick another id or update it`);
      await announce(definition.id);
      await record('agent.create', actor, definition.id, { provider: definition.endpoints[0]?.provider, fallbacks: definition.endpoints.length - 1 });
      return fresh(definition.id);
    },

    async update(id, patch, actor) {
      if (patch.id !== undefined && patch.id !== id) throw validationFailed([{ path: 'id', message: `cannot be changed (the agent is "${id}")` }]);
      const fields = Object.keys(patch).filter((k) => k !== 'id' && k !== 'createdAt' && k !== 'updatedAt');
      let keysDropped: number[] = [];
      await db.transaction().execute(async (trx) => {
        const current = await repo.findAgent(trx, id, { forUpdate: true });
        if (!current) throw notFound('AGENT_NOT_FOUND', `Agent "${clip(id)}"`);
        const next = applyPatch(definitionFromStored(current), patch);
        const problems = definitionProblems(next);
        if (problems.length > 0) throw validationFailed(problems);
        refuseForbiddenAddresses(next);
        const primary = current.endpoints[0];
        // The demo agent stops being "simulated" once it points somewhere else.
        const movedAway = next.endpoints[0]?.provider !== primary?.provider || next.endpoints[0]?.url !== primary?.url;
        const sealed = sealEndpoints(next.endpoints, current.endpoints);
        // Endpoints whose stored key was dropped because they moved to another host without a new one.
        keysDropped = sealed.flatMap((e, position) => (e.apiKeyEncrypted === null && next.endpoints[position]?.apiKey === undefined && current.endpoints.some((c) => c.api_key_encrypted !== null && c.position === position) ? [position] : []));
        await repo.replaceAgent(trx, current, next, sealed, current.row.simulated && !movedAway);
      });
      await announce(id);
      await record('agent.update', actor, id, { fields, apiKeyChanged: patch.apiKey !== undefined, ...(keysDropped.length > 0 ? { apiKeysDropped: keysDropped } : {}) });
      return fresh(id);
    },

    async remove(id, actor) {
      if (!(await repo.deleteAgent(db, id))) throw notFound('AGENT_NOT_FOUND', `Agent "${clip(id)}"`);
      await announce(id);
      await record('agent.delete', actor, id);
    },

    async setActive(id, active, actor) {
      if (!(await repo.setAgentActive(db, id, active))) throw notFound('AGENT_NOT_FOUND', `Agent "${clip(id)}"`);
      await announce(id);
      await record(active ? 'agent.enable' : 'agent.disable', actor, id);
      return fresh(id);
    },

    async importDocument(document, actor) {
      let definitions: AgentDefinition[];
      try {
        definitions = validateAgentsDocument(document, [], 'The agents document');
      } catch (err) {
        await record('agent.import', actor, undefined, { source: 'api', problems: err instanceof AppError ? err.details : undefined }, false);
        throw err;
      }
      return importDefinitions(definitions, actor, 'api');
    },

    async reload(actor) {
      if (config.agentsConfigPath) {
        await importFile(actor);
      } else {
        await reloadAll();
        await publishNotice(ALL);
      }
      const result = counts();
      await record('agent.reload', actor, undefined, { ...result, file: config.agentsConfigPath ? path.basename(config.agentsConfigPath) : null });
      return result;
    },

    async validateEndpoints(id, actor) {
      const resolved = mustFind(id);
      const checks = await Promise.all(
        resolved.endpoints.map(async (endpoint): Promise<EndpointCheck> => {
          const base = { position: endpoint.position, provider: endpoint.provider, host: hostOf(endpoint.url) };
          if (resolved.agent.unreadableKeys.includes(endpoint.position)) {
            return { ...base, ok: false, latencyMs: 0, error: { code: 'api_key_unreadable', message: 'The stored API key cannot be decrypted with this SECRETS_KEY; set the key again' } };
          }
          const started = performance.now();
          try {
            const result = await providers.validate(endpoint);
            const check: EndpointCheck = { ...base, ok: result.ok, latencyMs: result.latencyMs };
            if (result.model) check.model = result.model;
            if (result.error) {
              check.error = { code: scrub(result.error.code, endpoint.apiKey), message: scrub(result.error.message, endpoint.apiKey) };
              if (result.error.status !== undefined) check.error.status = result.error.status;
            }
            return check;
          } catch (err) {
            const message = err instanceof Error ? err.message : 'validation failed';
            return { ...base, ok: false, latencyMs: Math.round(performance.now() - started), error: { code: 'validation_failed', message: scrub(message, endpoint.apiKey) } };
          }
        }),
      );
      const ok = checks.every((c) => c.ok);
      await record('agent.validate', actor, id, { ok, endpoints: checks.map((c) => ({ position: c.position, ok: c.ok, code: c.error?.code })) });
      // The address guard refused a connection: nothing was sent, and the agent must be fixed (or the address allowed).
      const refused = checks.filter((c) => c.error?.code === ADDRESS_FORBIDDEN_CODE);
      if (refused.length > 0) {
        const listed = refused.map((c) => `endpoint ${c.position} (${c.host}): ${c.error?.message ?? ''}`).join('; ');
        throw new AppError('UPSTREAM_ADDRESS_FORBIDDEN', `Agent endpoint refused: ${listed}`, { agentId: id, endpoints: checks });
      }
      return { agentId: id, ok, endpoints: checks };
    },

    checkConfig(id) {
      const resolved = cache.get(id);
      if (!resolved) return { agentId: id, isValid: false, exists: false, isActive: false };
      const { agent } = resolved;
      return { agentId: id, isValid: agent.isActive && agent.unreadableKeys.length === 0, exists: true, isActive: agent.isActive };
    },

    async seedDemoAgent(mockUrl) {
      const url = `${mockUrl.replace(/\/+$/, '')}/v1/chat/completions`;
      const existing = await repo.findAgent(db, DEMO_AGENT_ID);
      let result: SeedDemoResult;
      if (!existing) {
        const definition: AgentDefinition = {
          id: DEMO_AGENT_ID,
          name: 'Demo assistant (simulated)',
          description: 'Answers are simulated by the built-in mock upstream on this server: no network, no real model. Try the platform with it, then add real agents as an admin.',
          maxTokens: undefined,
          temperature: undefined,
          systemPrompt: undefined,
          welcomeText: 'Hello! I am a simulated assistant: my answers come from the built-in mock upstream, not from a real model.',
          capabilities: ['chat'],
          rateLimit: undefined,
          retry: undefined,
          hedge: undefined,
          contentPolicy: 'pass-through',
          features: { ...DEFAULT_FEATURES },
          isActive: true,
          // The mock accepts any key but `bad-key`; this one is no secret.
          endpoints: [{ provider: 'openai', url, apiKey: 'demo-key', appId: undefined, model: 'mock-model', timeouts: undefined, continuation: undefined }],
        };
        const inserted = await db.transaction().execute((trx) => repo.insertAgent(trx, definition, sealEndpoints(definition.endpoints, []), true));
        result = inserted ? 'created' : 'unchanged';
        if (inserted) await record('agent.seed_demo', undefined, DEMO_AGENT_ID, { url });
      } else if (!existing.row.simulated) {
        result = 'not-simulated';
      } else if (existing.endpoints[0]?.url === url) {
        result = 'unchanged';
      } else {
        result = (await repo.moveSimulatedAgent(db, DEMO_AGENT_ID, url)) ? 'moved' : 'not-simulated';
      }
      if (result === 'created' || result === 'moved') await announce(DEMO_AGENT_ID);
      log.info({ result, url }, 'demo agent seeded');
      return result;
    },
  };
}
