function text(value: unknown): string {
  if (value === null || value === undefined) return '';
  if (typeof value === 'string') return value;
  if (typeof value === 'number' || typeof value === 'boolean' || typeof value === 'bigint') return String(value);
  if (value instanceof Date) return value.toISOString();
  return JSON.stringify(value) ?? '';
}

/**
 * CSV per RFC 4180: fields holding a comma, quote, CR or LF are quoted and
 * quotes doubled. Text a spreadsheet would run as a formula (leading = + - @
 * tab or CR) gets a leading apostrophe, so an exported log cannot attack the
 * admin who opens it.
 */
export function csvField(value: unknown): string {
  let out = text(value);
  if (typeof value === 'string' && /^[=+\-@\t\r]/.test(out)) out = `'${out}`;
  return /[",\r\n]/.test(out) ? `"${out.replace(/"/g, '""')}"` : out;
}

export function csvRow(values: readonly unknown[]): string {
  return `${values.map(csvField).join(',')}\r\n`;
}
