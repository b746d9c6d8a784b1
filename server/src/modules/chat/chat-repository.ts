import crypto from 'node:crypto';
import { sql, type Kysely } from 'kysely';
import { createGroupWriter, GroupWriterStats } from '../../db/group-writer.js';
import type { DatabaseHandle } from '../../db/database.js';
import type { Database, MessageRow, MessageStatus } from '../../db/schema.js';
import type { ToolCall, ToolChoice, ToolDefinition } from '../providers/types.js';
import { questionAsText } from '../attachments/stored-question.js';

/** SQL for sessions and messages. Every query is scoped by the owner's id. */

export interface NewTurn {
  userId: string;
  agentId: string;
  /** Existing session to continue; a new session is created when absent. */
  sessionId: string | undefined;
  /** The id of the new session (when `sessionId` is absent), if the caller chose it; else a random one. */
  newSessionId?: string | undefined;
  userMessageId: string;
  assistantMessageId: string;
  userContent: string;
  title: string;
  /** Regenerate: this answer becomes an earlier version (kept, off the path) and the new one its next version, in one transaction. */
  replacesMessageId?: string | undefined;
  /** Edit and resend: this question (and its answer) becomes an earlier version; the new question (userMessageId) its next. */
  replacesQuestionId?: string | undefined;
  /** Edit and resend: the new question's text. */
  editedQuestion?: string | undefined;
  /** Request options beyond the messages, kept with the answer so an instance taking it over asks the same. */
  options?: TurnOptions | undefined;
  /** The W3C trace context of the turn's span (tracing on): a takeover or a resume links its own span to it. */
  traceparent?: string | undefined;
  /** A new session is left out of the owner's chat list (a `/v1` call's): set at insert, nothing to update later. */
  hidden?: boolean | undefined;
  /**
   * An Idempotency-Key, written in the same statement as the turn: both or
   * neither. A key already present (another request's) writes nothing.
   */
  idempotency?: { key: string; fingerprint: string } | undefined;
}

/** A turn's request options that are not the agent's defaults (stored as the answer's metadata). */
export interface TurnOptions {
  temperature?: number | undefined;
  maxTokens?: number | undefined;
  variables?: Record<string, unknown> | undefined;
  detail?: boolean | undefined;
  /** `/v1` sampling options (top_p, stop, seed, response_format). */
  sampling?: { topP?: number | undefined; stop?: string[] | undefined; seed?: number | undefined; responseFormat?: Record<string, unknown> | undefined; endUser?: string | undefined } | undefined;
  /** `/v1` function calling: the tools offered and how the model may use them. */
  tools?: { tools?: ToolDefinition[] | undefined; toolChoice?: ToolChoice | undefined; parallelToolCalls?: boolean | undefined } | undefined;
}

/** An answer left `streaming` by an instance that may be gone. */
export interface OrphanCandidate {
  id: string;
  ownerInstance: string | null;
}

/** What an instance taking an answer over needs to ask the question again. */
export interface ClaimedTurn {
  id: string;
  sessionId: string;
  userId: string;
  agentId: string | null;
  seq: number;
  content: string;
  options: TurnOptions | undefined;
  providerChatId: string | null;
  /** The instance it was claimed from (null: unknown). */
  previousOwner: string | null;
  /** The trace context its first run stored, if it was traced. */
  traceparent: string | undefined;
}

export interface CreatedTurn {
  sessionId: string;
  providerChatId: string | null;
}

export interface TurnOutcome {
  status: Exclude<MessageStatus, 'streaming'>;
  content: string;
  reasoning: string | null;
  errorCode?: string | null;
  errorMessage?: string | null;
  provider?: string | null;
  model?: string | null;
  endpointId?: string | null;
  promptTokens?: number | null;
  completionTokens?: number | null;
  totalTokens?: number | null;
  firstTokenMs?: number | null;
  totalMs?: number | null;
  providerChatId?: string | null;
  providerMessageId?: string | null;
  interactive?: unknown;
  /** The function calls the answer made, kept in its metadata as `toolCalls`. */
  toolCalls?: ToolCall[] | undefined;
}

export interface SessionSummary {
  id: string;
  agentId: string;
  title: string;
  messageCount: number;
  archived: boolean;
  /** Left out of the chat list unless asked for (a `/v1` call's session). */
  hidden: boolean;
  createdAt: Date;
  updatedAt: Date;
}

export interface SearchHit {
  sessionId: string;
  agentId: string;
  title: string;
  messageId: string | null;
  snippet: string;
  updatedAt: Date;
}

const HTML_ESCAPES: Record<string, string> = { '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' };

/**
 * A search snippet as safe HTML: the text is escaped (answers may contain
 * markup) and the matches are wrapped in <mark>. Full-text matches arrive
 * between \u0002 and \u0003 from ts_headline; otherwise the needle is marked.
 */
