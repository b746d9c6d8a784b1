/**
 * `--to` of `npm run restore`: a moment to restore to, or `latest` (the end
 * of the archive).
 */

export type RecoveryTarget = { type: 'latest' } | { type: 'time'; /** As pgBackRest and PostgreSQL both read it: `YYYY-MM-DD HH:MM:SS[.ffffff]+HH[:MM]`. */ time: string };

const TIME = /^(\d{4}-\d{2}-\d{2})[ T](\d{2}):(\d{2})(?::(\d{2})([.,]\d{1,6})?)?\s*(Z|[+-]\d{2}(?::?\d{2})?)$/i;

/**
 * Accepts ISO 8601 (`2026-12-04T12:30:00.250Z`) and PostgreSQL's form
 * (`2026-12-04 12:30:00.25+01`). The zone is required: without one,
 * pgBackRest would read the time in its host's zone and PostgreSQL in its
 * `TimeZone` setting, which need not agree.
 */
export function parseRecoveryTarget(input: string): RecoveryTarget {
  const text = input.trim();
  if (text.toLowerCase() === 'latest') return { type: 'latest' };
  const match = TIME.exec(text);
  if (match === null) {
    throw new Error(`--to must be 'latest' or a time with a zone, e.g. 2026-12-04T12:30:00Z or '2026-12-04 12:30:00.250+01:00'; got '${input}'`);
  }
  const [, date = '', hours = '', minutes = '', seconds = '00', fraction = '', zone = ''] = match;
  // The pattern checks the shape; an impossible moment is refused here rather than by PostgreSQL mid-recovery.
  const day = new Date(`${date}T00:00:00Z`);
  const zoneHours = zone.toUpperCase() === 'Z' ? 0 : Math.abs(Number(zone.slice(0, 3)));
  const zoneMinutes = zone.length > 3 ? Number(zone.slice(-2)) : 0;
  if (Number.isNaN(day.getTime()) || day.toISOString().slice(0, 10) !== date || Number(hours) > 23 || Number(minutes) > 59 || Number(seconds) > 59 || zoneHours > 14 || zoneMinutes > 59) {
    throw new Error(`--to: '${input}' is not a valid time`);
  }
  return { type: 'time', time: `${date} ${hours}:${minutes}:${seconds}${fraction.replace(',', '.')}${zone.toUpperCase() === 'Z' ? '+00' : zone}` };
}
