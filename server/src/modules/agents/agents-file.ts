import { readFileSync } from 'node:fs';
import type { TSchema } from '@sinclair/typebox';
import { Value } from '@sinclair/typebox/value';
import { inputProblem } from '../../http/input-problem.js';
import { schemaErrors } from '../../http/schema-errors.js';
import type { EndpointTimeouts } from '../../db/schema.js';
import { AppError } from '../../errors.js';
import { continuationProblem } from '../providers/continuation-kinds.js';
import { AgentInputSchema, AgentsDocumentSchema, type AgentInput } from './schema.js';
import { DEFAULT_FEATURES, type AgentDefinition, type ConfigProblem, type EndpointDefinition } from './types.js';

/**
 * agents.json: `{ "agents": [ … ] }` (or a bare array), in the original
 * LLMChat shape. String values may hold `${ENV_NAME}` placeholders, filled
 * from the environment (`$${X}` stays a literal `${X}`), or from the file
 * named by `ENV_NAME_FILE` (the Docker and Kubernetes secrets convention, as
 * for the server's own secrets; trailing line breaks trimmed). Every problem is
 * reported at once, each with its path (`agents[2].endpoint`).
 */

const PLACEHOLDER = /\$(\$?)\{([^}]*)\}/g;
const ENV_NAME = /^[A-Za-z_][A-Za-z0-9_]*$/;

/** The 422 that lists every problem of an agents document. */
export function configInvalid(problems: readonly ConfigProblem[], what = 'The agents configuration'): AppError {
  const listed = problems.map((p) => `${p.path}: ${p.message}`).join('; ');
  const noun = problems.length === 1 ? 'problem' : 'problems';
  return new AppError('AGENTS_CONFIG_INVALID', `${what} has ${problems.length} ${noun}: ${listed}`, problems);
}

/** Replaces `${NAME}` in every string value (keys are left alone). An unset variable is a problem, never "". */
export function substitutePlaceholders(value: unknown, env: Readonly<Record<string, string | undefined>>, path = ''): { value: unknown; problems: ConfigProblem[] } {
  const problems: ConfigProblem[] = [];
  const visit = (node: unknown, at: string): unknown => {
    if (typeof node === 'string') {
      return node.replace(PLACEHOLDER, (whole, escaped: string, name: string) => {
        if (escaped) return whole.slice(1);
        if (!ENV_NAME.test(name)) {
          problems.push({ path: at || '(root)', message: `"\${${name.slice(0, 64)}}" is not a valid placeholder: use \${NAME} with letters, digits and _` });
          return whole;
        }
        const replacement = env[name];
        const file = env[`${name}_FILE`];
        if (replacement !== undefined && file !== undefined) {
          problems.push({ path: at || '(root)', message: `environment variables ${name} and ${name}_FILE are both set: give the value one way only` });
          return whole;
        }
        if (file !== undefined) {
          try {
            return readFileSync(file, 'utf8').replace(/[\r\n]+$/, '');
          } catch (err) {
            problems.push({ path: at || '(root)', message: `${name}_FILE cannot read ${file} (${(err as NodeJS.ErrnoException).code ?? 'error'})` });
            return whole;
          }
        }
        if (replacement === undefined) {
          problems.push({ path: at || '(root)', message: `environment variable ${name} is not set` });
          return whole;
        }
        return replacement;
      });
    }
    if (Array.isArray(node)) return node.map((item, i) => visit(item, `${at}[${i}]`));
    if (node !== null && typeof node === 'object') {
      const out: Record<string, unknown> = {};
      for (const [key, child] of Object.entries(node)) out[key] = visit(child, at ? `${at}.${key}` : key);
      return out;
    }
    return node;
  };
  return { value: visit(value, path), problems };
}

/** `/agents/2/fallbacks/0/endpoint` → `agents[2].fallbacks[0].endpoint`. */
export function pointerToPath(pointer: string, prefix = ''): string {
  let out = prefix;
  for (const raw of pointer.split('/').slice(1)) {
    const segment = raw.replace(/~1/g, '/').replace(/~0/g, '~');
    if (/^\d+$/.test(segment)) out += `[${segment}]`;
    else out += out ? `.${segment}` : segment;
  }
  return out || '(root)';
}

