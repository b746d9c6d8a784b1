import { useMutation, useQuery, useQueryClient } from '@tanstack/react-query';
import { useState, type FormEvent } from 'react';
import { ApiError, session } from '../../api/client';
import { authApi } from '../../api/endpoints';
import type { ApiKeyScope, CreatedApiKey } from '../../api/types';
import { useI18n } from '../../i18n/i18n';
import { authErrorText } from '../auth/sign-in-page';
import { useUser } from '../auth/auth';
import { PasswordHint } from '../auth/password-hint';
import { CopyButton } from '../chat/copy-button';
import { PreferencesBar } from '../shell/preferences-bar';
import { TokenBudget } from './token-budget';
import { Attachments } from './attachments-list';

function ChangePassword() {
  const { t } = useI18n();
  const me = useUser();
  const [current, setCurrent] = useState('');
  const [next, setNext] = useState('');
  const [repeat, setRepeat] = useState('');
  const [revokeKeys, setRevokeKeys] = useState(true);
  const queryClient = useQueryClient();
  const [message, setMessage] = useState<{ ok: boolean; text: string } | undefined>();
  const change = useMutation({
    mutationFn: () => authApi.changePassword(current, next, revokeKeys),
    onSuccess: async (changed) => {
      // The change revoked this session's access token too; carry on with the one it handed back.
      const signedIn = session.get();
      if (signedIn) session.set({ ...signedIn, token: changed.accessToken, expiresIn: changed.expiresIn });
      setMessage({ ok: true, text: t('profile.passwordChangedKeys', { count: String(changed.apiKeysRevoked) }) });
      await queryClient.invalidateQueries({ queryKey: ['api-keys'] });
      setCurrent('');
      setNext('');
      setRepeat('');
    },
    onError: (err) => setMessage({ ok: false, text: err instanceof ApiError && err.code === 'CURRENT_PASSWORD_INCORRECT' ? t('profile.currentWrong') : authErrorText(err, t) }),
  });
  const submit = (e: FormEvent) => {
    e.preventDefault();
    if (next !== repeat) {
      setMessage({ ok: false, text: t('profile.passwordMismatch') });
      return;
    }
    setMessage(undefined);
    change.mutate();
  };
  return (
    <section aria-labelledby="pw-title" className="card">
      <h2 id="pw-title">{t('profile.changePassword')}</h2>
      <form onSubmit={submit} className="stack">
        <label htmlFor="current-password">{t('profile.currentPassword')}</label>
        <input id="current-password" type="password" autoComplete="current-password" value={current} onChange={(e) => setCurrent(e.target.value)} required />
        <label htmlFor="new-password">{t('profile.newPassword')}</label>
        <input id="new-password" type="password" autoComplete="new-password" aria-describedby="new-password-hint" value={next} onChange={(e) => setNext(e.target.value)} required />
        <PasswordHint id="new-password-hint" password={next} username={me.username} role={me.role} />
        <label htmlFor="repeat-password">{t('profile.confirmPassword')}</label>
        <input id="repeat-password" type="password" autoComplete="new-password" value={repeat} onChange={(e) => setRepeat(e.target.value)} required />
        <label className="field checkbox" htmlFor="revoke-keys">
          <input id="revoke-keys" type="checkbox" checked={revokeKeys} onChange={(e) => setRevokeKeys(e.target.checked)} />
          {t('profile.revokeKeysToo')}
        </label>
        {message && (
          <p className={message.ok ? 'form-ok' : 'form-error'} role={message.ok ? 'status' : 'alert'}>
            {message.text}
          </p>
        )}
        <button type="submit" className="primary" disabled={change.isPending || !current || !next || !repeat}>
          {t('profile.changePassword')}
        </button>
      </form>
    </section>
  );
}

const OPTIONAL_SCOPES: ApiKeyScope[] = ['admin', 'keys'];

