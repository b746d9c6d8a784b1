import { describe, expect, it } from 'vitest';
import { nulCharacterAt } from './validation.js';

describe('nulCharacterAt', () => {
  it('finds the NUL character in nested strings and keys, as a JSON pointer', () => {
    expect(nulCharacterAt({ a: [{ b: 'ok' }, { c: 'x\u0000' }] })).toBe('/a/1/c');
    expect(nulCharacterAt({ vars: { 'k\u0000': 1 } })).toBe('/vars/k\u0000');
    expect(nulCharacterAt({ 'a/b': { '~c': '\u0000' } })).toBe('/a~1b/~0c');
    expect(nulCharacterAt('\u0000')).toBe('');
  });

  it('finds nothing in clean input, other control characters included', () => {
    expect(nulCharacterAt({ a: ['tab\there', 'line\nbreak', 1, true, null], b: { c: '\\u0000 as text' } })).toBeUndefined();
    expect(nulCharacterAt(undefined)).toBeUndefined();
  });
});
