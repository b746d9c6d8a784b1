import { useQuery } from '@tanstack/react-query';
import { Link, Navigate, useLocation, useParams } from 'react-router';
import { ApiError } from '../../api/client';
import { sessionsApi } from '../../api/endpoints';
import { useI18n } from '../../i18n/i18n';
import { useAuth } from '../auth/auth';
import { MarkdownView } from '../chat/markdown-view';
import { PreferencesBar } from '../shell/preferences-bar';

/**
 * `/s/:token`: a conversation someone shared, read-only. Open to anyone when
 * an admin allows it; otherwise the server answers 401 and the viewer signs
 * in first, then comes back here.
 */
export default function SharedPage() {
  const { token = '' } = useParams();
  const { t, language } = useI18n();
  const auth = useAuth();
  const location = useLocation();
  const shared = useQuery({ queryKey: ['shared', token, auth.status], queryFn: () => sessionsApi.shared(token, auth.status === 'signed-out'), enabled: auth.status !== 'restoring', retry: false });

  if (shared.error instanceof ApiError && shared.error.status === 401) return <Navigate to="/login" replace state={{ from: location.pathname }} />;
  return (
    <div className="shared-page">
      <PreferencesBar />
      <main id="main" className="page">
        {shared.isPending && (
          <p role="status" className="muted">
            {t('common.loading')}
          </p>
        )}
        {shared.isError && (
          <>
            <h1>{t('share.pageTitle')}</h1>
            <p role="alert">{shared.error instanceof ApiError && shared.error.status === 404 ? t('share.gone') : t('common.error', { message: shared.error.message })}</p>
          </>
        )}
        {shared.data && (
          <>
            <h1 data-testid="shared-title">{shared.data.title || t('sidebar.untitled')}</h1>
            <p className="muted small">{t('share.sharedAt', { date: new Date(shared.data.sharedAt).toLocaleString(language) })}</p>
            <ol className="shared-messages" aria-label={t('chat.messages')}>
              {shared.data.messages.map((m, i) => (
                <li key={i} className={`message ${m.role}`} data-role={m.role}>
                  {m.role === 'user' ? (
                    <div className="bubble">{m.content}</div>
                  ) : (
                    <>
                      {m.agentName && <p className="answer-agent small muted">{t('chat.answeredBy', { agent: m.agentName })}</p>}
                      <MarkdownView text={m.content} />
                      {m.status === 'stopped' && (
                        <p className="stopped-note small">
                          <span className="badge">{t('chat.stopped')}</span>
                        </p>
                      )}
                    </>
                  )}
                </li>
              ))}
            </ol>
          </>
        )}
        <p>
          <Link to="/">{t('share.openApp')}</Link>
        </p>
      </main>
    </div>
  );
}
