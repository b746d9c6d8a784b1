import { describe, expect, it } from 'vitest';
import { SHORTCUTS, shortcutOf } from './shortcuts';

const press = (key: string, mods: Partial<{ ctrlKey: boolean; metaKey: boolean; shiftKey: boolean; altKey: boolean }> = {}) =>
  shortcutOf({ key, ctrlKey: false, metaKey: false, shiftKey: false, altKey: false, ...mods });

describe('shortcutOf', () => {
  it('maps each documented shortcut to its action', () => {
    expect(press('O', { ctrlKey: true, shiftKey: true })).toBe('newChat');
    expect(press('o', { metaKey: true, shiftKey: true })).toBe('newChat');
    expect(press('Escape', { shiftKey: true })).toBe('focusInput');
    expect(press('Escape')).toBe('stop');
    expect(press('k', { ctrlKey: true })).toBe('search');
    expect(press('/', { ctrlKey: true })).toBe('help');
  });
  it('ignores plain typing and Alt combinations', () => {
    expect(press('k')).toBeUndefined();
    expect(press('o', { shiftKey: true })).toBeUndefined();
    expect(press('k', { ctrlKey: true, altKey: true })).toBeUndefined();
  });
  it('lists every action once in the help panel', () => {
    expect(new Set(SHORTCUTS.map((s) => s.action)).size).toBe(SHORTCUTS.length);
  });
});
