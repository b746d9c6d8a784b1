import { useEffect, useRef, useState, type FormEvent } from 'react';
import { useLocation } from 'react-router';
import { useI18n } from '../../i18n/i18n';

export const CHAT_INPUT_ID = 'chat-input';

/** The message box: Enter sends, Shift+Enter adds a line; Stop replaces Send while an answer runs. */
export function Composer({ agentName, running, disabled, onSend, onStop }: { agentName: string; running: boolean; disabled: boolean; onSend: (text: string) => void; onStop: () => void }) {
  const { t } = useI18n();
  const [text, setText] = useState('');
  const ref = useRef<HTMLTextAreaElement>(null);
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
  const send = () => {
    if (!text.trim() || running || disabled) return;
    onSend(text);
    setText('');
  };
  const submit = (e: FormEvent) => {
    e.preventDefault();
    send();
  };
  return (
    <form className="composer" onSubmit={submit}>
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
        <button type="submit" className="primary" disabled={!text.trim() || disabled} data-testid="send">
          {t('chat.send')}
        </button>
      )}
    </form>
  );
}
