/**
 * What the database kept of a level's turns: each question (`<tag> <n>`,
 * followed by the mock directive) and the assistant message of its session,
 * counted by status, with the complete ones checked against the full answer
 * the mock streamed.
 */

import { setTimeout as sleep } from 'node:timers/promises';
import pg from 'pg';
import { extractDirectives } from '../mock-upstream/faults.js';
import { expectedAnswerText } from './turn-schedule.js';
import { queryRows } from '../local-cluster/sql.js';

export interface StoredCount {
  /** User messages of this level found. */
  questions: number;
  /** Assistant messages by status (`complete`, `error`, `stopped`, `streaming`), plus `none` for a question without one. */
  byStatus: Record<string, number>;
  /** `complete` with exactly the mock's whole answer. */
  completeWithFullText: number;
  /** Questions stored more than once. */
  duplicates: number;
  /** A few complete rows whose text differs, for the report. */
  wrongTextExamples: string[];
}

interface Row {
  question: string;
  status: string | null;
  content: string | null;
}

const QUERY_TIMEOUT_MS = 60_000;

/** A query on its own connection, bounded by QUERY_TIMEOUT_MS (connect and query). */
function query<T extends pg.QueryResultRow>(databaseUrl: string, text: string, values: unknown[]): Promise<T[]> {
  return queryRows<T>(databaseUrl, text, values, QUERY_TIMEOUT_MS);
}

const likeTag = (tag: string): string => `${tag.replace(/[\\%_]/g, (c) => `\\${c}`)} %`;

/** Assistant messages of this level still `streaming`. */
export async function streamingLeft(databaseUrl: string, tag: string): Promise<number> {
  const rows = await query<{ n: string }>(
    databaseUrl,
    `SELECT count(*) AS n FROM messages a JOIN messages q ON q.session_id = a.session_id AND q.role = 'user'
      WHERE a.role = 'assistant' AND a.status = 'streaming' AND q.content LIKE $1`,
    [likeTag(tag)],
  );
  return Number(rows[0]?.n ?? 0);
}

/**
 * Waits (at most `timeoutMs`) until no answer of this level is `streaming`:
 * final writes are group-committed, so the last rows land a moment after
 * the clients saw their `end`. Resolves with how many were still streaming.
 */
export async function waitForFinalRows(databaseUrl: string, tag: string, timeoutMs: number): Promise<number> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const left = await streamingLeft(databaseUrl, tag);
    if (left === 0 || Date.now() >= deadline) return left;
    await sleep(500);
  }
}

/** Counts this level's stored turns; `chunksOf` gives the answer's chunk count for a question (`<tag> <n>`). */
export async function countStoredTurns(databaseUrl: string, tag: string, chunksOf: (question: string) => number | undefined): Promise<StoredCount> {
  const rows = await query<Row>(
    databaseUrl,
    `SELECT q.content AS question, a.status, a.content
       FROM messages q
       LEFT JOIN messages a ON a.session_id = q.session_id AND a.role = 'assistant'
      WHERE q.role = 'user' AND q.content LIKE $1`,
    [likeTag(tag)],
  );
  const count: StoredCount = { questions: 0, byStatus: {}, completeWithFullText: 0, duplicates: 0, wrongTextExamples: [] };
  const seen = new Set<string>();
  for (const row of rows) {
    const question = extractDirectives(row.question).text;
    if (seen.has(question)) {
      count.duplicates++;
      continue;
    }
    seen.add(question);
    count.questions++;
    const status = row.status ?? 'none';
    count.byStatus[status] = (count.byStatus[status] ?? 0) + 1;
    if (status !== 'complete') continue;
    const chunks = chunksOf(question);
    const expected = chunks === undefined ? undefined : expectedAnswerText(question, chunks);
    if (expected !== undefined && row.content === expected) count.completeWithFullText++;
    else if (count.wrongTextExamples.length < 3) {
      count.wrongTextExamples.push(`${question}: ${row.content?.length ?? 0} chars stored, ${expected?.length ?? '?'} expected`);
    }
  }
  return count;
}
