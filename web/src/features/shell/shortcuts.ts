import type { MessageKey } from '../../i18n/en';

export type ShortcutAction = 'newChat' | 'focusInput' | 'stop' | 'search' | 'help';

/** The keyboard shortcuts, shown in the help panel as written here. */
export const SHORTCUTS: { action: ShortcutAction; keys: string; label: MessageKey }[] = [
  { action: 'newChat', keys: 'Ctrl + Shift + O', label: 'shortcuts.newChat' },
  { action: 'focusInput', keys: 'Shift + Esc', label: 'shortcuts.focusInput' },
  { action: 'stop', keys: 'Esc', label: 'shortcuts.stop' },
  { action: 'search', keys: 'Ctrl + K', label: 'shortcuts.search' },
  { action: 'help', keys: 'Ctrl + /', label: 'shortcuts.help' },
];

/** Which shortcut a key press is, if any. Cmd counts as Ctrl (macOS). */
export function shortcutOf(e: Pick<KeyboardEvent, 'key' | 'ctrlKey' | 'metaKey' | 'shiftKey' | 'altKey'>): ShortcutAction | undefined {
  const mod = e.ctrlKey || e.metaKey;
  if (e.altKey) return undefined;
  const key = e.key.toLowerCase();
  if (mod && e.shiftKey && key === 'o') return 'newChat';
  if (mod && !e.shiftKey && key === 'k') return 'search';
  if (mod && (key === '/' || key === '?')) return 'help';
  if (!mod && e.shiftKey && key === 'escape') return 'focusInput';
  if (!mod && !e.shiftKey && key === 'escape') return 'stop';
  return undefined;
}
