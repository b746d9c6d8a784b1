import { describe, expect, it } from 'vitest';
import { inputProblem, MAX_INPUT_DEPTH } from './input-problem.js';

const nul = 'must not contain the NUL character (U+0000)';

describe('inputProblem', () => {
  it('finds the NUL character in nested strings and keys, as a JSON pointer', () => {
    expect(inputProblem({ a: [{ b: 'ok' }, { c: 'x\u0000' }] })).toEqual({ pointer: '/a/1/c', message: nul });
    expect(inputProblem({ vars: { 'k\u0000': 1 } })).toEqual({ pointer: '/vars/k\u0000', message: nul });
    expect(inputProblem({ 'a/b': { '~c': '\u0000' } })).toEqual({ pointer: '/a~1b/~0c', message: nul });
    expect(inputProblem('\u0000')).toEqual({ pointer: '', message: nul });
  });

  it('finds lone UTF-16 surrogates in strings and keys, which PostgreSQL cannot store, and keeps paired ones', () => {
    const lone = 'must be well-formed Unicode (a lone UTF-16 surrogate such as \\ud83d is not a character)';
    expect(inputProblem({ variables: { name: 'a\ud83d' } })).toEqual({ pointer: '/variables/name', message: lone });
    expect(inputProblem({ capabilities: ['ok', '\ude00'] })).toEqual({ pointer: '/capabilities/1', message: lone });
    expect(inputProblem({ v: { 'k\ud800': 1 } })).toEqual({ pointer: '/v/k\ud800', message: lone });
    expect(inputProblem({ emoji: '\ud83d\ude00 中文' })).toBeUndefined();
  });

  it('refuses nesting past the limit without recursing, however deep', () => {
    const deep = JSON.parse(`{"v":${'['.repeat(200_000)}${']'.repeat(200_000)}}`) as unknown;
    expect(inputProblem(deep)?.message).toBe(`must not nest more than ${MAX_INPUT_DEPTH} levels deep`);
    let atLimit: unknown = 'leaf';
    for (let i = 0; i < MAX_INPUT_DEPTH; i++) atLimit = [atLimit];
    expect(inputProblem(atLimit)).toBeUndefined();
    expect(inputProblem([atLimit])?.pointer).toBe(`/0${'/0'.repeat(MAX_INPUT_DEPTH - 1)}`);
  });

  it('finds nothing in clean input, other control characters included', () => {
    expect(inputProblem({ a: ['tab\there', 'line\nbreak', 1, true, null], b: { c: '\\u0000 as text' } })).toBeUndefined();
    expect(inputProblem(undefined)).toBeUndefined();
  });
});
