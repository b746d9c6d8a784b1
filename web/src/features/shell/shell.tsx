import { useQueryClient } from '@tanstack/react-query';
import { useCallback, useEffect, useState } from 'react';
import { Link, Outlet, useLocation, useMatch, useNavigate } from 'react-router';
import { authApi } from '../../api/endpoints';
import { useI18n } from '../../i18n/i18n';
import { useUser } from '../auth/auth';
import { Sidebar } from '../chat/sidebar';
import { NEW_CHAT, turns$, turnStore } from '../chat/turn-store';
import { Dialog } from './dialog';
import { SHORTCUTS, shortcutOf } from './shortcuts';

export const CHAT_INPUT_ID = 'chat-input';
export const SEARCH_INPUT_ID = 'session-search';

/** The signed-in frame: the conversations sidebar (a drawer below 768 px), the page, shortcuts and their help. */
export function Shell() {
  const { t } = useI18n();
  const user = useUser();
  const navigate = useNavigate();
  const location = useLocation();
  const queryClient = useQueryClient();
  const sessionMatch = useMatch('/c/:sessionId');
  const sessionId = sessionMatch?.params.sessionId;
  const [drawerOpen, setDrawerOpen] = useState(false);
  const [helpOpen, setHelpOpen] = useState(false);

  useEffect(() => setDrawerOpen(false), [location.pathname]);

  // Lists follow the turns: a new chat appears in the sidebar when it starts, and moves when it ends.
  useEffect(
    () =>
      turnStore.onSession((id, event) => {
        void queryClient.invalidateQueries({ queryKey: ['sessions'] });
        if (event === 'ended') void queryClient.invalidateQueries({ queryKey: ['session', id] });
      }),
    [queryClient],
  );

  const focusById = useCallback((id: string) => {
    const el = document.getElementById(id);
    if (el) {
      if (id === SEARCH_INPUT_ID) setDrawerOpen(true);
      el.focus();
      return true;
    }
    return false;
  }, []);

  useEffect(() => {
    const onKey = (e: KeyboardEvent) => {
      const action = shortcutOf(e);
      if (!action) return;
      // Escape inside a dialog belongs to the dialog.
      if (action === 'stop' && document.querySelector('dialog[open]')) return;
      switch (action) {
        case 'newChat':
          e.preventDefault();
          // The composer focuses itself when the new page shows (see Composer).
          void navigate('/', { state: { focusInput: Date.now() } });
          break;
        case 'focusInput':
          if (focusById(CHAT_INPUT_ID)) e.preventDefault();
          break;
        case 'stop': {
          const key = sessionId ?? NEW_CHAT;
          if (turnStore.isRunning(key)) {
            e.preventDefault();
            void turns$.stop(key);
          }
          break;
        }
        case 'search':
          e.preventDefault();
          setDrawerOpen(true);
          setTimeout(() => focusById(SEARCH_INPUT_ID), 0);
          break;
        case 'help':
          e.preventDefault();
          setHelpOpen(true);
          break;
      }
    };
    window.addEventListener('keydown', onKey);
    return () => window.removeEventListener('keydown', onKey);
  }, [navigate, sessionId, focusById]);

  return (
    <div className={`shell${drawerOpen ? ' drawer-open' : ''}`}>
      <a className="skip-link" href="#main">
        {t('app.skipToContent')}
      </a>
      <header className="topbar">
        <button type="button" className="icon-button menu-button" aria-expanded={drawerOpen} aria-controls="sidebar" onClick={() => setDrawerOpen((o) => !o)}>
          <span aria-hidden="true">☰</span>
          <span className="visually-hidden">{drawerOpen ? t('nav.closeMenu') : t('nav.menu')}</span>
        </button>
        <Link to="/" className="brand">
          {t('app.name')}
        </Link>
      </header>
      <nav id="sidebar" className="sidebar" aria-label={t('nav.sidebar')}>
        <Sidebar currentSessionId={sessionId} />
        <div className="sidebar-footer">
          <Link to="/profile" className="footer-link">
            {t('nav.profile')} · {user.displayName ?? user.username}
          </Link>
          {user.role === 'admin' && (
            <Link to="/admin" className="footer-link">
              {t('nav.admin')}
            </Link>
          )}
          <div className="footer-row">
            <button type="button" className="link" onClick={() => setHelpOpen(true)}>
              {t('shortcuts.open')}
            </button>
            <button type="button" className="link" onClick={() => void authApi.logout()}>
              {t('auth.signOut')}
            </button>
          </div>
        </div>
      </nav>
      {drawerOpen && <div className="scrim" aria-hidden="true" onClick={() => setDrawerOpen(false)} />}
      <div className="content">
        <Outlet />
      </div>
      <Dialog open={helpOpen} title={t('shortcuts.title')} onClose={() => setHelpOpen(false)}>
        <dl className="shortcut-list" data-testid="shortcut-help">
          {SHORTCUTS.map((s) => (
            <div key={s.action} className="shortcut-row">
              <dt>
                <kbd>{s.keys}</kbd>
              </dt>
              <dd>{t(s.label)}</dd>
            </div>
          ))}
          <div className="shortcut-row">
            <dt>
              <kbd>Enter</kbd>
            </dt>
            <dd>{t('shortcuts.send')}</dd>
          </div>
        </dl>
        <div className="dialog-actions">
          <button type="button" onClick={() => setHelpOpen(false)} autoFocus>
            {t('common.close')}
          </button>
        </div>
      </Dialog>
    </div>
  );
}
