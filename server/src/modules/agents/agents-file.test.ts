import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { AppError } from '../../errors.js';
import { parseAgentsFile, pointerToPath, substitutePlaceholders, validateAgentsDocument } from './agents-file.js';
import type { ConfigProblem } from './types.js';

const good = {
  id: 'gpt',
  name: 'GPT helper',
  description: 'General assistant',
  provider: 'openai',
  endpoint: 'https://api.example.com/v1/chat/completions',
  apiKey: 'sk-test',
  model: 'gpt-4o-mini',
  capabilities: ['chat'],
  features: { supportsStream: true, supportsChatId: false, supportsDetail: false, supportsFiles: false, supportsImages: false },
  isActive: true,
};

/** The problems an agents document raises (it must raise AGENTS_CONFIG_INVALID). */
function problemsOf(run: () => unknown): ConfigProblem[] {
  try {
    run();
  } catch (err) {
    expect(err).toBeInstanceOf(AppError);
    const appError = err as AppError;
    expect(appError.code).toBe('AGENTS_CONFIG_INVALID');
    expect(appError.statusCode).toBe(422);
    return appError.details as ConfigProblem[];
  }
  throw new Error('expected AGENTS_CONFIG_INVALID, but the document was accepted');
}

function fileProblems(agents: unknown[], env: Record<string, string> = {}): ConfigProblem[] {
  return problemsOf(() => parseAgentsFile(JSON.stringify({ agents }), env));
}

/** The single problem of one agent built from `good` with `change` applied. */
function problemFor(change: Record<string, unknown>): ConfigProblem {
  const problems = fileProblems([{ ...good, ...change }]);
  expect(problems).toHaveLength(1);
  return problems[0] as ConfigProblem;
}

describe('placeholders', () => {
  it('fills ${NAME} in string values anywhere in the document', () => {
    const text = JSON.stringify({ agents: [{ ...good, apiKey: '${OPENAI_KEY}', endpoint: 'https://${HOST}/v1/chat/completions', fallbacks: [{ provider: 'openai', endpoint: 'https://b.example.com', apiKey: 'pre-${B_KEY}-post' }] }] });
    const [agent] = parseAgentsFile(text, { OPENAI_KEY: 'sk-from-env', HOST: 'llm.internal', B_KEY: 'bb' });
    expect(agent?.endpoints[0]?.apiKey).toBe('sk-from-env');
    expect(agent?.endpoints[0]?.url).toBe('https://llm.internal/v1/chat/completions');
    expect(agent?.endpoints[1]?.apiKey).toBe('pre-bb-post');
  });

  it('reports an unset variable by name and path instead of using an empty string', () => {
    const problems = fileProblems([{ ...good, apiKey: '${MISSING_KEY}' }]);
    expect(problems).toEqual([{ path: 'agents[0].apiKey', message: 'environment variable MISSING_KEY is not set' }]);
  });

  it('reports every unset variable, and a placeholder field only once', () => {
    const problems = fileProblems([good, { ...good, id: 'b', endpoint: '${NO_URL}', apiKey: '${NO_KEY}' }]);
    expect(problems).toEqual([
      { path: 'agents[1].endpoint', message: 'environment variable NO_URL is not set' },
      { path: 'agents[1].apiKey', message: 'environment variable NO_KEY is not set' },
    ]);
  });

  it('accepts a variable set to an empty string as set (validation then judges the value)', () => {
    const problems = fileProblems([{ ...good, apiKey: '${EMPTY}' }], { EMPTY: '' });
    expect(problems).toEqual([{ path: 'agents[0].apiKey', message: 'must not be empty' }]);
  });

  it('fills ${NAME} from the file NAME_FILE names, trailing line break trimmed; both set or an unreadable file is a problem', () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'llmchat-agents-file-'));
    try {
      const keyFile = path.join(dir, 'openai_key');
      writeFileSync(keyFile, 'sk-from-file\n');
      const [agent] = parseAgentsFile(JSON.stringify({ agents: [{ ...good, apiKey: '${OPENAI_KEY}' }] }), { OPENAI_KEY_FILE: keyFile });
      expect(agent?.endpoints[0]?.apiKey).toBe('sk-from-file');
      expect(fileProblems([{ ...good, apiKey: '${OPENAI_KEY}' }], { OPENAI_KEY: 'sk-env', OPENAI_KEY_FILE: keyFile })).toEqual([
        { path: 'agents[0].apiKey', message: 'environment variables OPENAI_KEY and OPENAI_KEY_FILE are both set: give the value one way only' },
      ]);
      const missing = path.join(dir, 'nope');
      expect(fileProblems([{ ...good, apiKey: '${OPENAI_KEY}' }], { OPENAI_KEY_FILE: missing })).toEqual([{ path: 'agents[0].apiKey', message: `OPENAI_KEY_FILE cannot read ${missing} (ENOENT)` }]);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('keeps $${NAME} as a literal ${NAME}', () => {
    const { value, problems } = substitutePlaceholders({ a: 'cost $${PRICE}' }, {});
    expect(problems).toEqual([]);
    expect(value).toEqual({ a: 'cost ${PRICE}' });
  });

  it('rejects a malformed placeholder name', () => {
    const { problems } = substitutePlaceholders({ agents: [{ apiKey: '${1BAD-NAME}' }] }, {});
    expect(problems).toHaveLength(1);
    expect(problems[0]?.path).toBe('agents[0].apiKey');
    expect(problems[0]?.message).toMatch(/not a valid placeholder/);
  });

  it('leaves keys, numbers and booleans alone', () => {
    const { value } = substitutePlaceholders({ '${KEY}': 1, b: true, c: null, d: [2, '${X}'] }, { KEY: 'no', X: 'yes' });
    expect(value).toEqual({ '${KEY}': 1, b: true, c: null, d: [2, 'yes'] });
  });
});

