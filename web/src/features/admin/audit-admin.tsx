import { useInfiniteQuery } from '@tanstack/react-query';
import { useState, type FormEvent } from 'react';
import { useI18n } from '../../i18n/i18n';
import { adminApi, type AuditFilters } from './admin-api';
import { saveFile } from '../../save-file';

/** `datetime-local` value (local time) to ISO 8601, or undefined when empty. */
function isoOf(local: string): string | undefined {
  if (!local) return undefined;
  const d = new Date(local);
  return Number.isNaN(d.getTime()) ? undefined : d.toISOString();
}

/** The audit log with filters (action, actor, time range), paging by cursor, and CSV export of the same filters. */
export function AuditAdmin() {
  const { t, language } = useI18n();
  const [draft, setDraft] = useState({ action: '', actor: '', from: '', to: '' });
  const [filters, setFilters] = useState<AuditFilters>({});
  const [exportError, setExportError] = useState<string | undefined>();
  const log = useInfiniteQuery({
    queryKey: ['admin-audit', filters],
    queryFn: ({ pageParam }) => adminApi.audit(filters, pageParam),
    initialPageParam: undefined as number | undefined,
    getNextPageParam: (last) => last.nextCursor ?? undefined,
  });
  const apply = (e: FormEvent) => {
    e.preventDefault();
    setFilters({ action: draft.action.trim() || undefined, actor: draft.actor.trim() || undefined, from: isoOf(draft.from), to: isoOf(draft.to) });
  };
  const exportCsv = async () => {
    setExportError(undefined);
    try {
      const blob = await adminApi.auditCsv(filters);
      saveFile(blob, `audit-${new Date().toISOString().slice(0, 10)}.csv`);
    } catch (err) {
      setExportError(err instanceof Error ? err.message : String(err));
    }
  };
  const entries = log.data?.pages.flatMap((p) => p.entries) ?? [];
  return (
    <section className="card" aria-labelledby="audit-title">
      <div className="card-header">
        <h2 id="audit-title">{t('admin.auditTab')}</h2>
        <button type="button" onClick={() => void exportCsv()} data-testid="export-csv">
          {t('admin.exportCsv')}
        </button>
      </div>
      <form className="filters" onSubmit={apply}>
        {(['action', 'actor'] as const).map((k) => (
          <label key={k} className="field" htmlFor={`audit-${k}`}>
            <span>{k === 'action' ? t('admin.filterAction') : t('admin.filterActor')}</span>
            <input id={`audit-${k}`} value={draft[k]} maxLength={100} onChange={(e) => setDraft((d) => ({ ...d, [k]: e.target.value }))} />
          </label>
        ))}
        {(['from', 'to'] as const).map((k) => (
          <label key={k} className="field" htmlFor={`audit-${k}`}>
            <span>{k === 'from' ? t('admin.filterFrom') : t('admin.filterTo')}</span>
            <input id={`audit-${k}`} type="datetime-local" value={draft[k]} onChange={(e) => setDraft((d) => ({ ...d, [k]: e.target.value }))} />
          </label>
        ))}
        <button type="submit" className="primary">
          {t('admin.applyFilters')}
        </button>
      </form>
      {exportError && <p className="form-error" role="alert">{exportError}</p>}
      {log.isError && <p role="alert">{t('common.error', { message: log.error.message })}</p>}
      <div className="table-wrap" tabIndex={0}>
        <table data-testid="admin-audit">
          <thead>
            <tr>
              <th scope="col">{t('admin.time')}</th>
              <th scope="col">{t('admin.filterActor')}</th>
              <th scope="col">{t('admin.filterAction')}</th>
              <th scope="col">{t('admin.target')}</th>
              <th scope="col">{t('admin.result')}</th>
            </tr>
          </thead>
          <tbody>
            {entries.map((e) => (
              <tr key={e.id}>
                <td className="small">{new Date(e.at).toLocaleString(language)}</td>
                <td>{e.actorUsername ?? ''}</td>
                <td>
                  <code>{e.action}</code>
                </td>
                <td className="small">{[e.targetType, e.targetId].filter(Boolean).join(' ')}</td>
                <td>{e.success ? t('admin.success') : t('admin.failure')}</td>
              </tr>
            ))}
          </tbody>
        </table>
      </div>
      {log.data && entries.length === 0 && <p className="muted">{t('admin.noEntries')}</p>}
      {log.hasNextPage && (
        <button type="button" onClick={() => void log.fetchNextPage()} disabled={log.isFetchingNextPage}>
          {t('admin.loadMore')}
        </button>
      )}
    </section>
  );
}
