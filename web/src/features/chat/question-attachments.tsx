import { useEffect, useState } from 'react';
import { attachmentsApi } from '../../api/endpoints';
import { useI18n } from '../../i18n/i18n';
import { saveFile } from '../../save-file';
import { isOwnAttachment, type AttachmentRef } from './question-parts';

/** A sheet of paper drawn inline: no icon font is needed to see it. */
export function FileIcon() {
  return (
    <svg className="chip-icon" width="20" height="20" viewBox="0 0 24 24" aria-hidden="true" focusable="false">
      <path fill="currentColor" d="M6 2h8l6 6v12a2 2 0 0 1-2 2H6a2 2 0 0 1-2-2V4a2 2 0 0 1 2-2zm7 1.5V9h5.5L13 3.5zM8 13h8v1.5H8V13zm0 3.5h8V18H8v-1.5z" />
    </svg>
  );
}

/**
 * An object URL of an attachment's bytes. Attachments are served to their
 * owner only, with the access token (held in memory, never a cookie), so an
 * <img src> of the API URL would not be authorised: the bytes are fetched and shown from memory.
 */
function useAttachmentUrl(url: string | undefined): { src: string | undefined; failed: boolean } {
  const [state, setState] = useState<{ src: string | undefined; failed: boolean }>({ src: undefined, failed: false });
  useEffect(() => {
    if (url === undefined) return;
    let live = true;
    let objectUrl: string | undefined;
    attachmentsApi.blob(url).then(
      (blob) => {
        objectUrl = URL.createObjectURL(blob);
        if (live) setState({ src: objectUrl, failed: false });
        else URL.revokeObjectURL(objectUrl);
      },
      () => live && setState({ src: undefined, failed: true }),
    );
    return () => {
      live = false;
      if (objectUrl) URL.revokeObjectURL(objectUrl);
    };
  }, [url]);
  return state;
}

function ImageThumbnail({ attachment, index }: { attachment: AttachmentRef; index: number }) {
  const { t } = useI18n();
  const { src, failed } = useAttachmentUrl(`${attachment.url}/thumbnail`);
  const open = async () => {
    // The full image in a tab of its own, from memory (the tab has no access token).
    const blob = await attachmentsApi.blob(attachment.url);
    const full = URL.createObjectURL(blob);
    window.open(full, '_blank', 'noopener');
    setTimeout(() => URL.revokeObjectURL(full), 60_000);
  };
  const label = t('attach.imageN', { n: index + 1 });
  return (
    <button type="button" className="attachment-thumb" onClick={() => void open()} aria-label={t('attach.openImage', { name: label })} data-testid="attachment-thumbnail">
      {src ? <img src={src} alt={label} /> : <span className="small muted">{failed ? t('attach.unavailable') : t('common.loading')}</span>}
    </button>
  );
}

function FileLink({ attachment }: { attachment: AttachmentRef }) {
  const { t } = useI18n();
  const download = async () => saveFile(await attachmentsApi.blob(attachment.url), attachment.name);
  return (
    <button type="button" className="attachment-file" onClick={() => void download()} aria-label={t('attach.download', { name: attachment.name })} data-testid="attachment-file">
      <FileIcon />
      <span className="chip-name">{attachment.name}</span>
    </button>
  );
}

/** The attachments of a question in the conversation: image thumbnails and file names, each opening its attachment. */
export function QuestionAttachments({ attachments }: { attachments: readonly AttachmentRef[] }) {
  const { t } = useI18n();
  if (attachments.length === 0) return null;
  let images = 0;
  return (
    <ul className="question-attachments" aria-label={t('attach.list')}>
      {attachments.map((a, i) => (
        <li key={`${a.url}-${i}`}>
          {!isOwnAttachment(a.url) ? (
            <a href={a.url} rel="noopener noreferrer" target="_blank">
              {a.name}
            </a>
          ) : a.kind === 'image' ? (
            <ImageThumbnail attachment={a} index={images++} />
          ) : (
            <FileLink attachment={a} />
          )}
        </li>
      ))}
    </ul>
  );
}
