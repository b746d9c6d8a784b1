import { describe, expect, it } from 'vitest';
import { continuationOf, continuationProblem } from './continuation-kinds.js';

describe('continuation kinds', () => {
  it('defaults per provider kind: prefill for OpenAI-compatible and Anthropic, restart for FastGPT and Dify', () => {
    expect(continuationOf({ provider: 'openai', url: 'http://vllm.internal:8000/v1' })).toBe('prefill');
    expect(continuationOf({ provider: 'anthropic', url: 'https://api.anthropic.com' })).toBe('prefill');
    expect(continuationOf({ provider: 'fastgpt' })).toBe('restart');
    expect(continuationOf({ provider: 'dify' })).toBe('restart');
  });

  it("restarts by default on OpenAI's and Azure OpenAI's own hosts, which answer a prefill with a new turn", () => {
    expect(continuationOf({ provider: 'openai', url: 'https://api.openai.com/v1/chat/completions' })).toBe('restart');
    expect(continuationOf({ provider: 'openai', url: 'https://contoso.openai.azure.com/openai/deployments/x/chat/completions?api-version=2024-10-21' })).toBe('restart');
    // The endpoint's own setting wins.
    expect(continuationOf({ provider: 'openai', url: 'https://api.openai.com/v1', continuation: 'prefill' })).toBe('prefill');
  });

  it('refuses a kind the provider cannot do, naming what it can', () => {
    expect(continuationProblem('dify', 'prefill')).toContain('supported: restart');
    expect(continuationProblem('openai', 'continue_final_message')).toBeUndefined();
  });
});
