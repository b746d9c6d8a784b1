import { useQuery } from '@tanstack/react-query';
import { useI18n } from '../../i18n/i18n';
import { statsApi } from './admin-api';

/** System status: version, uptime, each dependency's health and latency; refreshed every 10 s while open. */
export function SystemAdmin() {
  const { t, language } = useI18n();
  const status = useQuery({ queryKey: ['admin-system'], queryFn: statsApi.system, refetchInterval: 10_000 });
  const s = status.data;
  const dep = (d: { ok: boolean; kind: string; latencyMs?: number; error?: string }) =>
    d.ok ? t('admin.healthy', { kind: d.kind, ms: d.latencyMs ?? 0 }) : t('admin.unhealthy', { kind: d.kind, error: d.error ?? '' });
  return (
    <section className="card" aria-labelledby="system-title">
      <div className="card-header">
        <h2 id="system-title">{t('admin.systemTab')}</h2>
        <button type="button" onClick={() => void status.refetch()} disabled={status.isFetching}>
          {t('admin.refresh')}
        </button>
      </div>
      {status.isError && <p role="alert">{t('common.error', { message: status.error.message })}</p>}
      {s && (
        <dl className="facts" data-testid="system-status">
          <dt>{t('admin.version')}</dt>
          <dd>{s.version}</dd>
          <dt>{t('admin.nodeVersion')}</dt>
          <dd>{s.node}</dd>
          <dt>{t('admin.uptime')}</dt>
          <dd>{t('admin.durationHms', { h: Math.floor(s.uptimeSeconds / 3600), m: Math.floor((s.uptimeSeconds % 3600) / 60) })}</dd>
          <dt>{t('admin.startedAt')}</dt>
          <dd>{new Date(s.startedAt).toLocaleString(language)}</dd>
          <dt>{t('admin.database')}</dt>
          <dd className={s.dependencies.database.ok ? 'form-ok' : 'form-error'} data-testid="dep-database">
            {dep(s.dependencies.database)}
          </dd>
          <dt>{t('admin.sharedState')}</dt>
          <dd className={s.dependencies.sharedState.ok ? 'form-ok' : 'form-error'} data-testid="dep-shared-state">
            {dep(s.dependencies.sharedState)}
          </dd>
          <dt>{t('admin.agentsTab')}</dt>
          <dd>{t('admin.agentsActive', { active: s.agents.active, total: s.agents.total })}</dd>
          <dt>{t('admin.running')}</dt>
          <dd>{s.generations.running}</dd>
        </dl>
      )}
    </section>
  );
}
