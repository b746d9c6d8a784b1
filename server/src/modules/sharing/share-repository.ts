import { sql } from 'kysely';
import type { DatabaseHandle } from '../../db/database.js';

/** One message of a conversation as export and share read it. */
export interface ConversationMessage {
  seq: number;
  role: 'system' | 'user' | 'assistant';
  content: string;
  reasoning: string | null;
  status: 'streaming' | 'complete' | 'stopped' | 'error';
  agent_id: string | null;
  model: string | null;
  prompt_tokens: number | null;
  completion_tokens: number | null;
  total_tokens: number | null;
  created_at: Date;
  completed_at: Date | null;
}

export interface ShareLinkRow {
  id: string;
  session_id: string;
  created_at: Date;
  revoked_at: Date | null;
}

const MESSAGE_COLUMNS = ['seq', 'role', 'content', 'reasoning', 'status', 'agent_id', 'model', 'prompt_tokens', 'completion_tokens', 'total_tokens', 'created_at', 'completed_at'] as const;

/**
 * The SQL of export and share. Every read a share link makes goes to the
 * writer, never a replica: a revoked link must stop working at once, not
 * after the replica's lag.
 */
export function createShareRepository(database: DatabaseHandle) {
  const { db } = database;

  return {
    async ownSession(sessionId: string, userId: string) {
      return db.selectFrom('chat_sessions').select(['id', 'agent_id', 'title', 'created_at', 'updated_at']).where('id', '=', sessionId).where('user_id', '=', userId).executeTakeFirst();
    },

    /** Every message on the current path of the owner's session (earlier versions left out), in order. */
    async allMessages(sessionId: string, userId: string): Promise<ConversationMessage[]> {
      return db.selectFrom('messages').select(MESSAGE_COLUMNS).where('session_id', '=', sessionId).where('user_id', '=', userId).where('hidden_by', 'is', null).orderBy('seq').execute();
    },

    /** A link to the owner's session, covering the messages it holds now; undefined when the session is not theirs. */
    async create(sessionId: string, userId: string, tokenHash: string): Promise<ShareLinkRow | undefined> {
      return db
        .insertInto('share_links')
        .columns(['session_id', 'user_id', 'token_hash', 'up_to_seq'])
        .expression((eb) =>
          eb
            .selectFrom('chat_sessions as s')
            .select((s) => [
              's.id',
              's.user_id',
              s.val(tokenHash).as('token_hash'),
              s.fn.coalesce(s.selectFrom('messages as m').select((m) => m.fn.max('m.seq').as('last')).whereRef('m.session_id', '=', 's.id'), s.lit(0)).as('up_to_seq'),
            ])
            .where('s.id', '=', sessionId)
            .where('s.user_id', '=', userId),
        )
        .returning(['id', 'session_id', 'created_at', 'revoked_at'])
        .executeTakeFirst();
    },

    async list(sessionId: string, userId: string): Promise<ShareLinkRow[]> {
      return db.selectFrom('share_links').select(['id', 'session_id', 'created_at', 'revoked_at']).where('session_id', '=', sessionId).where('user_id', '=', userId).orderBy('created_at', 'desc').execute();
    },

    /**
     * Revokes the owner's link (again is harmless and keeps the first
     * time); undefined when it is not theirs. `revokedNow` says whether
     * this call revoked it: `now()` is the statement's transaction time,
     * so only a revocation made by this statement equals it.
     */
    async revoke(shareId: string, sessionId: string, userId: string): Promise<(ShareLinkRow & { revokedNow: boolean }) | undefined> {
      return db
        .updateTable('share_links')
        .set((eb) => ({ revoked_at: eb.fn.coalesce('revoked_at', eb.fn<Date>('now')) }))
        .where('id', '=', shareId)
        .where('session_id', '=', sessionId)
        .where('user_id', '=', userId)
        .returning(['id', 'session_id', 'created_at', 'revoked_at', sql<boolean>`revoked_at = now()`.as('revokedNow')])
        .executeTakeFirst();
    },

    /** The conversation behind a live link of an active account: its title and the finished messages the link covers. */
    async shared(tokenHash: string) {
      const link = await db
        .selectFrom('share_links as l')
        .innerJoin('chat_sessions as s', 's.id', 'l.session_id')
        .innerJoin('users as u', 'u.id', 'l.user_id')
        .select(['l.session_id', 'l.user_id', 'l.up_to_seq', 'l.created_at', 's.title'])
        .where('l.token_hash', '=', tokenHash)
        .where('l.revoked_at', 'is', null)
        .where('u.status', '=', 'active')
        .executeTakeFirst();
      if (!link) return undefined;
      const messages = await db
        .selectFrom('messages')
        .select(MESSAGE_COLUMNS)
        .where('session_id', '=', link.session_id)
        .where('user_id', '=', link.user_id)
        .where('seq', '<=', link.up_to_seq)
        // The versions the conversation shows now.
        .where('hidden_by', 'is', null)
        .where('role', 'in', ['user', 'assistant'])
        .where('status', '<>', 'streaming')
        .orderBy('seq')
        .execute();
      return { title: link.title, sharedAt: link.created_at, messages };
    },
  };
}

export type ShareRepository = ReturnType<typeof createShareRepository>;