describe('agents.json parsing', () => {
  it('accepts {agents: [...]} and applies defaults', () => {
    const [agent] = parseAgentsFile(JSON.stringify({ agents: [{ id: 'a', name: 'A', provider: 'fastgpt', endpoint: 'http://fastgpt:3000/api/v1/chat/completions', apiKey: 'fk', appId: 'app1' }] }), {});
    expect(agent).toMatchObject({
      id: 'a',
      description: '',
      isActive: true,
      capabilities: [],
      features: { supportsStream: true, supportsChatId: false, supportsDetail: false, supportsFiles: false, supportsImages: false },
    });
    expect(agent?.endpoints).toEqual([{ provider: 'fastgpt', url: 'http://fastgpt:3000/api/v1/chat/completions', apiKey: 'fk', appId: 'app1', model: undefined, timeouts: undefined }]);
  });

  it('accepts a bare array and the original createdAt/updatedAt fields', () => {
    const agents = parseAgentsFile(JSON.stringify([{ ...good, createdAt: '2024-01-01T00:00:00.000Z', updatedAt: '2024-01-02T00:00:00.000Z' }]), {});
    expect(agents.map((a) => a.id)).toEqual(['gpt']);
  });

  it('keeps fallbacks in order after the primary, with their own settings', () => {
    const [agent] = parseAgentsFile(
      JSON.stringify({
        agents: [{ ...good, timeouts: { firstTokenMs: 5000 }, fallbacks: [{ provider: 'anthropic', endpoint: 'https://api.anthropic.com/v1/messages', apiKey: 'ak', model: 'claude', timeouts: { totalMs: 60000 } }, { provider: 'openai', endpoint: 'http://vllm:8000/v1' }] }],
      }),
      {},
    );
    expect(agent?.endpoints.map((e) => [e.provider, e.url, e.model])).toEqual([
      ['openai', good.endpoint, 'gpt-4o-mini'],
      ['anthropic', 'https://api.anthropic.com/v1/messages', 'claude'],
      ['openai', 'http://vllm:8000/v1', undefined],
    ]);
    expect(agent?.endpoints[0]?.timeouts).toEqual({ firstTokenMs: 5000 });
    expect(agent?.endpoints[1]?.timeouts).toEqual({ totalMs: 60000 });
  });

  it('accepts an empty agents list', () => {
    expect(parseAgentsFile('{"agents": []}', {})).toEqual([]);
  });

  it('reports malformed JSON by line and column without echoing the text', () => {
    const problems = problemsOf(() => parseAgentsFile('{\n  "agents": [\n    {"apiKey": "sk-secret-value",}\n  ]\n}', {}));
    expect(problems).toHaveLength(1);
    expect(problems[0]?.path).toBe('(root)');
    expect(problems[0]?.message).toMatch(/^is not valid JSON/);
    expect(JSON.stringify(problems)).not.toContain('sk-secret-value');
  });

  it('names the file in the error message', () => {
    expect(() => parseAgentsFile('nope', {}, 'prod-agents.json')).toThrow(/prod-agents\.json has 1 problem/);
  });

  it('reports a document that is not an object or array, or lacks agents', () => {
    expect(problemsOf(() => parseAgentsFile('"text"', {}))).toEqual([{ path: '(root)', message: 'must be an object' }]);
    expect(problemsOf(() => parseAgentsFile('{}', {}))).toEqual([{ path: 'agents', message: 'is required' }]);
    expect(problemsOf(() => parseAgentsFile('{"agents": {}}', {}))).toEqual([{ path: 'agents', message: 'must be an array' }]);
    expect(problemsOf(() => parseAgentsFile('{"agents": [], "extra": 1}', {}))).toEqual([{ path: 'extra', message: 'is not a known field' }]);
    expect(problemsOf(() => parseAgentsFile('{"agents": [42]}', {}))).toEqual([{ path: 'agents[0]', message: 'must be an object' }]);
  });

  it('lists every problem of every agent in one error, each with its path', () => {
    const problems = fileProblems([good, { ...good, id: 'b', endpoint: 'ftp://x' }, { ...good, id: 'c', temperature: 3, maxTokens: 0 }]);
    expect(problems).toEqual([
      { path: 'agents[1].endpoint', message: 'must be an http:// or https:// URL' },
      { path: 'agents[2].maxTokens', message: 'must be between 1 and 200000' },
      { path: 'agents[2].temperature', message: 'must be between 0 and 2' },
    ]);
  });

  it('puts every problem in the error message too', () => {
    expect(() => parseAgentsFile(JSON.stringify({ agents: [{ ...good, endpoint: 'nope', temperature: -1 }] }), {})).toThrow(
      'agents.json has 2 problems: agents[0].endpoint: must be an http:// or https:// URL; agents[0].temperature: must be between 0 and 2',
    );
  });
});

