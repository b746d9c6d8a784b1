import { useEffect, useRef, useState, type FormEvent } from 'react';
import { useLocation } from 'react-router';
import type { QuestionContent } from '../../api/types';
import { useI18n } from '../../i18n/i18n';
import { usePendingAttachments, type PendingAttachment } from './pending-attachments';
import { questionContent } from './question-parts';
import { FileIcon } from './question-attachments';

export const CHAT_INPUT_ID = 'chat-input';

const IMAGE_TYPES = 'image/png,image/jpeg,image/gif,image/webp';
const FILE_TYPES = 'application/pdf,text/plain,text/markdown,text/csv,application/json,.txt,.md,.csv,.json';

/** A paper clip drawn inline: no icon font is needed to see it. */
function Clip() {
  return (
    <svg width="20" height="20" viewBox="0 0 24 24" aria-hidden="true" focusable="false">
      <path fill="currentColor" d="M16.5 6v11.5a4 4 0 0 1-8 0V5a2.5 2.5 0 0 1 5 0v10.5a1 1 0 0 1-2 0V6H10v9.5a2.5 2.5 0 0 0 5 0V5a4 4 0 0 0-8 0v12.5a5.5 5.5 0 0 0 11 0V6h-1.5z" />
    </svg>
  );
}

function Chip({ item, onRemove }: { item: PendingAttachment; onRemove: () => void }) {
  const { t } = useI18n();
  return (
    <li className="attachment-chip" data-state={item.state} data-testid="attachment-chip">
      {item.preview ? <img src={item.preview} alt="" className="chip-preview" /> : <FileIcon />}
      <span className="chip-text">
        <span className="chip-name">{item.name}</span>
        {item.state === 'uploading' && <span className="small muted">{t('attach.uploading')}</span>}
        {item.state === 'refused' && item.problem && (
          <span className="small chip-problem" role="alert">
            {t(item.problem)}
          </span>
        )}
      </span>
      <button type="button" className="chip-remove" aria-label={t('attach.remove', { name: item.name })} onClick={onRemove}>
        ×
      </button>
    </li>
  );
}

/**
 * The message box: Enter sends, Shift+Enter adds a line; Stop replaces Send
 * while an answer runs. Images and files (as the agent takes them) come in
 * by the paper-clip button, by dropping them anywhere on the page, or by pasting;
 * each shows as a chip until the question is sent.
 */
export function Composer({ agentName, takes, running, disabled, onSend, onStop }: { agentName: string; takes: { images: boolean; files: boolean }; running: boolean; disabled: boolean; onSend: (content: QuestionContent) => void; onStop: () => void }) {
  const { t } = useI18n();
  const [text, setText] = useState('');
  const [dragging, setDragging] = useState(false);
  const ref = useRef<HTMLTextAreaElement>(null);
  const picker = useRef<HTMLInputElement>(null);
  const attachments = usePendingAttachments(takes);
  const canAttach = (takes.images || takes.files) && !disabled;
  const focusRequest = (useLocation().state as { focusInput?: number } | null)?.focusInput;
  useEffect(() => {
    if (focusRequest !== undefined) ref.current?.focus();
  }, [focusRequest]);
  useEffect(() => {
    const el = ref.current;
    if (!el) return;
    el.style.height = 'auto';
    el.style.height = `${Math.min(el.scrollHeight, 240)}px`;
  }, [text]);
  // Files dropped anywhere on the page are attached (and never open in place of the app, the browser's default).
  const { add } = attachments;
  useEffect(() => {
    if (!canAttach) return;
    const over = (e: DragEvent) => {
      if (!e.dataTransfer?.types.includes('Files')) return;
      e.preventDefault();
      setDragging(true);
    };
    const leave = (e: DragEvent) => {
      // Leaving the window: relatedTarget is null (moving between elements names the next one).
      if (e.relatedTarget === null) setDragging(false);
    };
    const drop = (e: DragEvent) => {
      setDragging(false);
      const files = e.dataTransfer?.files;
      if (!files || files.length === 0) return;
      e.preventDefault();
      add([...files]);
    };
    document.addEventListener('dragover', over);
    document.addEventListener('dragleave', leave);
    document.addEventListener('drop', drop);
    return () => {
      document.removeEventListener('dragover', over);
      document.removeEventListener('dragleave', leave);
      document.removeEventListener('drop', drop);
    };
  }, [canAttach, add]);
  const ready = attachments.pending.flatMap((p) => (p.state === 'ready' && p.uploaded ? [{ url: p.uploaded.url, name: p.uploaded.name, kind: p.uploaded.kind }] : []));
  const refused = attachments.pending.some((p) => p.state === 'refused');
  const sendable = (text.trim() !== '' || ready.length > 0) && !attachments.uploading && !refused && !disabled;
  const send = () => {
    if (!sendable || running) return;
    onSend(questionContent(text, ready));
    setText('');
    attachments.clear();
  };
  const submit = (e: FormEvent) => {
    e.preventDefault();
    send();
  };
  const accept = [takes.images ? IMAGE_TYPES : '', takes.files ? FILE_TYPES : ''].filter(Boolean).join(',');
  return (
    <form
      className={`composer${dragging ? ' dragging' : ''}`}
      onSubmit={submit}
      data-testid="composer"
    >
      {attachments.pending.length > 0 && (
        <ul className="attachment-chips" aria-label={t('attach.list')}>
          {attachments.pending.map((item) => (
            <Chip key={item.key} item={item} onRemove={() => attachments.remove(item.key)} />
          ))}
        </ul>
      )}
      {dragging && (
        <p className="drop-hint" aria-hidden="true">
          {t('attach.dropHere')}
        </p>
      )}
      {canAttach && (
        <>
          <input
            ref={picker}
            type="file"
            multiple
            accept={accept}
            className="visually-hidden"
            tabIndex={-1}
            aria-hidden="true"
            data-testid="attach-input"
            onChange={(e) => {
              attachments.add([...(e.target.files ?? [])]);
              e.target.value = '';
            }}
          />
          <button type="button" className="attach" aria-label={t(takes.images && takes.files ? 'attach.button' : takes.images ? 'attach.buttonImages' : 'attach.buttonFiles')} title={t('attach.button')} onClick={() => picker.current?.click()} data-testid="attach">
            <Clip />
          </button>
        </>
      )}
      <label htmlFor={CHAT_INPUT_ID} className="visually-hidden">
        {t('chat.inputLabel')}
      </label>
      <textarea
        ref={ref}
        id={CHAT_INPUT_ID}
        rows={1}
        value={text}
        placeholder={t('chat.placeholder', { agent: agentName })}
        maxLength={200_000}
        disabled={disabled}
        onChange={(e) => setText(e.target.value)}
        onPaste={(e) => {
          const files = [...e.clipboardData.files];
          if (files.length === 0 || !canAttach) return;
          e.preventDefault();
          attachments.add(files);
        }}
        onKeyDown={(e) => {
          if (e.key === 'Enter' && !e.shiftKey && !e.nativeEvent.isComposing) {
            e.preventDefault();
            send();
          }
        }}
      />
      {running ? (
        <button type="button" className="stop" onClick={onStop} data-testid="stop">
          {t('chat.stop')}
        </button>
      ) : (
        <button type="submit" className="primary" disabled={!sendable} data-testid="send">
          {t('chat.send')}
        </button>
      )}
    </form>
  );
}
