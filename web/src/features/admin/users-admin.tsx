import { keepPreviousData, useMutation, useQuery, useQueryClient } from '@tanstack/react-query';
import { useEffect, useState, type FormEvent } from 'react';
import { ApiError } from '../../api/client';
import { useI18n } from '../../i18n/i18n';
import { useUser } from '../auth/auth';
import { PasswordHint } from '../auth/password-hint';
import { Dialog } from '../shell/dialog';
import { BudgetText } from '../profile/token-budget';
import { adminApi, type AdminUser } from './admin-api';

function errorText(err: unknown): string {
  return err instanceof ApiError ? `${err.code}: ${err.message}` : String(err);
}

function NewUserForm({ onDone }: { onDone: () => void }) {
  const { t } = useI18n();
  const [username, setUsername] = useState('');
  const [password, setPassword] = useState('');
  const [displayName, setDisplayName] = useState('');
  const [role, setRole] = useState<'user' | 'admin'>('user');
  const create = useMutation({ mutationFn: () => adminApi.createUser({ username: username.trim(), password, role, ...(displayName.trim() ? { displayName: displayName.trim() } : {}) }), onSuccess: onDone });
  const submit = (e: FormEvent) => {
    e.preventDefault();
    create.mutate();
  };
  return (
    <form className="admin-form" onSubmit={submit}>
      <div className="form-grid">
        <label className="field" htmlFor="new-user-name">
          <span>{t('auth.username')}</span>
          <input id="new-user-name" value={username} required autoComplete="off" onChange={(e) => setUsername(e.target.value)} />
        </label>
        <label className="field" htmlFor="new-user-display">
          <span>{t('auth.displayName')}</span>
          <input id="new-user-display" value={displayName} onChange={(e) => setDisplayName(e.target.value)} />
        </label>
        <label className="field" htmlFor="new-user-password">
          <span>{t('auth.password')}</span>
          <input id="new-user-password" type="password" value={password} required autoComplete="new-password" aria-describedby="new-user-password-hint" onChange={(e) => setPassword(e.target.value)} />
        </label>
        <PasswordHint id="new-user-password-hint" password={password} username={username} role={role} />
        <label className="field" htmlFor="new-user-role">
          <span>{t('admin.role')}</span>
          <select id="new-user-role" value={role} onChange={(e) => setRole(e.target.value as 'user' | 'admin')}>
            <option value="user">{t('admin.roleUser')}</option>
            <option value="admin">{t('admin.roleAdmin')}</option>
          </select>
        </label>
      </div>
      {create.isError && (
        <p className="form-error" role="alert">
          {errorText(create.error)}
        </p>
      )}
      <div className="dialog-actions">
        <button type="button" onClick={onDone}>
          {t('common.cancel')}
        </button>
        <button type="submit" className="primary" disabled={create.isPending || !username.trim() || !password}>
          {t('common.save')}
        </button>
      </div>
    </form>
  );
}

/** A quota field's text as the API takes it: empty is the platform default (null). */
function quotaValue(text: string): number | null {
  return text.trim() === '' ? null : Number(text);
}

