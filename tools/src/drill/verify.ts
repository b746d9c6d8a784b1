/**
 * What the client saw, checked against what the database kept: every turn
 * a client started is stored exactly once, ended (never left `streaming`),
 * and holds the text the client was shown, which is the upstream's whole
 * answer.
 */

import { queryRows } from '../local-cluster/sql.js';
import { composeAnswer } from '../mock-upstream/answer.js';
import type { TurnTrace } from './turn-client.js';

export interface StoredTurn {
  question: string;
  /** Sessions holding this question: 1 when stored once. */
  copies: number;
  messageId: string | undefined;
  status: string | undefined;
  content: string | undefined;
  /** The position of the endpoint whose call finished the answer (0: the primary); unknown while none has. */
  servedBy?: number | undefined;
}

export interface Verdict {
  turns: number;
  complete: number;
  /** Turns that ended in an error the user saw. */
  errors: number;
  errorCodes: Record<string, number>;
  /** 5xx (or no connection) answers the client got and retried, by status and code. */
  refusals: number;
  refusalCodes: Record<string, number>;
  /** Turns a client started whose whole answer it did not get, or the database did not keep once. */
  lost: number;
  lostDetails: string[];
  lostEvents: number;
  duplicateEvents: number;
  reconnects: number;
  resets: number;
  /**
   * Complete answers a fallback finished: with a mid-answer fault on the
   * primary, the answers continued (or restarted) elsewhere. A continued
   * answer shows the client no `reset`, so this is how a row sees it.
   */
  servedByFallback: number;
  /** Answers still `streaming` for these turns. */
  leftStreaming: number;
}

/** The mock's answer to a question (no system prompt, no fault): what a complete turn must show. */
export function expectedAnswer(question: string, chunks: number): string {
  return composeAnswer(question, false, chunks);
}

export async function storedTurns(databaseUrl: string, tag: string): Promise<Map<string, StoredTurn>> {
  const rows = await queryRows<{ question: string; session_id: string; id: string | null; status: string | null; content: string | null; position: number | null }>(
    databaseUrl,
    `SELECT q.content AS question, q.session_id, a.id, a.status, a.content, e.position
       FROM messages q
       LEFT JOIN messages a ON a.session_id = q.session_id AND a.role = 'assistant'
       LEFT JOIN agent_endpoints e ON e.id = a.endpoint_id
      WHERE q.role = 'user' AND q.content LIKE $1`,
    [`${tag} %`],
  );
  const turns = new Map<string, StoredTurn>();
  for (const row of rows) {
    const seen = turns.get(row.question);
    if (seen) {
      seen.copies++;
      continue;
    }
    turns.set(row.question, { question: row.question, copies: 1, messageId: row.id ?? undefined, status: row.status ?? undefined, content: row.content ?? undefined, servedBy: row.position ?? undefined });
  }
  return turns;
}

/** Answers to this load's questions still `streaming`. */
export async function streamingLeft(databaseUrl: string, tag: string): Promise<number> {
  const rows = await queryRows<{ n: string }>(
    databaseUrl,
    `SELECT count(*) AS n FROM messages a JOIN messages q ON q.session_id = a.session_id AND q.role = 'user'
      WHERE a.role = 'assistant' AND a.status = 'streaming' AND q.content LIKE $1`,
    [`${tag} %`],
  );
  return Number(rows[0]?.n ?? 0);
}

function count(into: Record<string, number>, key: string): void {
  into[key] = (into[key] ?? 0) + 1;
}

/**
 * `allowedRefusal` says which refusals are part of the promise (e.g. 503
 * DATABASE_UNAVAILABLE while PostgreSQL is down); any other counts as an error.
 */
export function verify(traces: readonly TurnTrace[], stored: Map<string, StoredTurn>, chunks: number): Verdict {
  const verdict: Verdict = {
    turns: traces.length,
    complete: 0,
    errors: 0,
    errorCodes: {},
    refusals: 0,
    refusalCodes: {},
    lost: 0,
    lostDetails: [],
    lostEvents: 0,
    duplicateEvents: 0,
    reconnects: 0,
    resets: 0,
    servedByFallback: 0,
    leftStreaming: 0,
  };
  const lose = (trace: TurnTrace, why: string) => {
    verdict.lost++;
    if (verdict.lostDetails.length < 10) verdict.lostDetails.push(`${trace.messageId ?? trace.idempotencyKey}: ${why}`);
  };
  for (const trace of traces) {
    verdict.lostEvents += trace.lostEvents;
    verdict.duplicateEvents += trace.duplicateEvents;
    verdict.reconnects += trace.reconnects;
    verdict.resets += trace.resets.length;
    for (const refusal of trace.refused) {
      verdict.refusals++;
      count(verdict.refusalCodes, `${refusal.status || 'no connection'}${refusal.code ? ` ${refusal.code}` : ''}`);
    }
    const row = stored.get(trace.question);
    if (row?.status === 'streaming') verdict.leftStreaming++;
    if (row !== undefined && row.copies > 1) lose(trace, `stored ${row.copies} times`);
    switch (trace.outcome) {
      case 'complete': {
        verdict.complete++;
        const expected = expectedAnswer(trace.question, chunks);
        if (trace.text !== expected) lose(trace, `shown text differs from the upstream's answer (${trace.text.length} vs ${expected.length} chars)`);
        else if (row === undefined) lose(trace, 'complete for the client, not in the database');
        else if (row.status !== 'complete' || row.content !== expected) lose(trace, `stored as ${row.status ?? 'nothing'} with ${row.content?.length ?? 0} chars`);
        else if ((row.servedBy ?? 0) > 0) verdict.servedByFallback++;
        break;
      }
      case 'error':
      case 'stopped':
        verdict.errors++;
        count(verdict.errorCodes, trace.errorCode ?? trace.outcome);
        // An error is a clear ending, not a loss, as long as it was stored as one (or never started).
        if (row !== undefined && row.status === 'streaming') lose(trace, 'ended in an error for the client but left streaming');
        break;
      case 'lost':
        lose(trace, `no end within the deadline (last status ${row?.status ?? 'not stored'})`);
        break;
    }
  }
  return verdict;
}
