import { describe, expect, it } from 'vitest';
import { anthropicRoot, difyRoot, fastgptRoot, openaiRoot } from './endpoint-url.js';

describe('endpoint URL normalisation', () => {
  it.each([
    ['http://h', 'http://h/v1/chat/completions'],
    ['http://h/', 'http://h/v1/chat/completions'],
    ['http://h/v1', 'http://h/v1/chat/completions'],
    ['http://h/v1/', 'http://h/v1/chat/completions'],
    ['http://h/v1/chat/completions', 'http://h/v1/chat/completions'],
    ['http://h/compatible-mode/v1', 'http://h/compatible-mode/v1/chat/completions'],
    ['http://h/openai/deployments/d/chat/completions?api-version=1', 'http://h/openai/deployments/d/chat/completions?api-version=1'],
  ])('openai %s', (url, expected) => {
    expect(openaiRoot(url).url('/chat/completions')).toBe(expected);
  });

  it.each([
    ['http://h', 'http://h/api'],
    ['http://h/api', 'http://h/api'],
    ['http://h/api/v1', 'http://h/api'],
    ['http://h/api/v1/chat/completions', 'http://h/api'],
    ['http://h/fault/status=503/api/v1/chat/completions', 'http://h/fault/status=503/api'],
  ])('fastgpt %s', (url, expected) => {
    expect(fastgptRoot(url).url('')).toBe(expected);
  });

  it.each([
    ['http://h', 'http://h/v1/messages'],
    ['http://h/v1', 'http://h/v1/messages'],
    ['http://h/v1/messages', 'http://h/v1/messages'],
  ])('anthropic %s', (url, expected) => {
    expect(anthropicRoot(url).url('/messages')).toBe(expected);
  });

  it.each([
    ['http://h', 'http://h/v1/chat-messages'],
    ['http://h/v1', 'http://h/v1/chat-messages'],
    ['http://h/v1/chat-messages', 'http://h/v1/chat-messages'],
  ])('dify %s', (url, expected) => {
    expect(difyRoot(url).url('/chat-messages')).toBe(expected);
  });

  it('adds query parameters to the endpoint’s own', () => {
    expect(fastgptRoot('http://h/api?x=1').url('/core/chat/init', { appId: 'a', chatId: undefined })).toBe(
      'http://h/api/core/chat/init?x=1&appId=a',
    );
  });
});
