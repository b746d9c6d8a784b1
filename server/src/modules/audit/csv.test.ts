import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { csvField, csvRow } from './csv.js';

/** A strict RFC 4180 reader, to check that what we write reads back. */
function parseCsv(text: string): string[][] {
  const rows: string[][] = [];
  let row: string[] = [];
  let field = '';
  let i = 0;
  let quoted = false;
  while (i < text.length) {
    const c = text[i] as string;
    if (quoted) {
      if (c === '"' && text[i + 1] === '"') {
        field += '"';
        i += 2;
        continue;
      }
      if (c === '"') {
        quoted = false;
        i++;
        continue;
      }
      field += c;
      i++;
      continue;
    }
    if (c === '"' && field === '') {
      quoted = true;
      i++;
    } else if (c === ',') {
      row.push(field);
      field = '';
      i++;
    } else if (c === '\r' && text[i + 1] === '\n') {
      row.push(field);
      rows.push(row);
      row = [];
      field = '';
      i += 2;
    } else {
      if (c === '"' || c === '\n' || c === '\r') throw new Error(`bare ${JSON.stringify(c)} at ${i}`);
      field += c;
      i++;
    }
  }
  if (field !== '' || row.length > 0) throw new Error('missing final CRLF');
  return rows;
}

describe('csv', () => {
  it.each([
    ['plain', 'plain'],
    ['a,b', '"a,b"'],
    ['say "hi"', '"say ""hi"""'],
    ['two\nlines', '"two\nlines"'],
    ['cr\r', '"cr\r"'],
    ['=1+2', "'=1+2"],
    ['+SUM(A1)', "'+SUM(A1)"],
    ['-2', "'-2"],
    ['@cmd', "'@cmd"],
    ['=HYPERLINK("x")', `"'=HYPERLINK(""x"")"`],
  ])('escapes %j', (input, expected) => {
    expect(csvField(input)).toBe(expected);
  });

  it('writes numbers, booleans, null and objects', () => {
    expect(csvRow([1, -2, true, null, undefined, { a: 'b,c' }])).toBe('1,-2,true,,,"{""a"":""b,c""}"\r\n');
  });

  it('any row of strings reads back as written (formula text prefixed)', () => {
    fc.assert(
      fc.property(fc.array(fc.string({ unit: 'binary' }), { minLength: 1, maxLength: 8 }), (fields) => {
        const [parsed] = parseCsv(csvRow(fields));
        const expected = fields.map((f) => (/^[=+\-@\t\r]/.test(f) ? `'${f}` : f));
        expect(parsed).toEqual(expected);
      }),
    );
  });
});
