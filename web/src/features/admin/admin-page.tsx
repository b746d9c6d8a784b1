import { useQuery } from '@tanstack/react-query';
import { api } from '../../api/client';
import { useI18n } from '../../i18n/i18n';

interface AdminUser {
  id: string;
  username: string;
  displayName: string | null;
  role: 'user' | 'admin';
  status: string;
}

/**
 * The admin console (a separate chunk, admins only; the server checks the
 * role on every admin route as well). This session: the user list. Agents,
 * user actions, usage and audit pages are listed in NOTES.md as open.
 */
export default function AdminPage() {
  const { t } = useI18n();
  const users = useQuery({ queryKey: ['admin-users'], queryFn: () => api<{ items: AdminUser[]; total: number }>('/api/admin/users', { query: { pageSize: 50 } }) });
  return (
    <main id="main" className="page">
      <h1>{t('admin.title')}</h1>
      <section aria-labelledby="admin-users" className="card">
        <h2 id="admin-users">{t('admin.users')}</h2>
        {users.isPending && <p role="status">{t('common.loading')}</p>}
        {users.isError && <p role="alert">{t('common.error', { message: users.error.message })}</p>}
        {users.data && (
          <div className="table-wrap" tabIndex={0}>
            <table data-testid="admin-users">
              <thead>
                <tr>
                  <th scope="col">{t('auth.username')}</th>
                  <th scope="col">{t('auth.displayName')}</th>
                  <th scope="col">{t('profile.role', { role: '' }).replace(/[:：]\s*$/, '')}</th>
                </tr>
              </thead>
              <tbody>
                {users.data.items.map((u) => (
                  <tr key={u.id}>
                    <td>{u.username}</td>
                    <td>{u.displayName ?? ''}</td>
                    <td>{u.role}</td>
                  </tr>
                ))}
              </tbody>
            </table>
          </div>
        )}
      </section>
    </main>
  );
}
