import { useCallback, useEffect, useRef, useState } from 'react';
import { ApiError } from '../../api/client';
import { attachmentsApi } from '../../api/endpoints';
import type { Attachment } from '../../api/types';
import type { MessageKey } from '../../i18n/en';

/** A file on its way into the question: uploading, ready (the server took it), or refused. */
export interface PendingAttachment {
  key: string;
  name: string;
  /** The browser's guess until the server's answer (the server decides by content). */
  kind: 'image' | 'file';
  /** A local preview of an image (an object URL of the file itself). */
  preview: string | undefined;
  state: 'uploading' | 'ready' | 'refused';
  uploaded?: Attachment;
  /** Why it was refused, as a dictionary key. */
  problem?: MessageKey;
}

/** The largest side of a thumbnail the browser makes, in pixels. */
const THUMBNAIL_SIDE = 320;
const THUMBNAIL_MAX_BYTES = 64 * 1024;

/**
 * A small WebP of an image, made here at upload so the server needs no
 * image library (it checks the bytes are an image before keeping it).
 * Undefined when the browser cannot decode the image or the result is too large.
 */
async function thumbnailOf(file: Blob): Promise<Blob | undefined> {
  try {
    const bitmap = await createImageBitmap(file);
    const scale = Math.min(1, THUMBNAIL_SIDE / Math.max(bitmap.width, bitmap.height));
    const canvas = document.createElement('canvas');
    canvas.width = Math.max(1, Math.round(bitmap.width * scale));
    canvas.height = Math.max(1, Math.round(bitmap.height * scale));
    canvas.getContext('2d')?.drawImage(bitmap, 0, 0, canvas.width, canvas.height);
    bitmap.close();
    const blob = await new Promise<Blob | null>((resolve) => canvas.toBlob(resolve, 'image/webp', 0.8));
    return blob && blob.size <= THUMBNAIL_MAX_BYTES ? blob : undefined;
  } catch {
    return undefined;
  }
}

const PROBLEMS: Record<string, MessageKey> = {
  ATTACHMENT_TOO_LARGE: 'attach.tooLarge',
  ATTACHMENT_QUOTA_EXCEEDED: 'attach.quotaExceeded',
  ATTACHMENT_TYPE_REFUSED: 'attach.typeRefused',
  ATTACHMENT_TYPE_MISMATCH: 'attach.typeMismatch',
};

/** The attachments of the question being written: add (upload), remove, and clear once sent. */
export function usePendingAttachments(takes: { images: boolean; files: boolean }) {
  const [pending, setPending] = useState<PendingAttachment[]>([]);
  const previews = useRef(new Set<string>());
  // Chips removed while their upload ran: the upload, once done, is deleted again.
  const dropped = useRef(new Set<string>());
  useEffect(() => {
    const urls = previews.current;
    return () => {
      for (const url of urls) URL.revokeObjectURL(url);
    };
  }, []);

  const update = (key: string, change: Partial<PendingAttachment>) => setPending((list) => list.map((p) => (p.key === key ? { ...p, ...change } : p)));

  const add = useCallback(
    (files: readonly File[]) => {
      for (const file of files) {
        const key = crypto.getRandomValues(new Uint32Array(2)).join('-');
        const kind = file.type.startsWith('image/') ? 'image' : 'file';
        const allowed = kind === 'image' ? takes.images : takes.files;
        const preview = kind === 'image' && allowed ? URL.createObjectURL(file) : undefined;
        if (preview) previews.current.add(preview);
        const name = file.name || (kind === 'image' ? 'image' : 'file');
        setPending((list) => [...list, { key, name, kind, preview, state: allowed ? 'uploading' : 'refused', problem: allowed ? undefined : kind === 'image' ? 'attach.noImages' : 'attach.noFiles' }]);
        if (!allowed) continue;
        void (async () => {
          try {
            const uploaded = await attachmentsApi.upload(file, name);
            if (dropped.current.has(key)) {
              await attachmentsApi.remove(uploaded.id).catch(() => undefined);
              return;
            }
            update(key, { state: 'ready', uploaded, kind: uploaded.kind });
            if (uploaded.kind === 'image') {
              const thumbnail = await thumbnailOf(file);
              // Best effort: without one the conversation shows the image itself, scaled down.
              if (thumbnail) await attachmentsApi.setThumbnail(uploaded.id, thumbnail).catch(() => undefined);
            }
          } catch (err) {
            update(key, { state: 'refused', problem: (err instanceof ApiError && PROBLEMS[err.code]) || 'attach.failed' });
          }
        })();
      }
    },
    [takes.images, takes.files],
  );

  const remove = useCallback(
    (key: string) => {
      const gone = pending.find((p) => p.key === key);
      dropped.current.add(key);
      // Unsent, it would only take the user's quota.
      if (gone?.uploaded) void attachmentsApi.remove(gone.uploaded.id).catch(() => undefined);
      if (gone?.preview) {
        URL.revokeObjectURL(gone.preview);
        previews.current.delete(gone.preview);
      }
      setPending((list) => list.filter((p) => p.key !== key));
    },
    [pending],
  );

  const clear = useCallback(() => {
    // Sent: the question shows the server's thumbnails from here on.
    for (const url of previews.current) URL.revokeObjectURL(url);
    previews.current.clear();
    setPending([]);
  }, []);
  return { pending, add, remove, clear, uploading: pending.some((p) => p.state === 'uploading') };
}