/** Users: search, create, disable/enable, reset password, change role, token quotas and usage. */
export function UsersAdmin() {
  const { t, language } = useI18n();
  const me = useUser();
  const queryClient = useQueryClient();
  const [search, setSearch] = useState('');
  const [q, setQ] = useState('');
  const [page, setPage] = useState(1);
  const [creating, setCreating] = useState(false);
  const [resetting, setResetting] = useState<AdminUser | undefined>();
  const [revokeKeys, setRevokeKeys] = useState(true);
  const [newPassword, setNewPassword] = useState('');
  const [quotaOf, setQuotaOf] = useState<AdminUser | undefined>();
  const [daily, setDaily] = useState('');
  const [monthly, setMonthly] = useState('');
  const [notice, setNotice] = useState<{ ok: boolean; text: string } | undefined>();
  useEffect(() => {
    const timer = setTimeout(() => {
      setQ(search.trim());
      setPage(1);
    }, 250);
    return () => clearTimeout(timer);
  }, [search]);
  const users = useQuery({ queryKey: ['admin-users', q, page], queryFn: () => adminApi.users(q, page), placeholderData: keepPreviousData });
  const refresh = () => queryClient.invalidateQueries({ queryKey: ['admin-users'] });
  const onError = (err: unknown) => setNotice({ ok: false, text: errorText(err) });
  const disable = useMutation({ mutationFn: (u: AdminUser) => adminApi.setUserDisabled(u.id, u.status === 'active'), onSuccess: refresh, onError });
  const role = useMutation({ mutationFn: ({ u, r }: { u: AdminUser; r: 'user' | 'admin' }) => adminApi.setRole(u.id, r), onSuccess: refresh, onError });
  const reset = useMutation({
    mutationFn: ({ u, p }: { u: AdminUser; p: string }) => adminApi.resetPassword(u.id, p, revokeKeys),
    onSuccess: async (_r, { u }) => {
      setNotice({ ok: true, text: t('admin.passwordReset', { name: u.username }) });
      setResetting(undefined);
      setNewPassword('');
      await refresh();
    },
    onError,
  });
  const quota = useMutation({
    mutationFn: (u: AdminUser) => adminApi.setQuota(u.id, { dailyTokenQuota: quotaValue(daily), monthlyTokenQuota: quotaValue(monthly) }),
    onSuccess: async (_r, u) => {
      setNotice({ ok: true, text: t('admin.quotaSaved', { name: u.username }) });
      setQuotaOf(undefined);
      await refresh();
    },
    onError,
  });
  const editQuota = (u: AdminUser) => {
    setDaily(u.dailyTokenQuota === null ? '' : String(u.dailyTokenQuota));
    setMonthly(u.monthlyTokenQuota === null ? '' : String(u.monthlyTokenQuota));
    setQuotaOf(u);
  };
  const clearDelay = useMutation({
    mutationFn: (u: AdminUser) => adminApi.clearSignInDelay(u.id),
    onSuccess: (_r, u) => setNotice({ ok: true, text: t('admin.signInDelayCleared', { name: u.username }) }),
    onError,
  });
  const pages = users.data ? Math.max(1, Math.ceil(users.data.total / users.data.pageSize)) : 1;
  const date = (iso: string | null) => (iso ? new Date(iso).toLocaleString(language) : t('admin.never'));

  return (
    <section className="card" aria-labelledby="users-title">
      <div className="card-header">
        <h2 id="users-title">{t('admin.usersTab')}</h2>
        <div className="toolbar">
          <label htmlFor="user-search" className="visually-hidden">
            {t('admin.searchUsers')}
          </label>
          <input id="user-search" type="search" placeholder={t('admin.searchUsers')} value={search} onChange={(e) => setSearch(e.target.value)} />
          <button type="button" className="primary" onClick={() => setCreating(true)}>
            {t('admin.newUser')}
          </button>
        </div>
      </div>
      {creating && (
        <NewUserForm
          onDone={() => {
            setCreating(false);
            void refresh();
          }}
        />
      )}
      {notice && (
        <p className={notice.ok ? 'form-ok' : 'form-error'} role={notice.ok ? 'status' : 'alert'}>
          {notice.text}
        </p>
      )}
      {users.isError && <p role="alert">{t('common.error', { message: users.error.message })}</p>}
      <div className="table-wrap" tabIndex={0}>
        <table data-testid="admin-users">
          <thead>
            <tr>
              <th scope="col">{t('auth.username')}</th>
              <th scope="col">{t('admin.role')}</th>
              <th scope="col">{t('admin.status')}</th>
              <th scope="col">{t('admin.tokenBudgets')}</th>
              <th scope="col">{t('admin.lastLogin')}</th>
              <th scope="col">{t('admin.actions')}</th>
            </tr>
          </thead>
          <tbody>
            {users.data?.items.map((u) => (
              <tr key={u.id} data-user={u.username}>
                <td>
                  <strong>{u.username}</strong>
                  {u.displayName && <div className="muted small">{u.displayName}</div>}
                </td>
                <td>
                  <select aria-label={`${t('admin.role')}: ${u.username}`} value={u.role} disabled={u.id === me.id} onChange={(e) => role.mutate({ u, r: e.target.value as 'user' | 'admin' })}>
                    <option value="user">{t('admin.roleUser')}</option>
                    <option value="admin">{t('admin.roleAdmin')}</option>
                  </select>
                </td>
                <td>
                  {u.status === 'active' ? t('admin.active') : t('admin.inactive')}
                </td>
                <td className="small" data-testid="user-tokens">
                  {u.tokenUsage && (
                    <>
                      <div>
                        <BudgetText budget={u.tokenUsage.daily} />
                      </div>
                      <div>
                        <BudgetText budget={u.tokenUsage.monthly} />
                      </div>
                    </>
                  )}
                </td>
                <td className="small">{date(u.lastLoginAt)}</td>
                <td>
                  <div className="row-actions">
                    <button type="button" className="small-button" disabled={u.id === me.id} onClick={() => disable.mutate(u)}>
                      {u.status === 'active' ? t('admin.disable') : t('admin.enable')}
                    </button>
                    <button type="button" className="small-button" onClick={() => setResetting(u)}>
                      {t('admin.resetPassword')}
                    </button>
                    <button type="button" className="small-button" onClick={() => editQuota(u)} aria-label={`${t('admin.editQuota')}: ${u.username}`}>
                      {t('admin.editQuota')}
                    </button>
                    <button type="button" className="small-button" disabled={clearDelay.isPending} onClick={() => clearDelay.mutate(u)}>
                      {t('admin.clearSignInDelay')}
                    </button>
                  </div>
                </td>
              </tr>
            ))}
          </tbody>
        </table>
      </div>
      <div className="pager">
        <button type="button" disabled={page <= 1} onClick={() => setPage((p) => p - 1)}>
          {t('admin.previous')}
        </button>
        <span>{t('admin.pageOf', { page, pages })}</span>
        <button type="button" disabled={page >= pages} onClick={() => setPage((p) => p + 1)}>
          {t('admin.next')}
        </button>
      </div>
      <Dialog open={resetting !== undefined} title={t('admin.resetPassword')} onClose={() => setResetting(undefined)}>
        <form
          onSubmit={(e) => {
            e.preventDefault();
            if (resetting) reset.mutate({ u: resetting, p: newPassword });
          }}
          className="stack"
        >
          <label htmlFor="reset-password">{t('admin.newPasswordFor', { name: resetting?.username ?? '' })}</label>
          <input id="reset-password" type="password" autoComplete="new-password" aria-describedby="reset-password-hint" value={newPassword} required onChange={(e) => setNewPassword(e.target.value)} />
          <PasswordHint id="reset-password-hint" password={newPassword} username={resetting?.username ?? ''} role={resetting?.role ?? 'user'} />
          <label className="field checkbox" htmlFor="reset-revoke-keys">
            <input id="reset-revoke-keys" type="checkbox" checked={revokeKeys} onChange={(e) => setRevokeKeys(e.target.checked)} />
            {t('admin.revokeKeysToo')}
          </label>
          <div className="dialog-actions">
            <button type="button" onClick={() => setResetting(undefined)}>
              {t('common.cancel')}
            </button>
            <button type="submit" className="primary" disabled={!newPassword || reset.isPending}>
              {t('common.save')}
            </button>
          </div>
        </form>
      </Dialog>
      <Dialog open={quotaOf !== undefined} title={t('admin.quotaFor', { name: quotaOf?.username ?? '' })} onClose={() => setQuotaOf(undefined)}>
        <form
          onSubmit={(e) => {
            e.preventDefault();
            if (quotaOf) quota.mutate(quotaOf);
          }}
          className="stack"
        >
          <p className="muted small">{t('admin.quotaHelp')}</p>
          <label htmlFor="quota-daily">{t('admin.dailyQuota')}</label>
          <input id="quota-daily" type="number" min={0} step={1} inputMode="numeric" value={daily} onChange={(e) => setDaily(e.target.value)} />
          <label htmlFor="quota-monthly">{t('admin.monthlyQuota')}</label>
          <input id="quota-monthly" type="number" min={0} step={1} inputMode="numeric" value={monthly} onChange={(e) => setMonthly(e.target.value)} />
          <div className="dialog-actions">
            <button type="button" onClick={() => setQuotaOf(undefined)}>
              {t('common.cancel')}
            </button>
            <button type="submit" className="primary" disabled={quota.isPending}>
              {t('common.save')}
            </button>
          </div>
        </form>
      </Dialog>
    </section>
  );
}
