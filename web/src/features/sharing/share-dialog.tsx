import { useMutation, useQuery, useQueryClient } from '@tanstack/react-query';
import { useState } from 'react';
import { sessionsApi } from '../../api/endpoints';
import { useI18n } from '../../i18n/i18n';
import { CopyButton } from '../chat/copy-button';
import { Dialog } from '../shell/dialog';

/** Makes, shows (once) and revokes a conversation's read-only links. */
export default function ShareDialog({ sessionId, onClose }: { sessionId: string; onClose: () => void }) {
  const { t, language } = useI18n();
  const queryClient = useQueryClient();
  const links = useQuery({ queryKey: ['shares', sessionId], queryFn: () => sessionsApi.shares(sessionId) });
  const [made, setMade] = useState<string | undefined>();
  const refresh = () => queryClient.invalidateQueries({ queryKey: ['shares', sessionId] });
  const create = useMutation({
    mutationFn: () => sessionsApi.createShare(sessionId),
    onSuccess: (link) => {
      setMade(new URL(link.path, window.location.origin).toString());
      void refresh();
    },
  });
  const revoke = useMutation({ mutationFn: (shareId: string) => sessionsApi.revokeShare(sessionId, shareId), onSuccess: () => void refresh() });
  const date = (iso: string) => new Date(iso).toLocaleString(language);

  return (
    <Dialog open title={t('share.title')} onClose={onClose}>
      <p>{t('share.explain')}</p>
      <p className="muted small">{t('share.signInNeeded')}</p>
      {made ? (
        <div className="key-once">
          <label htmlFor="share-link">{t('share.linkLabel')}</label>
          <input id="share-link" readOnly value={made} onFocus={(e) => e.target.select()} data-testid="share-link" />
          <div>
            <CopyButton text={made} label={t('common.copy')} />
          </div>
        </div>
      ) : (
        <button type="button" className="primary" onClick={() => create.mutate()} disabled={create.isPending} data-testid="share-create">
          {t('share.create')}
        </button>
      )}
      {create.isError && (
        <p role="alert" className="form-error">
          {t('common.error', { message: create.error.message })}
        </p>
      )}
      <h3 className="share-list-title">{t('share.existing')}</h3>
      {links.data?.length === 0 && <p className="muted">{t('share.none')}</p>}
      <ul className="key-list" data-testid="share-list">
        {links.data?.map((l) => (
          <li key={l.id}>
            <span>{t('share.createdAt', { date: date(l.createdAt) })}</span>
            {l.revokedAt ? (
              <span className="badge">{t('share.revoked', { date: date(l.revokedAt) })}</span>
            ) : (
              <button type="button" className="danger" onClick={() => revoke.mutate(l.id)} disabled={revoke.isPending}>
                {t('share.revoke')}
              </button>
            )}
          </li>
        ))}
      </ul>
      <div className="dialog-actions">
        <button type="button" onClick={onClose}>
          {t('common.close')}
        </button>
      </div>
    </Dialog>
  );
}
