import { useMutation, useQuery, useQueryClient } from '@tanstack/react-query';
import { useEffect, useMemo, useState, type FormEvent } from 'react';
import { Link, useNavigate } from 'react-router';
import { sessionsApi } from '../../api/endpoints';
import type { SessionSummary } from '../../api/types';
import { useI18n } from '../../i18n/i18n';
import { Dialog } from '../shell/dialog';
import { GROUP_LABEL, groupByDate } from './date-groups';
import { parseSnippet } from './snippet';

const SEARCH_INPUT_ID = 'session-search';

function useDebounced<T>(value: T, ms: number): T {
  const [v, setV] = useState(value);
  useEffect(() => {
    const timer = setTimeout(() => setV(value), ms);
    return () => clearTimeout(timer);
  }, [value, ms]);
  return v;
}

function SearchResults({ q }: { q: string }) {
  const { t } = useI18n();
  const results = useQuery({ queryKey: ['search', q], queryFn: ({ signal }) => sessionsApi.search(q, signal) });
  if (results.isPending) return <p className="muted small">{t('common.loading')}</p>;
  if (results.isError) return <p className="form-error small">{t('common.error', { message: results.error.message })}</p>;
  if (results.data.length === 0) return <p className="muted small">{t('sidebar.noResults', { q })}</p>;
  return (
    <ul className="session-list" aria-label={t('sidebar.results')} data-testid="search-results">
      {results.data.map((hit) => (
        <li key={`${hit.sessionId}:${hit.messageId ?? ''}`}>
          <Link to={`/c/${hit.sessionId}`} className="session-link search-hit">
            <span className="session-title">{hit.title || t('sidebar.untitled')}</span>
            <span className="snippet">
              {parseSnippet(hit.snippet).map((part, i) => (part.match ? <mark key={i}>{part.text}</mark> : <span key={i}>{part.text}</span>))}
            </span>
          </Link>
        </li>
      ))}
    </ul>
  );
}

function SessionRow({ session, current, archivedView, onDelete, onArchive }: { session: SessionSummary; current: boolean; archivedView: boolean; onDelete: () => void; onArchive: () => void }) {
  const { t } = useI18n();
  const queryClient = useQueryClient();
  const [menu, setMenu] = useState(false);
  const [renaming, setRenaming] = useState(false);
  const [title, setTitle] = useState(session.title);
  const title$ = session.title || t('sidebar.untitled');
  const rename = useMutation({
    mutationFn: (next: string) => sessionsApi.rename(session.id, next),
    onSuccess: () => queryClient.invalidateQueries({ queryKey: ['sessions'] }),
  });
  const submit = (e: FormEvent) => {
    e.preventDefault();
    const next = title.trim();
    if (next && next !== session.title) rename.mutate(next);
    setRenaming(false);
  };
  if (renaming) {
    return (
      <li>
        <form onSubmit={submit} className="rename-form">
          <label className="visually-hidden" htmlFor={`rename-${session.id}`}>
            {t('sidebar.renameLabel')}
          </label>
          <input id={`rename-${session.id}`} value={title} maxLength={200} onChange={(e) => setTitle(e.target.value)} autoFocus onKeyDown={(e) => e.key === 'Escape' && (e.stopPropagation(), setRenaming(false))} />
          <button type="submit">{t('common.save')}</button>
        </form>
      </li>
    );
  }
  return (
    <li className={current ? 'current' : undefined}>
      <div className="session-row">
        <Link to={`/c/${session.id}`} className="session-link" aria-current={current ? 'page' : undefined}>
          <span className="session-title">{rename.isPending ? rename.variables : title$}</span>
        </Link>
        <button type="button" className="icon-button" aria-expanded={menu} aria-label={t('sidebar.actions', { title: title$ })} onClick={() => setMenu((m) => !m)}>
          <span aria-hidden="true">⋯</span>
        </button>
      </div>
      {menu && (
        <div className="row-menu">
          <button type="button" onClick={() => { setMenu(false); setTitle(session.title); setRenaming(true); }}>
            {t('sidebar.rename')}
          </button>
          <button type="button" onClick={() => { setMenu(false); onArchive(); }}>
            {archivedView ? t('sidebar.unarchive') : t('sidebar.archive')}
          </button>
          <button type="button" className="danger" onClick={() => { setMenu(false); onDelete(); }}>
            {t('sidebar.delete')}
          </button>
        </div>
      )}
    </li>
  );
}

