import { useQuery } from '@tanstack/react-query';
import { useState, type FormEvent } from 'react';
import { Navigate, useLocation } from 'react-router';
import { ApiError } from '../../api/client';
import { authApi } from '../../api/endpoints';
import { useI18n, type Translate } from '../../i18n/i18n';
import { PreferencesBar } from '../shell/preferences-bar';
import { useAuth } from './auth';
import { PasswordHint } from './password-hint';

/** What a failed sign-in or registration tells the person, by the server's stable code. */
export function authErrorText(err: unknown, t: Translate): string {
  if (!(err instanceof ApiError)) return t('common.networkError');
  switch (err.code) {
    case 'INVALID_CREDENTIALS':
      // The server answers a delayed attempt exactly like a wrong password, with the wait in Retry-After.
      return err.retryAfterSeconds ? t('auth.badCredentialsWait', { seconds: err.retryAfterSeconds }) : t('auth.badCredentials');
    case 'ACCOUNT_DISABLED':
      return t('auth.disabled');
    case 'RATE_LIMITED':
      return err.retryAfterSeconds ? t('auth.rateLimitedWait', { seconds: err.retryAfterSeconds }) : t('auth.rateLimited');
    case 'USERNAME_TAKEN':
      return t('auth.usernameTaken');
    case 'PASSWORD_TOO_WEAK':
      return t('auth.weakPassword', { message: err.message });
    case 'NETWORK':
      return t('common.networkError');
    default:
      return t('common.error', { message: err.message });
  }
}

export function SignInPage() {
  const { t } = useI18n();
  const auth = useAuth();
  const location = useLocation();
  const [mode, setMode] = useState<'sign-in' | 'register'>('sign-in');
  const [username, setUsername] = useState('');
  const [password, setPassword] = useState('');
  const [displayName, setDisplayName] = useState('');
  const [error, setError] = useState<string | undefined>();
  const [busy, setBusy] = useState(false);
  const options = useQuery({ queryKey: ['auth-options'], queryFn: authApi.options, staleTime: 60_000 });

  if (auth.status === 'signed-in') {
    const from = (location.state as { from?: string } | null)?.from;
    return <Navigate to={from && from !== '/login' ? from : '/'} replace />;
  }

  const submit = async (e: FormEvent) => {
    e.preventDefault();
    setBusy(true);
    setError(undefined);
    try {
      if (mode === 'sign-in') await authApi.login(username.trim(), password);
      else await authApi.register({ username: username.trim(), password, ...(displayName.trim() ? { displayName: displayName.trim() } : {}) });
    } catch (err) {
      setError(authErrorText(err, t));
    } finally {
      setBusy(false);
    }
  };

  const registering = mode === 'register';
  return (
    <div className="auth-page">
      <PreferencesBar />
      <main id="main" className="auth-card">
        <h1>{registering ? t('auth.registerTitle') : t('auth.signInTitle')}</h1>
        <form onSubmit={(e) => void submit(e)} noValidate>
          <label htmlFor="username">{t('auth.username')}</label>
          <input id="username" name="username" autoComplete="username" value={username} onChange={(e) => setUsername(e.target.value)} required autoFocus />
          <label htmlFor="password">{t('auth.password')}</label>
          <input
            id="password"
            name="password"
            type="password"
            autoComplete={registering ? 'new-password' : 'current-password'}
            aria-describedby={registering ? 'password-hint' : undefined}
            value={password}
            onChange={(e) => setPassword(e.target.value)}
            required
          />
          {registering && <PasswordHint id="password-hint" password={password} username={username} role="user" />}
          {registering && (
            <>
              <label htmlFor="displayName">{t('auth.displayName')}</label>
              <input id="displayName" name="displayName" value={displayName} onChange={(e) => setDisplayName(e.target.value)} />
            </>
          )}
          {error && (
            <p className="form-error" role="alert">
              {error}
            </p>
          )}
          <button type="submit" className="primary" disabled={busy || !username || !password}>
            {registering ? t('auth.register') : t('auth.signIn')}
          </button>
        </form>
        {options.data?.registrationOpen && (
          <button type="button" className="link" onClick={() => { setMode(registering ? 'sign-in' : 'register'); setError(undefined); }}>
            {registering ? t('auth.haveAccount') : t('auth.needAccount')}
          </button>
        )}
      </main>
    </div>
  );
}
