import { lazy, Suspense } from 'react';
import { NavLink, Navigate, Route, Routes } from 'react-router';
import { useI18n } from '../../i18n/i18n';
import { AgentsAdmin } from './agents-admin';
import { AuditAdmin } from './audit-admin';
import { SystemAdmin } from './system-admin';
import { UsersAdmin } from './users-admin';

// The charts are their own chunk, loaded when the usage page opens.
const UsageAdmin = lazy(() => import('./usage-admin'));

/**
 * The admin console: a separate chunk, reached by admins only (the route is
 * guarded in the app, and the server checks the role on every admin call).
 */
export default function AdminPage() {
  const { t } = useI18n();
  return (
    <main id="main" className="page wide">
      <h1>{t('admin.title')}</h1>
      <nav aria-label={t('admin.sections')} className="tabs">
        <NavLink to="/admin/agents">{t('admin.agentsTab')}</NavLink>
        <NavLink to="/admin/users">{t('admin.usersTab')}</NavLink>
        <NavLink to="/admin/usage">{t('admin.usageTab')}</NavLink>
        <NavLink to="/admin/system">{t('admin.systemTab')}</NavLink>
        <NavLink to="/admin/audit">{t('admin.auditTab')}</NavLink>
      </nav>
      <Routes>
        <Route index element={<Navigate to="agents" replace />} />
        <Route path="agents" element={<AgentsAdmin />} />
        <Route path="users" element={<UsersAdmin />} />
        <Route path="audit" element={<AuditAdmin />} />
        <Route
          path="usage"
          element={
            <Suspense fallback={<p role="status">{t('common.loading')}</p>}>
              <UsageAdmin />
            </Suspense>
          }
        />
        <Route path="system" element={<SystemAdmin />} />
        <Route path="*" element={<Navigate to="agents" replace />} />
      </Routes>
    </main>
  );
}
