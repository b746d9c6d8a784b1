import { sql } from 'kysely';
import type { DatabaseHandle } from '../../db/database.js';

/** An attachment without its bytes. */
export interface AttachmentInfo {
  id: string;
  name: string;
  content_type: string;
  size: number;
  sha256: string;
  created_at: Date;
}

/** What a provider call needs of an attachment: its bytes and, for files, its extracted text. */
export interface AttachmentContent extends AttachmentInfo {
  data: Uint8Array;
  text_content: string | null;
}

const INFO = ['id', 'name', 'content_type', 'size', 'sha256', 'created_at'] as const;

/**
 * The SQL of attachments. Every read names the owner, so another user's id
 * finds nothing (a 404, like an id that does not exist); all of it on the
 * writer: an attachment is used right after its upload.
 */
export function createAttachmentRepository(database: DatabaseHandle) {
  const { db } = database;

  return {
    /**
     * Stores an attachment when the owner's total stays within `quotaBytes`;
     * undefined when it would not. The owner's row is locked for the check,
     * so two uploads at once cannot both pass it.
     */
    async insertWithinQuota(
      row: { userId: string; name: string; contentType: string; size: number; sha256: string; data: Uint8Array; textContent: string | null },
      quotaBytes: number,
    ): Promise<AttachmentInfo | undefined> {
      return db.transaction().execute(async (trx) => {
        await trx.selectFrom('users').select('id').where('id', '=', row.userId).forUpdate().executeTakeFirst();
        const used = await trx.selectFrom('attachments').select(sql<string>`coalesce(sum(size), 0)`.as('bytes')).where('user_id', '=', row.userId).executeTakeFirstOrThrow();
        if (Number(used.bytes) + row.size > quotaBytes) return undefined;
        return trx
          .insertInto('attachments')
          .values({ user_id: row.userId, name: row.name, content_type: row.contentType, size: row.size, sha256: row.sha256, data: row.data, text_content: row.textContent })
          .returning(INFO)
          .executeTakeFirstOrThrow();
      });
    },

    async usedBytes(userId: string): Promise<number> {
      const used = await db.selectFrom('attachments').select(sql<string>`coalesce(sum(size), 0)`.as('bytes')).where('user_id', '=', userId).executeTakeFirstOrThrow();
      return Number(used.bytes);
    },

    /** The owner's attachments, newest first. */
    async list(userId: string, limit: number): Promise<AttachmentInfo[]> {
      return db.selectFrom('attachments').select(INFO).where('user_id', '=', userId).orderBy('created_at', 'desc').orderBy('id').limit(limit).execute();
    },

    async info(id: string, userId: string): Promise<AttachmentInfo | undefined> {
      return db.selectFrom('attachments').select(INFO).where('id', '=', id).where('user_id', '=', userId).executeTakeFirst();
    },

    /** The owner's attachments among `ids` (others' and unknown ids are left out). */
    async infos(ids: readonly string[], userId: string): Promise<AttachmentInfo[]> {
      if (ids.length === 0) return [];
      return db.selectFrom('attachments').select(INFO).where('id', 'in', ids).where('user_id', '=', userId).execute();
    },

    async contents(ids: readonly string[], userId: string): Promise<AttachmentContent[]> {
      if (ids.length === 0) return [];
      return db.selectFrom('attachments').select([...INFO, 'data', 'text_content']).where('id', 'in', ids).where('user_id', '=', userId).execute();
    },

    async data(id: string, userId: string): Promise<(AttachmentInfo & { data: Uint8Array }) | undefined> {
      return db.selectFrom('attachments').select([...INFO, 'data']).where('id', '=', id).where('user_id', '=', userId).executeTakeFirst();
    },

    /** By id alone: for a signed link, whose signature is the grant. */
    async dataById(id: string): Promise<(AttachmentInfo & { data: Uint8Array }) | undefined> {
      return db.selectFrom('attachments').select([...INFO, 'data']).where('id', '=', id).executeTakeFirst();
    },

    async thumbnail(id: string, userId: string): Promise<(AttachmentInfo & { thumbnail: Uint8Array | null }) | undefined> {
      return db.selectFrom('attachments').select([...INFO, 'thumbnail']).where('id', '=', id).where('user_id', '=', userId).executeTakeFirst();
    },

    async setThumbnail(id: string, userId: string, thumbnail: Uint8Array): Promise<boolean> {
      const result = await db.updateTable('attachments').set({ thumbnail }).where('id', '=', id).where('user_id', '=', userId).where('content_type', 'like', 'image/%').executeTakeFirst();
      return result.numUpdatedRows > 0n;
    },

    async remove(id: string, userId: string): Promise<boolean> {
      const result = await db.deleteFrom('attachments').where('id', '=', id).where('user_id', '=', userId).executeTakeFirst();
      return result.numDeletedRows > 0n;
    },
  };
}

export type AttachmentRepository = ReturnType<typeof createAttachmentRepository>;
