import { useQueryClient } from '@tanstack/react-query';
import { lazy, Suspense, useRef, useState } from 'react';
import { sessionsApi } from '../../api/endpoints';
import type { Agent } from '../../api/types';
import { useI18n } from '../../i18n/i18n';
import { saveFile } from '../../save-file';

// The share dialog is its own chunk: most conversations are never shared.
const ShareDialog = lazy(() => import('../sharing/share-dialog'));

/** A conversation's title with its current agent (switchable), export and share. */
export function ConversationHeader({ sessionId, title, agentId, agents, running }: { sessionId: string; title: string; agentId: string | undefined; agents: Agent[]; running: boolean }) {
  const { t } = useI18n();
  const queryClient = useQueryClient();
  const [sharing, setSharing] = useState(false);
  const [switchError, setSwitchError] = useState<string | undefined>();
  const choices = agents.filter((a) => a.status === 'active' || a.id === agentId);
  const current = agents.find((a) => a.id === agentId);

  const switchTo = async (next: string) => {
    setSwitchError(undefined);
    // The page shows and asks with the new agent at once: a question sent while the switch is on its way (or
    // before the conversation is fetched again) must not go to the old agent, which would switch it back.
    const previous = agentId;
    const setAgent = (id: string | undefined) =>
      queryClient.setQueryData<{ agentId: string }>(['session', sessionId], (old) => (old && id !== undefined ? { ...old, agentId: id } : old));
    await queryClient.cancelQueries({ queryKey: ['session', sessionId] });
    setAgent(next);
    try {
      await sessionsApi.switchAgent(sessionId, next);
    } catch (err) {
      setAgent(previous);
      setSwitchError((err as Error).message);
    }
    void queryClient.invalidateQueries({ queryKey: ['session', sessionId] });
    void queryClient.invalidateQueries({ queryKey: ['sessions'] });
  };
  const menu = useRef<HTMLDetailsElement>(null);
  const exportAs = async (format: 'markdown' | 'json') => {
    menu.current?.removeAttribute('open');
    const file = await sessionsApi.exportFile(sessionId, format);
    saveFile(file.blob, file.fileName);
  };

  return (
    <header className="conversation-header">
      <h1 className="chat-title">{title}</h1>
      <div className="conversation-tools">
        <label className="agent-switch">
          <span>{t('chat.agentLabel')}</span>
          <select data-testid="agent-switch" value={agentId ?? ''} disabled={running || agentId === undefined} onChange={(e) => void switchTo(e.target.value)}>
            {agentId !== undefined && !current && <option value={agentId}>{agentId}</option>}
            {choices.map((a) => (
              <option key={a.id} value={a.id}>
                {a.name}
              </option>
            ))}
          </select>
        </label>
        <details className="menu" ref={menu}>
          <summary>{t('chat.export')}</summary>
          <div className="menu-items">
            <button type="button" onClick={() => void exportAs('markdown')} data-testid="export-markdown">
              {t('chat.exportMarkdown')}
            </button>
            <button type="button" onClick={() => void exportAs('json')} data-testid="export-json">
              {t('chat.exportJson')}
            </button>
          </div>
        </details>
        <button type="button" onClick={() => setSharing(true)} data-testid="share">
          {t('chat.share')}
        </button>
      </div>
      {switchError && (
        <p role="alert" className="form-error small">
          {switchError}
        </p>
      )}
      {sharing && (
        <Suspense fallback={null}>
          <ShareDialog sessionId={sessionId} onClose={() => setSharing(false)} />
        </Suspense>
      )}
    </header>
  );
}
