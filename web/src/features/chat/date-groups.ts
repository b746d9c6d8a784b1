import type { MessageKey } from '../../i18n/en';

export type DateGroup = 'today' | 'yesterday' | 'previous7' | 'previous30' | 'older';
export const GROUP_ORDER: DateGroup[] = ['today', 'yesterday', 'previous7', 'previous30', 'older'];
export const GROUP_LABEL: Record<DateGroup, MessageKey> = {
  today: 'sidebar.today',
  yesterday: 'sidebar.yesterday',
  previous7: 'sidebar.previous7',
  previous30: 'sidebar.previous30',
  older: 'sidebar.older',
};

const DAY = 86_400_000;

/** The group of a date by local calendar days before `now`. */
export function dateGroup(iso: string, now: Date): DateGroup {
  const startOfToday = new Date(now.getFullYear(), now.getMonth(), now.getDate()).getTime();
  const t = new Date(iso).getTime();
  if (t >= startOfToday) return 'today';
  if (t >= startOfToday - DAY) return 'yesterday';
  if (t >= startOfToday - 7 * DAY) return 'previous7';
  if (t >= startOfToday - 30 * DAY) return 'previous30';
  return 'older';
}

/** Groups items (newest first within a group), groups in GROUP_ORDER, empty groups left out. */
export function groupByDate<T extends { updatedAt: string }>(items: T[], now: Date): { group: DateGroup; items: T[] }[] {
  const buckets = new Map<DateGroup, T[]>();
  const sorted = [...items].sort((a, b) => b.updatedAt.localeCompare(a.updatedAt));
  for (const item of sorted) {
    const g = dateGroup(item.updatedAt, now);
    const list = buckets.get(g) ?? [];
    list.push(item);
    buckets.set(g, list);
  }
  return GROUP_ORDER.flatMap((group) => {
    const list = buckets.get(group);
    return list ? [{ group, items: list }] : [];
  });
}
