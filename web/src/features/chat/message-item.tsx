import { useMutation } from '@tanstack/react-query';
import { memo, useState, type FormEvent } from 'react';
import { chatApi } from '../../api/endpoints';
import { useI18n } from '../../i18n/i18n';
import { CopyButton } from './copy-button';
import { InteractiveNode } from './interactive-node';
import { MarkdownView } from './markdown-view';
import type { UiMessage } from './turn-events';
import { QuestionAttachments } from './question-attachments';
import { parseQuestion } from './question-parts';

export interface MessageActions {
  /** Set on the last answer when no turn runs. */
  onRegenerate?: (() => void) | undefined;
  /** Continues a stopped answer where it stopped (its agent can continue answers). */
  onContinue?: (() => void) | undefined;
  /** Set on the last question when no turn runs. */
  onEdit?: ((text: string) => void) | undefined;
  /** Set on the last answer when it carries an interactive node. */
  onInteractiveReply?: ((text: string) => void) | undefined;
  reconnecting?: number;
  failure?: { code: string; message: string } | undefined;
  onRetryFailure?: (() => void) | undefined;
  /** The agent that wrote this answer, named when the conversation has had more than one. */
  agentName?: string | undefined;
  /** Shows another version of this message (it has more than one); unset while a turn runs. */
  onShowVersion?: ((messageId: string) => void) | undefined;
}

/** `‹ 2/3 ›`: the versions of a regenerated answer or an edited question, as ChatGPT shows them. */
function VersionSwitch({ message, onShow }: { message: UiMessage; onShow: ((messageId: string) => void) | undefined }) {
  const { t } = useI18n();
  const versions = message.versions;
  if (!versions || versions.length < 2) return null;
  const at = versions.indexOf(message.id);
  const previous = at > 0 ? versions[at - 1] : undefined;
  const next = at >= 0 && at < versions.length - 1 ? versions[at + 1] : undefined;
  return (
    <span className="version-switch" role="group" aria-label={t('chat.versions')} data-testid="versions">
      <button type="button" className="small-button" aria-label={t('chat.previousVersion')} disabled={!onShow || previous === undefined} onClick={() => previous && onShow?.(previous)}>
        ‹
      </button>
      <span className="small" data-testid="version-position">
        {t('chat.versionPosition', { n: at + 1, total: versions.length })}
      </span>
      <button type="button" className="small-button" aria-label={t('chat.nextVersion')} disabled={!onShow || next === undefined} onClick={() => next && onShow?.(next)}>
        ›
      </button>
    </span>
  );
}

/** A thumb drawn inline: no emoji font is needed to see it. */
function Thumb({ up }: { up: boolean }) {
  return (
    <svg width="14" height="14" viewBox="0 0 24 24" aria-hidden="true" focusable="false" style={up ? undefined : { transform: 'rotate(180deg)' }}>
      <path fill="currentColor" d="M2 21h4V9H2v12zm20-11a2 2 0 0 0-2-2h-6.3l1-4.6v-.3c0-.4-.2-.8-.4-1.1L13.2 1 6.6 7.6C6.2 8 6 8.5 6 9v10a2 2 0 0 0 2 2h9c.8 0 1.5-.5 1.8-1.2l3-7.1c.1-.2.2-.5.2-.7v-2z" />
    </svg>
  );
}

function Feedback({ message }: { message: UiMessage }) {
  const { t } = useI18n();
  const [rating, setRating] = useState<'up' | 'down' | null>(message.feedback?.rating ?? null);
  const [commenting, setCommenting] = useState(false);
  const [comment, setComment] = useState('');
  const [thanks, setThanks] = useState(false);
  const send = useMutation({
    mutationFn: (v: { rating: 'up' | 'down' | null; comment?: string }) => chatApi.feedback(message.id, v.rating, v.comment),
  });
  const rate = (next: 'up' | 'down') => {
    const value = rating === next ? null : next;
    setRating(value);
    send.mutate({ rating: value });
    setCommenting(value !== null);
    setThanks(false);
  };
  const submit = (e: FormEvent) => {
    e.preventDefault();
    send.mutate({ rating, comment: comment.trim() || undefined });
    setCommenting(false);
    setThanks(true);
  };
  return (
    <>
      <button type="button" className="small-button" aria-pressed={rating === 'up'} aria-label={t('chat.goodAnswer')} onClick={() => rate('up')}>
        <Thumb up />
      </button>
      <button type="button" className="small-button" aria-pressed={rating === 'down'} aria-label={t('chat.badAnswer')} onClick={() => rate('down')}>
        <Thumb up={false} />
      </button>
      {commenting && (
        <form className="feedback-form" onSubmit={submit}>
          <label className="visually-hidden" htmlFor={`fb-${message.id}`}>
            {t('chat.feedbackComment')}
          </label>
          <input id={`fb-${message.id}`} placeholder={t('chat.feedbackComment')} value={comment} maxLength={2000} onChange={(e) => setComment(e.target.value)} />
          <button type="submit" className="small-button">
            {t('common.submit')}
          </button>
        </form>
      )}
      {thanks && (
        <span className="muted small" role="status">
          {t('chat.feedbackThanks')}
        </span>
      )}
    </>
  );
}