function ApiKeys() {
  const { t, language } = useI18n();
  const user = useUser();
  const [scopes, setScopes] = useState<ApiKeyScope[]>([]);
  const queryClient = useQueryClient();
  const keys = useQuery({ queryKey: ['api-keys'], queryFn: authApi.apiKeys });
  const [name, setName] = useState('');
  const [created, setCreated] = useState<CreatedApiKey | undefined>();
  const refresh = () => queryClient.invalidateQueries({ queryKey: ['api-keys'] });
  const create = useMutation({
    mutationFn: () => authApi.createApiKey(name.trim(), ['chat', ...scopes]),
    onSuccess: async (c) => {
      setCreated(c);
      setName('');
      setScopes([]);
      await refresh();
    },
  });
  const revoke = useMutation({ mutationFn: (id: string) => authApi.revokeApiKey(id), onSuccess: refresh });
  const date = (iso: string) => new Date(iso).toLocaleDateString(language);
  return (
    <section aria-labelledby="keys-title" className="card">
      <h2 id="keys-title">{t('profile.apiKeys')}</h2>
      <p className="muted small">{t('profile.apiKeysHelp')}</p>
      <form
        className="inline-form"
        onSubmit={(e) => {
          e.preventDefault();
          if (name.trim()) create.mutate();
        }}
      >
        <label htmlFor="key-name">{t('profile.keyName')}</label>
        <input id="key-name" value={name} maxLength={100} onChange={(e) => setName(e.target.value)} />
        <button type="submit" className="primary" disabled={!name.trim() || create.isPending}>
          {t('profile.createKey')}
        </button>
        <fieldset className="key-scopes">
          <legend>{t('profile.keyScopes')}</legend>
          <label className="field checkbox" htmlFor="scope-chat">
            <input id="scope-chat" type="checkbox" checked disabled />
            {t('profile.scope.chat')}
          </label>
          {OPTIONAL_SCOPES.filter((s) => s !== 'admin' || user.role === 'admin').map((s) => (
            <label key={s} className="field checkbox" htmlFor={`scope-${s}`}>
              <input
                id={`scope-${s}`}
                type="checkbox"
                checked={scopes.includes(s)}
                onChange={(e) => setScopes((now) => (e.target.checked ? [...now, s] : now.filter((x) => x !== s)))}
              />
              {t(`profile.scope.${s}`)}
            </label>
          ))}
        </fieldset>
      </form>
      {create.isError && <p className="form-error" role="alert">{authErrorText(create.error, t)}</p>}
      {created && (
        <div className="key-once" role="status" data-testid="new-key">
          <p>{t('profile.keyShownOnce')}</p>
          <code>{created.key}</code>
          <CopyButton text={created.key} label={t('common.copy')} />
        </div>
      )}
      {keys.data && keys.data.length === 0 && <p className="muted">{t('profile.noKeys')}</p>}
      <ul className="key-list">
        {keys.data?.map((k) => (
          <li key={k.id}>
            <span className="key-name">{k.name}</span>
            <code>{k.prefix}…</code>
            <span className="muted small">
              {t('profile.keyCreated', { date: date(k.createdAt) })} · {k.expiresAt ? t('profile.keyExpires', { date: date(k.expiresAt) }) : t('profile.keyNeverExpires')} · {k.scopes.join(', ')}
            </span>
            {k.revokedAt ? (
              <span className="badge">{t('profile.revoked')}</span>
            ) : (
              <button type="button" className="small-button danger" onClick={() => revoke.mutate(k.id)} aria-label={`${t('profile.revoke')} ${k.name}`}>
                {t('profile.revoke')}
              </button>
            )}
          </li>
        ))}
      </ul>
    </section>
  );
}

/** The day's and month's token budgets, read fresh each time the page opens. */
function Tokens() {
  const { t } = useI18n();
  const profile = useQuery({ queryKey: ['profile'], queryFn: authApi.profile, staleTime: 0 });
  const usage = profile.data?.tokenUsage;
  return (
    <section aria-labelledby="tokens-title" className="card">
      <h2 id="tokens-title">{t('profile.tokens')}</h2>
      <p className="muted small">{t('profile.tokensHelp')}</p>
      {profile.isError && <p role="alert">{t('common.error', { message: profile.error.message })}</p>}
      {usage ? <TokenBudget usage={usage} /> : !profile.isError && <p className="muted">{t('common.loading')}</p>}
    </section>
  );
}

/** The person's own settings: token budget, password, personal API keys, theme and language. */
export default function ProfilePage() {
  const { t } = useI18n();
  const user = useUser();
  return (
    <main id="main" className="page">
      <h1>{t('profile.title')}</h1>
      <section aria-labelledby="account-title" className="card">
        <h2 id="account-title">{t('profile.account')}</h2>
        <p>
          <strong>{user.displayName ?? user.username}</strong> ({user.username}) · {t('profile.role', { role: user.role })}
        </p>
      </section>
      <section aria-labelledby="appearance-title" className="card">
        <h2 id="appearance-title">{t('profile.appearance')}</h2>
        <PreferencesBar layout="form" />
      </section>
      <Tokens />
      <ChangePassword />
      <ApiKeys />
      <Attachments />
    </main>
  );
}