/** Structural problems of `value` against `schema`, one per path. */
export function schemaProblems(schema: TSchema, value: unknown, prefix = ''): ConfigProblem[] {
  return schemaErrors(schema, value).map((e) => ({ path: pointerToPath(e.pointer, prefix), message: e.message }));
}

function urlProblem(value: string): string | undefined {
  let url: URL;
  try {
    url = new URL(value);
  } catch {
    return 'is not a valid URL';
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') return 'must be an http:// or https:// URL';
  if (url.username || url.password) return 'must not contain credentials; put the key in apiKey';
  return undefined;
}

function timeoutProblems(timeouts: EndpointTimeouts | undefined, at: string): ConfigProblem[] {
  if (!timeouts?.totalMs) return [];
  const problems: ConfigProblem[] = [];
  for (const key of ['connectMs', 'firstTokenMs', 'idleMs'] as const) {
    const v = timeouts[key];
    if (v !== undefined && v > timeouts.totalMs) problems.push({ path: `${at}.${key}`, message: `must not exceed totalMs (${timeouts.totalMs})` });
  }
  return problems;
}

const join = (prefix: string, field: string) => (prefix ? `${prefix}.${field}` : field);

/**
 * What a schema cannot say about a definition: URLs that parse, a model for
 * providers that need one, timeouts that fit inside totalMs. Endpoint 0 is
 * reported under the agent's own fields, endpoint n under `fallbacks[n-1]`.
 */
export function definitionProblems(definition: AgentDefinition, prefix = ''): ConfigProblem[] {
  const problems: ConfigProblem[] = [];
  definition.endpoints.forEach((endpoint, position) => {
    const at = position === 0 ? prefix : join(prefix, `fallbacks[${position - 1}]`);
    const field = (name: string) => (at ? `${at}.${name}` : name);
    const bad = urlProblem(endpoint.url);
    if (bad) problems.push({ path: field('endpoint'), message: bad });
    const model = endpoint.model ?? definition.endpoints[0]?.model;
    if ((endpoint.provider === 'openai' || endpoint.provider === 'anthropic') && !model) {
      problems.push({ path: field('model'), message: `is required for provider ${endpoint.provider}${position > 0 ? ' (a fallback without one inherits the agent model, and it has none)' : ''}` });
    }
    problems.push(...timeoutProblems(endpoint.timeouts, field('timeouts')));
    const unsupported = continuationProblem(endpoint.provider, endpoint.continuation);
    if (unsupported) problems.push({ path: field('continuation'), message: unsupported });
  });
  return problems;
}

function compact<T extends object>(value: T | undefined): T | undefined {
  if (!value) return undefined;
  const entries = Object.entries(value).filter(([, v]) => v !== undefined);
  return entries.length === 0 ? undefined : (Object.fromEntries(entries) as T);
}

/** Applies defaults to a schema-valid input. (A fallback without a model inherits the agent's when resolved.) */
export function definitionFromInput(input: AgentInput): AgentDefinition {
  const primary: EndpointDefinition = {
    provider: input.provider,
    url: input.endpoint,
    apiKey: input.apiKey,
    appId: input.appId,
    model: input.model,
    timeouts: compact(input.timeouts),
    continuation: input.continuation,
  };
  const fallbacks: EndpointDefinition[] = (input.fallbacks ?? []).map((f) => ({
    provider: f.provider,
    url: f.endpoint,
    apiKey: f.apiKey,
    appId: f.appId,
    model: f.model,
    timeouts: compact(f.timeouts),
    continuation: f.continuation,
  }));
  return {
    id: input.id,
    name: input.name,
    description: input.description ?? '',
    maxTokens: input.maxTokens,
    temperature: input.temperature,
    systemPrompt: input.systemPrompt,
    welcomeText: input.welcomeText,
    capabilities: [...(input.capabilities ?? [])],
    rateLimit: compact(input.rateLimit),
    retry: compact(input.retry),
    hedge: input.hedge,
    contentPolicy: input.contentPolicy ?? 'pass-through',
    features: { ...DEFAULT_FEATURES, ...compact(input.features) },
    isActive: input.isActive ?? true,
    endpoints: [primary, ...fallbacks],
  };
}

/** Validates one agent (a `POST /api/agents` body that passed the schema); throws VALIDATION_FAILED. */
export function checkAgentInput(input: AgentInput): AgentDefinition {
  const definition = definitionFromInput(input);
  const problems = definitionProblems(definition);
  if (problems.length > 0) throw validationFailed(problems);
  return definition;
}

export function validationFailed(problems: readonly ConfigProblem[]): AppError {
  return new AppError('VALIDATION_FAILED', `Invalid agent: ${problems.map((p) => `${p.path} ${p.message}`).join('; ')}`, problems);
}

/**
 * Validates an agents document (`{agents: [...]}` or a bare array) and
 * returns its definitions, or throws AGENTS_CONFIG_INVALID listing every
 * problem. `skip` holds paths already reported (unset placeholders) so one
 * mistake is not reported twice.
 */
export function validateAgentsDocument(value: unknown, skip: readonly ConfigProblem[] = [], what?: string): AgentDefinition[] {
  const document = Array.isArray(value) ? { agents: value as unknown[] } : value;
  const problems: ConfigProblem[] = [...skip];
  const skipped = new Set(skip.map((p) => p.path));
  for (const problem of schemaProblems(AgentsDocumentSchema, document)) {
    if (!skipped.has(problem.path)) problems.push(problem);
  }
  const problem = inputProblem(document);
  if (problem && !skipped.has(pointerToPath(problem.pointer))) problems.push({ path: pointerToPath(problem.pointer), message: problem.message });
  const agents = typeof document === 'object' && document !== null ? (document as { agents?: unknown }).agents : undefined;
  const definitions: AgentDefinition[] = [];
  if (Array.isArray(agents)) {
    const firstIndex = new Map<string, number>();
    agents.forEach((agent, i) => {
      const at = `agents[${i}]`;
      if (!Value.Check(AgentInputSchema, agent)) return;
      const definition = definitionFromInput(agent);
      for (const problem of definitionProblems(definition, at)) if (!skipped.has(problem.path)) problems.push(problem);
      const earlier = firstIndex.get(definition.id);
      if (earlier !== undefined) problems.push({ path: `${at}.id`, message: `duplicates the id "${definition.id}" of agents[${earlier}]` });
      else firstIndex.set(definition.id, i);
      definitions.push(definition);
    });
  }
  if (problems.length > 0) throw configInvalid(problems, what);
  return definitions;
}

/** Where JSON.parse gave up, as line and column; never the text itself (it may hold keys). */
function jsonErrorWhere(text: string, err: unknown): string {
  const m = /position (\d+)/.exec(err instanceof Error ? err.message : '');
  if (!m) return '';
  const before = text.slice(0, Number(m[1]));
  const line = before.split('\n').length;
  const column = before.length - before.lastIndexOf('\n');
  return ` (line ${line}, column ${column})`;
}

/** Parses agents.json text: JSON, then placeholders from `env`, then validation. */
export function parseAgentsFile(text: string, env: Readonly<Record<string, string | undefined>>, source = 'agents.json'): AgentDefinition[] {
  let parsed: unknown;
  try {
    parsed = JSON.parse(text.replace(/^\uFEFF/, ''));
  } catch (err) {
    throw configInvalid([{ path: '(root)', message: `is not valid JSON${jsonErrorWhere(text, err)}` }], source);
  }
  const document = Array.isArray(parsed) ? { agents: parsed as unknown[] } : parsed;
  const substituted = substitutePlaceholders(document, env);
  try {
    return validateAgentsDocument(substituted.value, substituted.problems);
  } catch (err) {
    if (err instanceof AppError) throw configInvalid(err.details as ConfigProblem[], source);
    throw err;
  }
}