describe('agent validation, field by field', () => {
  const cases: [string, Record<string, unknown>, ConfigProblem][] = [
    ['missing id', { id: undefined }, { path: 'agents[0].id', message: 'is required' }],
    ['id with a space', { id: 'my agent' }, { path: 'agents[0].id', message: 'must be 1-64 letters, digits, _ or -, starting with a letter or digit' }],
    ['id starting with -', { id: '-x' }, { path: 'agents[0].id', message: 'must be 1-64 letters, digits, _ or -, starting with a letter or digit' }],
    ['id of 65 characters', { id: 'a'.repeat(65) }, { path: 'agents[0].id', message: 'must be at most 64 characters' }],
    ['id not a string', { id: 7 }, { path: 'agents[0].id', message: 'must be a string' }],
    ['missing name', { name: undefined }, { path: 'agents[0].name', message: 'is required' }],
    ['empty name', { name: '' }, { path: 'agents[0].name', message: 'must not be empty' }],
    ['blank name', { name: '   ' }, { path: 'agents[0].name', message: 'must not be blank' }],
    ['name too long', { name: 'n'.repeat(201) }, { path: 'agents[0].name', message: 'must be at most 200 characters' }],
    ['description too long', { description: 'd'.repeat(2001) }, { path: 'agents[0].description', message: 'must be at most 2000 characters' }],
    ['unknown provider', { provider: 'custom' }, { path: 'agents[0].provider', message: 'must be one of openai, fastgpt, anthropic, dify' }],
    ['missing provider', { provider: undefined }, { path: 'agents[0].provider', message: 'is required' }],
    ['missing endpoint', { endpoint: undefined }, { path: 'agents[0].endpoint', message: 'is required' }],
    ['endpoint not a URL', { endpoint: 'api.example.com/v1' }, { path: 'agents[0].endpoint', message: 'must be an http:// or https:// URL' }],
    ['endpoint with another scheme', { endpoint: 'ws://api.example.com' }, { path: 'agents[0].endpoint', message: 'must be an http:// or https:// URL' }],
    ['endpoint with a bad port', { endpoint: 'http://host:99999/v1' }, { path: 'agents[0].endpoint', message: 'is not a valid URL' }],
    ['endpoint with credentials', { endpoint: 'https://user:pw@api.example.com/v1' }, { path: 'agents[0].endpoint', message: 'must not contain credentials; put the key in apiKey' }],
    ['endpoint too long', { endpoint: `https://a.example.com/${'p'.repeat(2048)}` }, { path: 'agents[0].endpoint', message: 'must be at most 2048 characters' }],
    ['empty apiKey', { apiKey: '' }, { path: 'agents[0].apiKey', message: 'must not be empty' }],
    ['apiKey too long', { apiKey: 'k'.repeat(4097) }, { path: 'agents[0].apiKey', message: 'must be at most 4096 characters' }],
    ['appId too long', { appId: 'a'.repeat(201) }, { path: 'agents[0].appId', message: 'must be at most 200 characters' }],
    ['openai without model', { model: undefined }, { path: 'agents[0].model', message: 'is required for provider openai' }],
    ['empty model', { model: '' }, { path: 'agents[0].model', message: 'must not be empty' }],
    ['maxTokens too large', { maxTokens: 200_001 }, { path: 'agents[0].maxTokens', message: 'must be between 1 and 200000' }],
    ['maxTokens not an integer', { maxTokens: 1.5 }, { path: 'agents[0].maxTokens', message: 'must be an integer' }],
    ['temperature below 0', { temperature: -0.1 }, { path: 'agents[0].temperature', message: 'must be between 0 and 2' }],
    ['temperature as text', { temperature: 'warm' }, { path: 'agents[0].temperature', message: 'must be a number' }],
    ['systemPrompt too long', { systemPrompt: 's'.repeat(50_001) }, { path: 'agents[0].systemPrompt', message: 'must be at most 50000 characters' }],
    ['welcomeText too long', { welcomeText: 'w'.repeat(5001) }, { path: 'agents[0].welcomeText', message: 'must be at most 5000 characters' }],
    ['capabilities not an array', { capabilities: 'chat' }, { path: 'agents[0].capabilities', message: 'must be an array' }],
    ['too many capabilities', { capabilities: Array.from({ length: 51 }, (_, i) => `c${i}`) }, { path: 'agents[0].capabilities', message: 'must have at most 50 items' }],
    ['empty capability', { capabilities: ['chat', ''] }, { path: 'agents[0].capabilities[1]', message: 'must not be empty' }],
    ['rateLimit below 1', { rateLimit: { requestsPerMinute: 0, tokensPerMinute: 1000 } }, { path: 'agents[0].rateLimit.requestsPerMinute', message: 'must be between 1 and 1000000' }],
    ['rateLimit unknown field', { rateLimit: { perHour: 3 } }, { path: 'agents[0].rateLimit.perHour', message: 'is not a known field' }],
    ['feature not a boolean', { features: { supportsStream: 'yes' } }, { path: 'agents[0].features.supportsStream', message: 'must be true or false' }],
    ['unknown feature', { features: { supportsVoice: true } }, { path: 'agents[0].features.supportsVoice', message: 'is not a known field' }],
    ['bad streamingConfig.endpoint', { features: { streamingConfig: { endpoint: 'other' } } }, { path: 'agents[0].features.streamingConfig.endpoint', message: 'must be one of same, different' }],
    ['isActive not a boolean', { isActive: 'true' }, { path: 'agents[0].isActive', message: 'must be true or false' }],
    ['timeout of 0', { timeouts: { connectMs: 0 } }, { path: 'agents[0].timeouts.connectMs', message: 'must be between 1 and 3600000' }],
    ['timeout beyond totalMs', { timeouts: { firstTokenMs: 20_000, totalMs: 10_000 } }, { path: 'agents[0].timeouts.firstTokenMs', message: 'must not exceed totalMs (10000)' }],
    ['unknown timeout', { timeouts: { readMs: 5 } }, { path: 'agents[0].timeouts.readMs', message: 'is not a known field' }],
    ['unknown agent field', { status: 'active' }, { path: 'agents[0].status', message: 'is not a known field' }],
    ['the read-only simulated flag', { simulated: true }, { path: 'agents[0].simulated', message: 'is not a known field' }],
    ['fallbacks not an array', { fallbacks: {} }, { path: 'agents[0].fallbacks', message: 'must be an array' }],
    ['too many fallbacks', { fallbacks: Array.from({ length: 9 }, () => ({ provider: 'openai', endpoint: 'https://b.example.com/v1' })) }, { path: 'agents[0].fallbacks', message: 'must have at most 8 items' }],
    ['fallback without endpoint', { fallbacks: [{ provider: 'openai' }] }, { path: 'agents[0].fallbacks[0].endpoint', message: 'is required' }],
    ['fallback with a bad provider', { fallbacks: [{ provider: 'gemini', endpoint: 'https://b.example.com' }] }, { path: 'agents[0].fallbacks[0].provider', message: 'must be one of openai, fastgpt, anthropic, dify' }],
    ['fallback with a bad URL', { fallbacks: [{ provider: 'openai', endpoint: 'https://b.example.com:0x/v1' }] }, { path: 'agents[0].fallbacks[0].endpoint', message: 'is not a valid URL' }],
    ['fallback unknown field', { fallbacks: [{ provider: 'openai', endpoint: 'https://b.example.com', weight: 2 }] }, { path: 'agents[0].fallbacks[0].weight', message: 'is not a known field' }],
    ['fallback timeout beyond its totalMs', { fallbacks: [{ provider: 'openai', endpoint: 'https://b.example.com', timeouts: { idleMs: 9, totalMs: 5 } }] }, { path: 'agents[0].fallbacks[0].timeouts.idleMs', message: 'must not exceed totalMs (5)' }],
  ];

  it.each(cases)('%s', (_name, change, expected) => {
    expect(problemFor(change)).toEqual(expected);
  });

  it('needs a model on an anthropic fallback when the agent has none to inherit', () => {
    const problems = fileProblems([{ ...good, provider: 'dify', model: undefined, fallbacks: [{ provider: 'anthropic', endpoint: 'https://api.anthropic.com/v1/messages' }] }]);
    expect(problems).toEqual([{ path: 'agents[0].fallbacks[0].model', message: 'is required for provider anthropic (a fallback without one inherits the agent model, and it has none)' }]);
  });

  it('lets an openai fallback inherit the agent model', () => {
    expect(() => parseAgentsFile(JSON.stringify({ agents: [{ ...good, fallbacks: [{ provider: 'openai', endpoint: 'https://b.example.com/v1' }] }] }), {})).not.toThrow();
  });

  it('does not need a model for fastgpt or dify', () => {
    const agents = [
      { ...good, id: 'f', provider: 'fastgpt', model: undefined },
      { ...good, id: 'd', provider: 'dify', model: undefined },
    ];
    expect(parseAgentsFile(JSON.stringify({ agents }), {})).toHaveLength(2);
  });

  it('reports a duplicate id against its first use', () => {
    const problems = fileProblems([good, { ...good, name: 'again' }]);
    expect(problems).toEqual([{ path: 'agents[1].id', message: 'duplicates the id "gpt" of agents[0]' }]);
  });

  it('validates an already-parsed document the same way (the import API)', () => {
    expect(problemsOf(() => validateAgentsDocument({ agents: [{ ...good, endpoint: 'x' }] }))).toEqual([{ path: 'agents[0].endpoint', message: 'must be an http:// or https:// URL' }]);
    expect(validateAgentsDocument([good]).map((d) => d.id)).toEqual(['gpt']);
  });
});

describe('paths', () => {
  it('turns JSON pointers into dotted paths with indexes', () => {
    expect(pointerToPath('/agents/2/fallbacks/0/endpoint')).toBe('agents[2].fallbacks[0].endpoint');
    expect(pointerToPath('/a~1b/c~0d')).toBe('a/b.c~d');
    expect(pointerToPath('')).toBe('(root)');
  });
});