/** Sessions grouped by date, new chat, search with snippets, rename, archive (with undo), delete (with confirmation). */
export function Sidebar({ currentSessionId }: { currentSessionId: string | undefined }) {
  const { t } = useI18n();
  const navigate = useNavigate();
  const queryClient = useQueryClient();
  const [archivedView, setArchivedView] = useState(false);
  const [search, setSearch] = useState('');
  const q = useDebounced(search.trim(), 250);
  const [deleting, setDeleting] = useState<SessionSummary | undefined>();
  const [undo, setUndo] = useState<SessionSummary | undefined>();
  const sessions = useQuery({ queryKey: ['sessions', archivedView ? 'only' : 'exclude'], queryFn: () => sessionsApi.list(archivedView ? 'only' : 'exclude') });
  const groups = useMemo(() => groupByDate(sessions.data?.items ?? [], new Date()), [sessions.data]);

  const refresh = () => queryClient.invalidateQueries({ queryKey: ['sessions'] });
  const remove = useMutation({
    mutationFn: (s: SessionSummary) => sessionsApi.remove(s.id),
    onSuccess: async (_r, s) => {
      queryClient.removeQueries({ queryKey: ['session', s.id] });
      await refresh();
      if (s.id === currentSessionId) await navigate('/');
    },
  });
  const archive = useMutation({
    mutationFn: ({ s, archived }: { s: SessionSummary; archived: boolean }) => sessionsApi.archive(s.id, archived),
    onSuccess: async (_r, { s, archived }) => {
      setUndo(archived ? s : undefined);
      await refresh();
    },
  });

  useEffect(() => {
    if (!undo) return;
    const timer = setTimeout(() => setUndo(undefined), 8000);
    return () => clearTimeout(timer);
  }, [undo]);

  return (
    <div className="sidebar-body">
      <Link to="/" className="button primary new-chat" data-testid="new-chat">
        + {t('sidebar.newChat')}
      </Link>
      <div className="search-box" role="search">
        <label htmlFor={SEARCH_INPUT_ID} className="visually-hidden">
          {t('sidebar.search')}
        </label>
        <input id={SEARCH_INPUT_ID} type="search" placeholder={t('sidebar.searchPlaceholder')} value={search} maxLength={200} onChange={(e) => setSearch(e.target.value)} />
      </div>
      {q ? (
        <SearchResults q={q} />
      ) : (
        <>
          <button type="button" className="link small" onClick={() => setArchivedView((v) => !v)} aria-pressed={archivedView}>
            {archivedView ? t('sidebar.showActive') : t('sidebar.showArchived')}
          </button>
          {sessions.isError && <p className="form-error small">{t('common.error', { message: sessions.error.message })}</p>}
          {sessions.data && groups.length === 0 && <p className="muted small">{t('sidebar.empty')}</p>}
          {groups.map((g) => (
            <section key={g.group} aria-labelledby={`group-${g.group}`}>
              <h2 id={`group-${g.group}`} className="group-title">
                {t(GROUP_LABEL[g.group])}
              </h2>
              <ul className="session-list">
                {g.items.map((s) => (
                  <SessionRow key={s.id} session={s} current={s.id === currentSessionId} archivedView={archivedView} onDelete={() => setDeleting(s)} onArchive={() => archive.mutate({ s, archived: !archivedView })} />
                ))}
              </ul>
            </section>
          ))}
        </>
      )}
      {undo && (
        <div className="toast" role="status">
          <span>{t('sidebar.archived', { title: undo.title || t('sidebar.untitled') })}</span>
          <button type="button" className="link" onClick={() => { archive.mutate({ s: undo, archived: false }); setUndo(undefined); }}>
            {t('common.undo')}
          </button>
        </div>
      )}
      <Dialog open={deleting !== undefined} title={t('sidebar.delete')} onClose={() => setDeleting(undefined)}>
        <p>{t('sidebar.confirmDelete', { title: deleting?.title || t('sidebar.untitled') })}</p>
        <div className="dialog-actions">
          <button type="button" onClick={() => setDeleting(undefined)}>
            {t('common.cancel')}
          </button>
          <button type="button" className="danger" autoFocus onClick={() => { if (deleting) remove.mutate(deleting); setDeleting(undefined); }}>
            {t('common.delete')}
          </button>
        </div>
      </Dialog>
    </div>
  );
}
