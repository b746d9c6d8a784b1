import { useI18n } from '../../i18n/i18n';
import { passwordStrength, type Role } from './password-strength';

/**
 * What a new password must be, and how strong it looks, under the input that sets it.
 * Point the input's aria-describedby at `id`.
 */
export function PasswordHint({ id, password, username, role }: { id: string; password: string; username: string; role: Role }) {
  const { t } = useI18n();
  const s = passwordStrength(password, username, role);
  const levels = { weak: t('password.strengthWeak'), fair: t('password.strengthFair'), good: t('password.strengthGood'), strong: t('password.strengthStrong') };
  return (
    <div id={id} className="password-hint small" data-testid="password-hint" data-level={password ? s.level : undefined}>
      {password && (
        <p aria-live="polite">
          <span className={`strength strength-${s.level}`} aria-hidden="true">
            {[1, 2, 3, 4].map((n) => (
              <span key={n} className={n <= Math.max(1, s.score) ? 'on' : undefined} />
            ))}
          </span>
          {t('password.strength', { level: levels[s.level] })}
          {s.tooShort && ` ${t('password.tooShort', { count: s.length, min: s.minLength })}`}
          {s.likeUsername && ` ${t('password.likeUsername')}`}
        </p>
      )}
      <ul className="muted">
        <li>{t('password.hintLength', { min: s.minLength })}</li>
        <li>{t('password.hintNotUsername')}</li>
        <li>{t('password.hintCommon')}</li>
      </ul>
    </div>
  );
}