export function markSnippet(text: string, needle: string): string {
  const escape = (t: string) => t.replace(/[&<>"']/g, (c) => HTML_ESCAPES[c] ?? c);
  if (text.includes('\u0002')) return escape(text).replaceAll('\u0002', '<mark>').replaceAll('\u0003', '</mark>');
  const lower = text.toLowerCase();
  const target = needle.toLowerCase();
  if (!target) return escape(text);
  let out = '';
  let from = 0;
  for (let at = lower.indexOf(target); at >= 0; at = lower.indexOf(target, from)) {
    out += `${escape(text.slice(from, at))}<mark>${escape(text.slice(at, at + target.length))}</mark>`;
    from = at + target.length;
  }
  return out + escape(text.slice(from));
}

const CJK = /[\u3040-\u30ff\u3400-\u9fff\uac00-\ud7af\uf900-\ufaff]/;

/**
 * The snippet of a question stored as parts (attachments), from its text
 * and attachment names rather than its JSON; undefined when only the JSON
 * matched (a key such as "type" or "url", the attachment's address). Every
 * word must be there, as in the full-text match; a CJK needle as a whole.
 */
function questionSnippet(stored: string, needle: string, cjk: boolean): string | undefined {
  const text = questionAsText(stored);
  const lower = text.toLowerCase();
  const words = cjk ? [needle.toLowerCase()] : needle.toLowerCase().split(/\s+/).filter(Boolean);
  const at = words.map((w) => lower.indexOf(w));
  if (at.length === 0 || at.some((i) => i < 0)) return undefined;
  const from = Math.max(0, Math.min(...at) - 40);
  return text.slice(from, from + 160);
}

function toSummary(row: {
  id: string;
  agent_id: string;
  title: string;
  message_count: number;
  archived_at: Date | null;
  hidden: boolean;
  created_at: Date;
  updated_at: Date;
}): SessionSummary {
  return {
    id: row.id,
    agentId: row.agent_id,
    title: row.title,
    messageCount: row.message_count,
    archived: row.archived_at !== null,
    hidden: row.hidden,
    createdAt: row.created_at,
    updatedAt: row.updated_at,
  };
}

/**
 * Writes many turns in one statement: for each, a new session or the
 * caller's own existing one (the UPDATE's `user_id` check is the ownership
 * check, and every join below matches the owner too, since one batch holds
 * several users' turns), the user message and the `streaming` assistant message. Rows are
 * inserted in (turn, user-then-assistant) order, so seq keeps the question
 * before its answer. A turn whose session is missing or not the caller's
 * gets no result row and writes nothing.
 *
 * A turn with an Idempotency-Key also writes the key here, so a key never
 * names a turn that was not written (a failure mid-way leaves neither): a
 * key that is already there (a repeat or a concurrent request; the unique
 * index makes a concurrent one wait for this commit) keeps its turn from
 * being written, and the caller looks the key up instead.
 */
const CREATE_CTES = `
input AS (
  SELECT * FROM unnest($1::uuid[], $2::text[], $3::text[], $4::uuid[], $5::text[], $6::uuid[], $7::uuid[], $8::uuid[], $10::jsonb[], $11::text[], $12::text[], $13::boolean[])
    WITH ORDINALITY AS i(user_id, agent_id, title, user_message_id, user_content, assistant_id, session_id, new_session_id, options, idem_key, idem_hash, hidden, ord)
),
keyed AS (
  INSERT INTO idempotency_keys (user_id, key, request_hash, message_id)
  SELECT i.user_id, i.idem_key, i.idem_hash, i.assistant_id FROM input AS i
  WHERE i.idem_key IS NOT NULL
    AND (i.session_id IS NULL OR EXISTS (SELECT 1 FROM chat_sessions AS s WHERE s.id = i.session_id AND s.user_id = i.user_id))
  ON CONFLICT (user_id, key) DO NOTHING
  RETURNING message_id
),
accepted AS (
  SELECT * FROM input WHERE idem_key IS NULL OR assistant_id IN (SELECT message_id FROM keyed)
),
created AS (
  INSERT INTO chat_sessions (id, user_id, agent_id, title, message_count, updated_at, hidden)
  SELECT new_session_id, user_id, agent_id, title, 2, now(), hidden FROM accepted WHERE session_id IS NULL
  RETURNING id, user_id, provider_chat_id
),
continued AS (
  UPDATE chat_sessions AS s
  SET updated_at = now(),
      message_count = s.message_count + 2 * (SELECT count(*) FROM accepted AS j WHERE j.session_id = s.id AND j.user_id = s.user_id),
      title = CASE WHEN s.title = '' THEN i.title ELSE s.title END,
      -- A turn with another agent switches the session to it; the provider's conversation id was the old agent's.
      agent_id = i.agent_id,
      provider_chat_id = CASE WHEN s.agent_id = i.agent_id THEN s.provider_chat_id END
  FROM accepted AS i
  WHERE i.session_id IS NOT NULL AND s.id = i.session_id AND s.user_id = i.user_id
  RETURNING s.id, s.user_id, s.provider_chat_id
),
written AS (SELECT id, user_id, provider_chat_id FROM created UNION ALL SELECT id, user_id, provider_chat_id FROM continued),
messages_written AS (
  INSERT INTO messages (id, session_id, user_id, role, content, status, agent_id, updated_at, completed_at, owner_instance, metadata)
  SELECT v.id, w.id, i.user_id, v.role, v.content, v.status, i.agent_id, now(), v.completed_at, v.owner_instance, v.metadata
  FROM accepted AS i
  JOIN written AS w ON w.id = coalesce(i.session_id, i.new_session_id) AND w.user_id = i.user_id
  CROSS JOIN LATERAL (VALUES
    (i.user_message_id, 'user', i.user_content, 'complete', now(), NULL::text, NULL::jsonb, 1),
    (i.assistant_id, 'assistant', '', 'streaming', NULL::timestamptz, $9::text, i.options, 2)
  ) AS v(id, role, content, status, completed_at, owner_instance, metadata, k)
  ORDER BY i.ord, v.k
  RETURNING 1
)`;

/** The turns CREATE_CTES wrote: one row per turn, none for a turn it refused. */
const CREATED_ROWS = `SELECT i.assistant_id, w.id AS session_id, w.provider_chat_id
FROM accepted AS i JOIN written AS w ON w.id = coalesce(i.session_id, i.new_session_id) AND w.user_id = i.user_id`;

const CREATE_TURNS = `WITH ${CREATE_CTES}
${CREATED_ROWS}`;

/**
 * Finishes many turns in one statement (group commit): the columns arrive
 * as parallel arrays, so it stays one prepared statement whatever the batch
 * size. Only rows still `streaming` are finished: a turn is ended once.
 */
function finishUpdate(first: number, owner: string): string {
  return `
UPDATE messages AS m SET
  status = v.status, content = v.content, reasoning = v.reasoning, error_code = v.error_code,
  error_message = v.error_message, provider = v.provider, model = v.model, endpoint_id = v.endpoint_id,
  prompt_tokens = v.prompt_tokens, completion_tokens = v.completion_tokens, total_tokens = v.total_tokens,
  first_token_ms = v.first_token_ms, total_ms = v.total_ms, provider_chat_id = v.provider_chat_id,
  provider_message_id = v.provider_message_id, interactive = v.interactive, updated_at = now(), completed_at = now(),
  metadata = CASE WHEN v.tool_calls IS NULL THEN m.metadata ELSE coalesce(m.metadata, '{}'::jsonb) || jsonb_build_object('toolCalls', v.tool_calls) END
FROM unnest($${first}::uuid[], $${first + 1}::text[], $${first + 2}::text[], $${first + 3}::text[], $${first + 4}::text[], $${first + 5}::text[], $${first + 6}::text[], $${first + 7}::text[], $${first + 8}::uuid[],
            $${first + 9}::int[], $${first + 10}::int[], $${first + 11}::int[], $${first + 12}::int[], $${first + 13}::int[], $${first + 14}::text[], $${first + 15}::text[], $${first + 16}::jsonb[], $${first + 17}::jsonb[])
  AS v(id, status, content, reasoning, error_code, error_message, provider, model, endpoint_id,
       prompt_tokens, completion_tokens, total_tokens, first_token_ms, total_ms, provider_chat_id, provider_message_id, interactive, tool_calls)
WHERE m.id = v.id AND m.status = 'streaming' AND (m.owner_instance IS NULL OR m.owner_instance = ${owner})
RETURNING m.id`;
}

const FINISH_TURNS = finishUpdate(1, '$19');

/**
 * Both at once, when turns start and end in the same moment (under load,
 * nearly always): one round trip and one commit instead of two. A finish
 * only ever names an answer whose own write committed earlier, so the two
 * parts never touch the same row.
 */
const CREATE_AND_FINISH_TURNS = `WITH ${CREATE_CTES},
finished AS (${finishUpdate(14, '$9')})
SELECT 'created' AS kind, c.assistant_id, c.session_id, c.provider_chat_id FROM (${CREATED_ROWS}) AS c
UNION ALL SELECT 'finished', f.id, NULL, NULL FROM finished AS f`;

const BATCH_MAX = 256;

/** One outcome as a row of FINISH_TURNS' parallel arrays. */
function finishRow(messageId: string, o: TurnOutcome): unknown[] {
  return [
    messageId, o.status, o.content, o.reasoning, o.errorCode ?? null, o.errorMessage ?? null, o.provider ?? null,
    o.model ?? null, o.endpointId ?? null, o.promptTokens ?? null, o.completionTokens ?? null, o.totalTokens ?? null,
    o.firstTokenMs ?? null, o.totalMs ?? null, o.providerChatId ?? null, o.providerMessageId ?? null,
    o.interactive === undefined || o.interactive === null ? null : JSON.stringify(o.interactive),
    o.toolCalls === undefined || o.toolCalls.length === 0 ? null : JSON.stringify(o.toolCalls),
  ];
}

/** Rows as parallel column arrays, for `unnest`. */
function columnsOf(rows: unknown[][], width: number): unknown[][] {
  const columns: unknown[][] = Array.from({ length: width }, () => []);
  for (const row of rows) row.forEach((value, i) => columns[i]?.push(value));
  return columns;
}

/**
 * Saves the partial text of many streaming answers in one statement (group
 * commit, as for the writes above): with many long answers running, one
 * statement per answer per interval was most of the database's work. An
 * answer whose text this instance stored before sends only what follows it
 * (`*_base` = the stored text's UTF-8 length, which must still match): a
 * long answer's text is not sent again at every interval. A base of -1
 * replaces the text.
 */
const CHECKPOINT_TURNS = `
UPDATE messages AS m SET
  content = CASE WHEN v.content_base < 0 THEN v.content ELSE m.content || v.content END,
  reasoning = CASE WHEN v.reasoning_base < 0 THEN v.reasoning WHEN coalesce(v.reasoning, '') = '' THEN m.reasoning ELSE coalesce(m.reasoning, '') || v.reasoning END,
  updated_at = now()
FROM unnest($1::uuid[], $2::text[], $3::int[], $4::text[], $5::int[]) AS v(id, content, content_base, reasoning, reasoning_base)
WHERE m.id = v.id AND m.status = 'streaming' AND (m.owner_instance IS NULL OR m.owner_instance = $6)
  AND (v.content_base < 0 OR octet_length(m.content) = v.content_base)
  AND (v.reasoning_base < 0 OR octet_length(coalesce(m.reasoning, '')) = v.reasoning_base)
RETURNING m.id`;

/** The stored text a checkpoint continues: UTF-8 lengths of the content and the reasoning (a null reasoning is 0). */
export interface StoredTextLength {
  contentBytes: number;
  reasoningBytes: number;
}

interface CreatedRow {
  assistant_id: string;
  session_id: string;
  provider_chat_id: string | null;
}

/** The answer's metadata: the request options that are not the agent's defaults and the turn's trace context. */
function metadataJson(options: TurnOptions | undefined, traceparent: string | undefined): string | null {
  const kept = options === undefined ? {} : Object.fromEntries(Object.entries(options).filter(([, v]) => v !== undefined));
  const hasOptions = Object.keys(kept).length > 0;
  if (!hasOptions && traceparent === undefined) return null;
  return JSON.stringify({ ...(hasOptions ? { options: kept } : {}), ...(traceparent === undefined ? {} : { traceparent }) });
}

/** The trace context stored with an answer (metadataJson), if any. */
export function storedTraceparent(metadata: unknown): string | undefined {
  const value = (metadata as { traceparent?: unknown } | null)?.traceparent;
  return typeof value === 'string' ? value : undefined;
}

/** The function calls stored with an answer (TurnOutcome.toolCalls), if any. */
export function storedToolCalls(metadata: unknown): ToolCall[] | undefined {
  const value = (metadata as { toolCalls?: unknown } | null)?.toolCalls;
  return Array.isArray(value) && value.length > 0 ? (value as ToolCall[]) : undefined;
}

/**
 * `instanceId` names this process: it is written as the owner of the answers
 * it runs, and checkpoints and endings only land while it still owns them.
 */
export function createChatRepository(database: DatabaseHandle, instanceId: string) {
  const { db, reader } = database;

  /** A turn's creation (the acknowledgement point) or its ending, queued for the shared turn writer. */
  type TurnWrite = { kind: 'create'; turn: NewTurn } | { kind: 'finish'; messageId: string; outcome: TurnOutcome };
  type TurnWritten = { kind: 'create'; created: CreatedTurn | undefined } | { kind: 'finish'; finished: boolean };

  function createParams(turns: NewTurn[]): unknown[] {
    const rows = turns.map((t) => [t.userId, t.agentId, t.title, t.userMessageId, t.userContent, t.assistantMessageId, t.sessionId ?? null, t.sessionId ? null : (t.newSessionId ?? crypto.randomUUID())]);
    return [
      ...columnsOf(rows, 8),
      instanceId,
      turns.map((t) => metadataJson(t.options, t.traceparent)),
      turns.map((t) => t.idempotency?.key ?? null),
      turns.map((t) => t.idempotency?.fingerprint ?? null),
      turns.map((t) => t.hidden === true),
    ];
  }

  function finishParams(items: { messageId: string; outcome: TurnOutcome }[]): unknown[] {
    return columnsOf(items.map((t) => finishRow(t.messageId, t.outcome)), 18);
  }

  /**
   * Group commit for the hot path's two writes: the turns that start and the
   * turns that end while a write is in flight go together in the next one,
   * as one statement (CREATE_TURNS, FINISH_TURNS, or both in
   * CREATE_AND_FINISH_TURNS).
   */
  const turnWriteStats = new GroupWriterStats('turns');
  const checkpointStats = new GroupWriterStats('checkpoints');
  const turnWrites = createGroupWriter(async (items: TurnWrite[]): Promise<TurnWritten[]> => {
    const creates: NewTurn[] = [];
    const finishes: { messageId: string; outcome: TurnOutcome }[] = [];
    for (const item of items) {
      if (item.kind === 'create') creates.push(item.turn);
      else finishes.push(item);
    }
    const created = new Map<string, CreatedRow>();
    const finished = new Set<string>();
    if (finishes.length === 0) {
      const result = await database.prepared<CreatedRow>('llmchat_create_turns', CREATE_TURNS, createParams(creates));
      for (const row of result.rows) created.set(row.assistant_id, row);
    } else if (creates.length === 0) {
      const result = await database.prepared<{ id: string }>('llmchat_finish_turns', FINISH_TURNS, [...finishParams(finishes), instanceId]);
      for (const row of result.rows) finished.add(row.id);
    } else {
      // Created rows as CREATE_TURNS returns them; a finished row carries only the answer's id.
      const result = await database.prepared<CreatedRow & { kind: 'created' | 'finished' }>('llmchat_create_and_finish_turns', CREATE_AND_FINISH_TURNS, [...createParams(creates), ...finishParams(finishes)]);
      for (const row of result.rows) {
        if (row.kind === 'created') created.set(row.assistant_id, row);
        else finished.add(row.assistant_id);
      }
    }
    return items.map((item): TurnWritten => {
      if (item.kind === 'finish') return { kind: 'finish', finished: finished.has(item.messageId) };
      const row = created.get(item.turn.assistantMessageId);
      return { kind: 'create', created: row ? { sessionId: row.session_id, providerChatId: row.provider_chat_id } : undefined };
    });
  }, BATCH_MAX, turnWriteStats);

  async function create(turn: NewTurn): Promise<CreatedTurn | undefined> {
    const written = await turnWrites({ kind: 'create', turn });
    return written.kind === 'create' ? written.created : undefined;
  }

  async function finish(item: { messageId: string; outcome: TurnOutcome }): Promise<boolean> {
    const written = await turnWrites({ kind: 'finish', ...item });
    return written.kind === 'finish' && written.finished;
  }

  type Checkpoint = { messageId: string; content: string; reasoning: string | null; after: StoredTextLength | undefined };
  const checkpoints = createGroupWriter(async (items: Checkpoint[]): Promise<boolean[]> => {
    // One row per answer: an UPDATE joined to two rows for the same answer would keep either; the later one is
    // newer. The earlier one does not land (and a later part whose base was the earlier one fails its check).
    const latest = new Map(items.map((c) => [c.messageId, c]));
    const rows = [...latest.values()];
    const result = await database.prepared<{ id: string }>('llmchat_checkpoint_turns', CHECKPOINT_TURNS, [
      rows.map((c) => c.messageId),
      rows.map((c) => c.content),
      rows.map((c) => c.after?.contentBytes ?? -1),
      rows.map((c) => c.reasoning),
      rows.map((c) => c.after?.reasoningBytes ?? -1),
      instanceId,
    ]);
    const landed = new Set(result.rows.map((r) => r.id));
    return items.map((c) => latest.get(c.messageId) === c && landed.has(c.messageId));
  }, BATCH_MAX, checkpointStats);
  /** Sets a version aside (answer versions): it and what follows it on the session's path get its id in `hidden_by`. */
  async function setAside(tx: Kysely<Database>, sessionId: string, userId: string, version: { id: string; seq: number }): Promise<void> {
    await tx.updateTable('messages').set({ hidden_by: version.id }).where('session_id', '=', sessionId).where('user_id', '=', userId).where('hidden_by', 'is', null).where('seq', '>=', version.seq).execute();
  }

  /**
   * Regenerate, or edit and resend (README, "Answer versions"): the answer
   * (with an edit, the question) is kept as an earlier version: it and what
   * followed it on the path get its id in `hidden_by`. The new question or
   * answer is written as the next version of the same place
   * (`version_group`), with the new `streaming` answer, in one transaction.
   */
  async function replaceAnswer(turn: NewTurn): Promise<CreatedTurn | undefined> {
    const { sessionId, replacesMessageId } = turn;
    if (sessionId === undefined || replacesMessageId === undefined) return undefined;
    const replacedId = turn.replacesQuestionId ?? replacesMessageId;
    return db.transaction().execute(async (tx) => {
      const session = await tx
        .updateTable('chat_sessions')
        .set({ updated_at: new Date() })
        .where('id', '=', sessionId)
        .where('user_id', '=', turn.userId)
        .returning(['id', 'provider_chat_id'])
        .executeTakeFirst();
      if (!session) return undefined;
      const replaced = await tx
        .selectFrom('messages')
        .select(['id', 'seq', 'version_group'])
        .where('id', '=', replacedId)
        .where('session_id', '=', sessionId)
        .where('user_id', '=', turn.userId)
        .where('hidden_by', 'is', null)
        .executeTakeFirst();
      if (!replaced) return undefined;
      await setAside(tx, sessionId, turn.userId, replaced);
      const group = replaced.version_group ?? replaced.id;
      const now = new Date();
      if (turn.replacesQuestionId !== undefined) {
        await tx
          .insertInto('messages')
          .values({ id: turn.userMessageId, session_id: sessionId, user_id: turn.userId, role: 'user', content: turn.editedQuestion ?? turn.userContent, status: 'complete', agent_id: turn.agentId, updated_at: now, completed_at: now, version_group: group })
          .execute();
      }
      await tx
        .insertInto('messages')
        .values({
          id: turn.assistantMessageId,
          session_id: sessionId,
          user_id: turn.userId,
          role: 'assistant',
          status: 'streaming',
          agent_id: turn.agentId,
          updated_at: now,
          owner_instance: instanceId,
          metadata: metadataJson(turn.options, turn.traceparent),
          version_group: turn.replacesQuestionId === undefined ? group : null,
        })
        .execute();
      return { sessionId, providerChatId: session.provider_chat_id };
    });
  }

  return {
    /** The group writers' figures for metrics (maxima since the last call). */
    writerStats() {
      return [turnWriteStats.take(), checkpointStats.take()];
    },
    /**
     * The acknowledgement point of a turn: the user message and the
     * assistant message in state `streaming` are written together with the
     * session in ONE statement, so they commit or fail as one and cost one
     * round trip on the hot path. Returns undefined when the session does not
     * exist or belongs to someone else; nothing is written then.
     */
    async createTurn(turn: NewTurn): Promise<CreatedTurn | undefined> {
      if (turn.replacesMessageId) return replaceAnswer(turn);
      return create(turn);
    },

    /**
     * Saves partial text while the answer streams: the whole text, or with
     * `after` what follows the text stored at that length (`reasoning` then
     * a part too; '' adds nothing). True when it landed; false once the turn
     * has ended, when another instance owns it, or when the stored text is
     * not `after` long (then send the whole text).
     */
    async checkpoint(messageId: string, content: string, reasoning: string | null, after?: StoredTextLength): Promise<boolean> {
      return checkpoints({ messageId, content, reasoning, after });
    },

    /** Answers still `streaming` and untouched for `quietMs`, oldest first: candidates for a takeover. */
    async orphanCandidates(quietMs: number, limit: number): Promise<OrphanCandidate[]> {
      const rows = await db
        .selectFrom('messages')
        .select(['id', 'owner_instance'])
        .where('status', '=', 'streaming')
        .where('updated_at', '<', sql<Date>`now() - make_interval(secs => ${quietMs / 1000})`)
        .orderBy('updated_at')
        .limit(limit)
        .execute();
      return rows.map((r) => ({ id: r.id, ownerInstance: r.owner_instance }));
    },

    /** Answers still `streaming` that these instances own, oldest first, however recently touched: theirs to take over now. */
    async answersOwnedBy(owners: readonly string[], limit: number): Promise<OrphanCandidate[]> {
      if (owners.length === 0) return [];
      const rows = await db
        .selectFrom('messages')
        .select(['id', 'owner_instance'])
        .where('status', '=', 'streaming')
        .where('owner_instance', 'in', owners)
        .orderBy('updated_at')
        .limit(limit)
        .execute();
      return rows.map((r) => ({ id: r.id, ownerInstance: r.owner_instance }));
    },

    /** Of these answers, those another instance owns now (taken over from this one); answers not written yet are not among them. */
    async ownedElsewhere(messageIds: readonly string[]): Promise<string[]> {
      if (messageIds.length === 0) return [];
      const rows = await db
        .selectFrom('messages')
        .select('id')
        .where('id', 'in', messageIds)
        .where('owner_instance', 'is not', null)
        .where('owner_instance', '<>', instanceId)
        .execute();
      return rows.map((r) => r.id);
    },

    /**
     * Makes this instance the owner of an answer still `streaming` that
     * `fromOwner` owned: one conditional UPDATE, so of several instances
     * trying at once exactly one wins. Returns what is needed to run it again.
     */
    async claimTurn(messageId: string, fromOwner: string | null): Promise<ClaimedTurn | undefined> {
      const row = await db
        .updateTable('messages')
        .set({ owner_instance: instanceId, updated_at: new Date() })
        .where('id', '=', messageId)
        .where('status', '=', 'streaming')
        .where((eb) => (fromOwner === null ? eb('owner_instance', 'is', null) : eb('owner_instance', '=', fromOwner)))
        .returning(['id', 'session_id', 'user_id', 'agent_id', 'seq', 'content', 'metadata'])
        .executeTakeFirst();
      if (!row) return undefined;
      const session = await db.selectFrom('chat_sessions').select('provider_chat_id').where('id', '=', row.session_id).executeTakeFirst();
      const options = (row.metadata as { options?: TurnOptions } | null)?.options;
      return { id: row.id, sessionId: row.session_id, userId: row.user_id, agentId: row.agent_id, seq: row.seq, content: row.content, options, providerChatId: session?.provider_chat_id ?? null, previousOwner: fromOwner, traceparent: storedTraceparent(row.metadata) };
    },

    /**
     * Makes a stopped answer of `userId` stream again, owned by this
     * instance (the asker continues it): one conditional UPDATE, so of two
     * requests at once exactly one wins. True when this call reopened it.
     */
    async reopenStopped(messageId: string, userId: string): Promise<boolean> {
      const row = await db
        .updateTable('messages')
        .set({ status: 'streaming', owner_instance: instanceId, completed_at: null, updated_at: new Date() })
        .where('id', '=', messageId)
        .where('user_id', '=', userId)
        .where('role', '=', 'assistant')
        .where('status', '=', 'stopped')
        .executeTakeFirst();
      return row.numUpdatedRows > 0n;
    },

    /** Writes the end of a turn once: only a message still `streaming` is finished. Returns whether it was. */
    async finishTurn(messageId: string, sessionId: string, outcome: TurnOutcome): Promise<boolean> {
      const finished = await finish({ messageId, outcome });
      if (finished && outcome.providerChatId) {
        await db
          .updateTable('chat_sessions')
          .set({ provider_chat_id: outcome.providerChatId })
          .where('id', '=', sessionId)
          .where('provider_chat_id', 'is', null)
          .execute();
      }
      return finished;
    },

    /** See DatabaseHandle.confirmDurable. */
    confirmDurable: () => database.confirmDurable(),

    /** The last complete messages of a session's current path, oldest first, for providers without upstream context. */
    async contextMessages(sessionId: string, userId: string, beforeMessageIds: string[], limit: number) {
      const rows = await db
        .selectFrom('messages')
        .select(['role', 'content', 'seq'])
        .where('session_id', '=', sessionId)
        .where('user_id', '=', userId)
        .where('hidden_by', 'is', null)
        .where('status', 'in', ['complete', 'stopped'])
        .where('role', 'in', ['user', 'assistant'])
        .$if(beforeMessageIds.length > 0, (q) => q.where('id', 'not in', beforeMessageIds))
        .orderBy('seq', 'desc')
        .limit(limit)
        .execute();
      return rows.reverse();
    },

    async findMessage(messageId: string, userId: string): Promise<MessageRow | undefined> {
      return db.selectFrom('messages').selectAll().where('id', '=', messageId).where('user_id', '=', userId).executeTakeFirst();
    },

    /** Latest assistant message of a session's current path, owned by the user. */
    async lastAssistantMessage(sessionId: string, userId: string): Promise<MessageRow | undefined> {
      return db
        .selectFrom('messages')
        .selectAll()
        .where('session_id', '=', sessionId)
        .where('user_id', '=', userId)
        .where('hidden_by', 'is', null)
        .where('role', '=', 'assistant')
        .orderBy('seq', 'desc')
        .limit(1)
        .executeTakeFirst();
    },

    /** The user message right before an assistant message on the session's current path. */
    async userMessageBefore(sessionId: string, userId: string, seq: number): Promise<MessageRow | undefined> {
      return db
        .selectFrom('messages')
        .selectAll()
        .where('session_id', '=', sessionId)
        .where('user_id', '=', userId)
        .where('hidden_by', 'is', null)
        .where('role', '=', 'user')
        .where('seq', '<', seq)
        .orderBy('seq', 'desc')
        .limit(1)
        .executeTakeFirst();
    },

    /** On the writer: callers act on the session right after (stop, retry, feedback), so replica lag must not hide it. */
    async findSession(sessionId: string, userId: string) {
      return db
        .selectFrom('chat_sessions')
        .selectAll()
        .where('id', '=', sessionId)
        .where('user_id', '=', userId)
        .executeTakeFirst();
    },

    async createSession(userId: string, agentId: string, title: string): Promise<SessionSummary> {
      const row = await db
        .insertInto('chat_sessions')
        .values({ user_id: userId, agent_id: agentId, title, updated_at: new Date() })
        .returningAll()
        .executeTakeFirstOrThrow();
      return toSummary(row);
    },

    /** On the writer: the list a user sees right after a turn must hold the session that turn just created or moved up. */
    async listSessions(options: { userId: string; agentId?: string | undefined; archived: 'only' | 'exclude' | 'include'; hidden: 'only' | 'exclude' | 'include'; limit: number; offset: number }) {
      let query = db.selectFrom('chat_sessions').where('user_id', '=', options.userId);
      if (options.hidden !== 'include') query = query.where('hidden', '=', options.hidden === 'only');
      if (options.agentId) query = query.where('agent_id', '=', options.agentId);
      if (options.archived === 'only') query = query.where('archived_at', 'is not', null);
      if (options.archived === 'exclude') query = query.where('archived_at', 'is', null);
      const [rows, total] = await Promise.all([
        query.selectAll().orderBy('updated_at', 'desc').orderBy('id', 'desc').limit(options.limit).offset(options.offset).execute(),
        query.select((eb) => eb.fn.countAll<number>().as('n')).executeTakeFirstOrThrow(),
      ]);
      return { items: rows.map(toSummary), total: Number(total.n) };
    },

    /** A page of the messages on a session's current path, in order; `beforeSeq` pages backwards from the newest. */
    async listMessages(sessionId: string, userId: string, options: { limit: number; beforeSeq?: number | undefined }) {
      const rows = await db
        .selectFrom('messages')
        .leftJoin('feedback', (join) => join.onRef('feedback.message_id', '=', 'messages.id').on('feedback.user_id', '=', userId))
        .select([
          'messages.id', 'messages.seq', 'messages.role', 'messages.content', 'messages.reasoning', 'messages.status',
          'messages.error_code', 'messages.error_message', 'messages.agent_id', 'messages.provider', 'messages.model',
          'messages.prompt_tokens', 'messages.completion_tokens', 'messages.total_tokens', 'messages.first_token_ms',
          'messages.total_ms', 'messages.interactive', 'messages.created_at', 'messages.completed_at', 'messages.version_group',
          'feedback.rating', 'feedback.comment',
        ])
        .where('messages.session_id', '=', sessionId)
        .where('messages.user_id', '=', userId)
        .where('messages.hidden_by', 'is', null)
        .$if(options.beforeSeq !== undefined, (q) => q.where('messages.seq', '<', options.beforeSeq ?? 0))
        .orderBy('messages.seq', 'desc')
        .limit(options.limit + 1)
        .execute();
      const hasMore = rows.length > options.limit;
      return { messages: rows.slice(0, options.limit).reverse(), hasMore };
    },

    /**
     * The versions of the session's places that have more than one (answer
     * versions): each group's first version's id → every version's id, in
     * order. Two reads of the partial index; none when nothing was versioned.
     */
    async versionsOf(sessionId: string, userId: string): Promise<Map<string, string[]>> {
      const later = await db
        .selectFrom('messages')
        .select(['id', 'version_group', 'seq'])
        .where('session_id', '=', sessionId)
        .where('user_id', '=', userId)
        .where('version_group', 'is not', null)
        .execute();
      if (later.length === 0) return new Map();
      const firstIds = [...new Set(later.map((r) => r.version_group as string))];
      const first = await db.selectFrom('messages').select(['id', 'seq']).where('session_id', '=', sessionId).where('user_id', '=', userId).where('id', 'in', firstIds).execute();
      const rows = [...first.map((r) => ({ id: r.id, group: r.id, seq: r.seq })), ...later.map((r) => ({ id: r.id, group: r.version_group as string, seq: r.seq }))].sort((a, b) => a.seq - b.seq);
      const groups = new Map<string, string[]>();
      for (const row of rows) {
        const ids = groups.get(row.group) ?? [];
        ids.push(row.id);
        groups.set(row.group, ids);
      }
      return groups;
    },

    /**
     * Shows another version of a place in the conversation: the version shown
     * there now and what followed it get its id in `hidden_by`, and the chosen
     * version and what followed it when it was last shown come back. In one
     * transaction that holds the session row, so two switches do not mix.
     */
    async showVersion(sessionId: string, userId: string, messageId: string): Promise<'shown' | 'no-session' | 'not-a-version' | 'running'> {
      return db.transaction().execute(async (tx) => {
        const session = await tx.selectFrom('chat_sessions').select('id').where('id', '=', sessionId).where('user_id', '=', userId).forUpdate().executeTakeFirst();
        if (!session) return 'no-session';
        const target = await tx
          .selectFrom('messages')
          .select(['id', 'version_group', 'hidden_by'])
          .where('id', '=', messageId)
          .where('session_id', '=', sessionId)
          .where('user_id', '=', userId)
          .executeTakeFirst();
        if (!target) return 'not-a-version';
        if (target.hidden_by === null) return 'shown';
        // Only a version set aside as such (not a message that followed one) can be chosen.
        if (target.hidden_by !== target.id) return 'not-a-version';
        const running = await tx.selectFrom('messages').select('id').where('session_id', '=', sessionId).where('user_id', '=', userId).where('hidden_by', 'is', null).where('status', '=', 'streaming').executeTakeFirst();
        if (running) return 'running';
        const group = target.version_group ?? target.id;
        const current = await tx
          .selectFrom('messages')
          .select(['id', 'seq'])
          .where('session_id', '=', sessionId)
          .where('user_id', '=', userId)
          .where('hidden_by', 'is', null)
          .where((eb) => eb.or([eb('id', '=', group), eb('version_group', '=', group)]))
          .executeTakeFirst();
        if (current) await setAside(tx, sessionId, userId, current);
        await tx.updateTable('messages').set({ hidden_by: null }).where('session_id', '=', sessionId).where('user_id', '=', userId).where('hidden_by', '=', target.id).execute();
        await tx.updateTable('chat_sessions').set({ updated_at: new Date() }).where('id', '=', sessionId).execute();
        return 'shown';
      });
    },

    /** Switches the session to another agent; the provider's conversation id belonged to the old one. */
    async setSessionAgent(sessionId: string, userId: string, agentId: string): Promise<SessionSummary | undefined> {
      const row = await db
        .updateTable('chat_sessions')
        .set((eb) => ({ agent_id: agentId, provider_chat_id: eb.case().when('agent_id', '=', agentId).then(eb.ref('provider_chat_id')).else(null).end() }))
        .where('id', '=', sessionId)
        .where('user_id', '=', userId)
        .returningAll()
        .executeTakeFirst();
      return row ? toSummary(row) : undefined;
    },

    async renameSession(sessionId: string, userId: string, title: string): Promise<SessionSummary | undefined> {
      const row = await db
        .updateTable('chat_sessions')
        .set({ title })
        .where('id', '=', sessionId)
        .where('user_id', '=', userId)
        .returningAll()
        .executeTakeFirst();
      return row ? toSummary(row) : undefined;
    },

    async setArchived(sessionId: string, userId: string, archived: boolean): Promise<SessionSummary | undefined> {
      const row = await db
        .updateTable('chat_sessions')
        .set({ archived_at: archived ? new Date() : null })
        .where('id', '=', sessionId)
        .where('user_id', '=', userId)
        .returningAll()
        .executeTakeFirst();
      return row ? toSummary(row) : undefined;
    },

    async deleteSession(sessionId: string, userId: string): Promise<boolean> {
      const result = await db.deleteFrom('chat_sessions').where('id', '=', sessionId).where('user_id', '=', userId).executeTakeFirst();
      return result.numDeletedRows > 0n;
    },

    async deleteSessionsOfAgent(userId: string, agentId: string): Promise<number> {
      const result = await db.deleteFrom('chat_sessions').where('user_id', '=', userId).where('agent_id', '=', agentId).executeTakeFirst();
      return Number(result.numDeletedRows);
    },

    /** Full-text search over the user's listed sessions' titles and message text (answers once they end), newest first, with a snippet. */
    async search(userId: string, q: string, limit: number): Promise<SearchHit[]> {
      const needle = q.trim();
      const cjk = CJK.test(needle);
      const like = `%${needle.replace(/[\\%_]/g, (c) => `\\${c}`)}%`;
      const tsq = sql`plainto_tsquery('simple', ${needle})`;
      const titleHits = await reader
        .selectFrom('chat_sessions')
        .select(['id', 'agent_id', 'title', 'updated_at'])
        .where('user_id', '=', userId)
        .where('hidden', '=', false)
        .where((eb) =>
          cjk
            ? eb.or([sql<boolean>`to_tsvector('simple', title) @@ ${tsq}`, eb('title', 'ilike', like)])
            : sql<boolean>`to_tsvector('simple', title) @@ ${tsq}`,
        )
        .orderBy('updated_at', 'desc')
        .limit(limit)
        .execute();
      const messageHits = await reader
        .selectFrom('messages')
        .innerJoin('chat_sessions', 'chat_sessions.id', 'messages.session_id')
        .select([
          'messages.id as message_id',
          'chat_sessions.id as session_id',
          'chat_sessions.agent_id',
          'chat_sessions.title',
          'messages.created_at',
          // A question with attachments is stored as its parts' JSON: it is read as text here (below).
          sql<string | null>`CASE WHEN messages.role = 'user' AND left(messages.content, 2) = '[{' THEN messages.content END`.as('parts_json'),
          cjk
            ? sql<string>`substring(messages.content from greatest(1, strpos(lower(messages.content), lower(${needle})) - 40) for 160)`.as('snippet')
            : sql<string>`ts_headline('simple', messages.content, ${tsq}, 'StartSel="\u0002", StopSel="\u0003", MaxFragments=1, MaxWords=24, MinWords=8')`.as('snippet'),
        ])
        .where('messages.user_id', '=', userId)
        .where('chat_sessions.user_id', '=', userId)
        .where('chat_sessions.hidden', '=', false)
        // What the conversation shows now: earlier versions of a message are left out.
        .where('messages.hidden_by', 'is', null)
        // An answer is searchable once it ends (the full-text index leaves out streaming ones: migration 0006).
        .where('messages.status', '<>', 'streaming')
        .where((eb) =>
          cjk
            ? eb.or([sql<boolean>`to_tsvector('simple', messages.content) @@ ${tsq}`, eb('messages.content', 'ilike', like)])
            : sql<boolean>`to_tsvector('simple', messages.content) @@ ${tsq}`,
        )
        .orderBy('messages.created_at', 'desc')
        .limit(limit)
        .execute();
      const hits: SearchHit[] = [
        ...titleHits.map((r) => ({ sessionId: r.id, agentId: r.agent_id, title: r.title, messageId: null, snippet: markSnippet(r.title, needle), updatedAt: r.updated_at })),
        ...messageHits.flatMap((r) => {
          const snippet = r.parts_json === null ? r.snippet : questionSnippet(r.parts_json, needle, cjk);
          return snippet === undefined ? [] : [{ sessionId: r.session_id, agentId: r.agent_id, title: r.title, messageId: r.message_id, snippet: markSnippet(snippet, needle), updatedAt: r.created_at }];
        }),
      ];
      hits.sort((a, b) => b.updatedAt.getTime() - a.updatedAt.getTime());
      return hits.slice(0, limit);
    },

    async upsertFeedback(messageId: string, userId: string, rating: 'up' | 'down', comment: string | null): Promise<void> {
      await db
        .insertInto('feedback')
        .values({ message_id: messageId, user_id: userId, rating, comment, updated_at: new Date() })
        .onConflict((oc) => oc.columns(['message_id', 'user_id']).doUpdateSet({ rating, comment, updated_at: new Date() }))
        .execute();
    },

    async deleteFeedback(messageId: string, userId: string): Promise<void> {
      await db.deleteFrom('feedback').where('message_id', '=', messageId).where('user_id', '=', userId).execute();
    },

    async markFeedbackForwarded(messageId: string, userId: string): Promise<void> {
      await db.updateTable('feedback').set({ forwarded: true }).where('message_id', '=', messageId).where('user_id', '=', userId).execute();
    },
  };
}

export type ChatRepository = ReturnType<typeof createChatRepository>;