function EditBox({ initial, onSend, onCancel }: { initial: string; onSend: (text: string) => void; onCancel: () => void }) {
  const { t } = useI18n();
  const [text, setText] = useState(initial);
  return (
    <form
      className="edit-box"
      onSubmit={(e) => {
        e.preventDefault();
        if (text.trim()) onSend(text);
      }}
    >
      <label className="visually-hidden" htmlFor="edit-question">
        {t('chat.editLabel')}
      </label>
      <textarea id="edit-question" value={text} onChange={(e) => setText(e.target.value)} rows={3} autoFocus onKeyDown={(e) => e.key === 'Escape' && (e.stopPropagation(), onCancel())} />
      <div className="edit-actions">
        <button type="button" onClick={onCancel}>
          {t('common.cancel')}
        </button>
        <button type="submit" className="primary" disabled={!text.trim()}>
          {t('chat.resend')}
        </button>
      </div>
    </form>
  );
}

/** One message: text or markdown, reasoning, flow status, interactive node, errors in place, and its actions. */
export const MessageItem = memo(function MessageItem({ message, actions }: { message: UiMessage; actions: MessageActions }) {
  const { t } = useI18n();
  const [editing, setEditing] = useState(false);
  const streaming = message.status === 'streaming';
  const pending = message.id.startsWith('pending-');

  if (message.role === 'user') {
    const question = parseQuestion(message.content);
    return (
      <article className="message user" data-role="user" aria-label={t('chat.you')}>
        {editing && actions.onEdit ? (
          <EditBox
            initial={question.text}
            onCancel={() => setEditing(false)}
            onSend={(text) => {
              setEditing(false);
              actions.onEdit?.(text);
            }}
          />
        ) : (
          <>
            <QuestionAttachments attachments={question.attachments} />
            {question.text && <div className="bubble">{question.text}</div>}
            <div className="message-actions">
              <VersionSwitch message={message} onShow={actions.onShowVersion} />
              <CopyButton text={question.text} label={t('chat.copyMessage')} />
              {/* Editing resends text only: a question with attachments is regenerated instead. */}
              {actions.onEdit && question.attachments.length === 0 && (
                <button type="button" className="small-button" onClick={() => setEditing(true)}>
                  {t('chat.edit')}
                </button>
              )}
            </div>
          </>
        )}
      </article>
    );
  }

  const failure = actions.failure;
  return (
    <article className="message assistant" data-role="assistant" data-status={message.status} data-message-id={pending ? undefined : message.id} aria-label={actions.agentName ?? t('chat.assistant')} aria-busy={streaming}>
      {actions.agentName && (
        <p className="answer-agent small muted" data-testid="answer-agent">
          {t('chat.answeredBy', { agent: actions.agentName })}
        </p>
      )}
      {message.reasoning && (
        <details className="reasoning" open={streaming && !message.content}>
          <summary>{t('chat.reasoning')}</summary>
          <div className="reasoning-text">{message.reasoning}</div>
        </details>
      )}
      {message.content ? (
        <MarkdownView text={message.content} />
      ) : (
        streaming && !message.reasoning && <p className="muted thinking">{t('chat.thinking')}</p>
      )}
      {!streaming && !message.content && !message.error && !failure && message.status === 'complete' && <p className="muted">{t('chat.emptyAnswer')}</p>}
      {streaming && message.flow && (
        <p className="flow-status muted small" role="status">
          {t('chat.flowNode', { name: message.flow.moduleName, status: message.flow.status })}
        </p>
      )}
      {streaming && actions.reconnecting !== undefined && actions.reconnecting > 0 && (
        <p className="muted small" role="status" data-testid="reconnecting">
          {t('chat.reconnecting', { n: actions.reconnecting })}
        </p>
      )}
      {message.status === 'stopped' && (
        <p className="stopped-note small" data-testid="stopped">
          <span className="badge">{t('chat.stopped')}</span> <span className="muted">{actions.onContinue ? t('chat.stoppedNoteContinue') : t('chat.stoppedNote')}</span>
          {actions.onContinue && (
            <button type="button" className="small-button" onClick={actions.onContinue}>
              {t('chat.continue')}
            </button>
          )}
        </p>
      )}
      {(message.error || failure) && (
        <div className="message-error" role="alert">
          <span>
            {(failure ?? message.error)?.code === 'QUOTA_EXCEEDED'
              ? t('chat.quotaExceeded')
              : t('chat.errorIn', { message: (failure ?? message.error)?.message || (failure ?? message.error)?.code || '' })}
          </span>
          {(actions.onRetryFailure ?? actions.onRegenerate) && (
            <button type="button" className="small-button" onClick={actions.onRetryFailure ?? actions.onRegenerate}>
              {t('common.retry')}
            </button>
          )}
        </div>
      )}
      {message.interactive !== null && actions.onInteractiveReply && <InteractiveNode data={message.interactive} disabled={streaming} onReply={actions.onInteractiveReply} />}
      {!streaming && !pending && (
        <div className="message-actions">
          <VersionSwitch message={message} onShow={actions.onShowVersion} />
          <CopyButton text={message.content} label={t('chat.copyMessage')} />
          <Feedback message={message} />
          {actions.onRegenerate && (
            <button type="button" className="small-button" onClick={actions.onRegenerate}>
              {t('chat.regenerate')}
            </button>
          )}
        </div>
      )}
    </article>
  );
});
