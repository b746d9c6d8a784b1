import { LANGUAGES, useI18n, type Language } from '../../i18n/i18n';
import { useTheme, type ThemePreference } from './theme';

/** Language and theme pickers, on the sign-in page and in the profile. */
export function PreferencesBar({ layout = 'bar' }: { layout?: 'bar' | 'form' }) {
  const { t, language, setLanguage } = useI18n();
  const { preference, setPreference } = useTheme();
  return (
    <div className={layout === 'bar' ? 'preferences-bar' : 'preferences-form'}>
      <label>
        <span>{t('profile.language')}</span>
        <select value={language} onChange={(e) => setLanguage(e.target.value as Language)} data-testid="language-select">
          {LANGUAGES.map((l) => (
            <option key={l.id} value={l.id} lang={l.id}>
              {l.label}
            </option>
          ))}
        </select>
      </label>
      <label>
        <span>{t('profile.theme')}</span>
        <select value={preference} onChange={(e) => setPreference(e.target.value as ThemePreference)} data-testid="theme-select">
          <option value="system">{t('profile.themeSystem')}</option>
          <option value="light">{t('profile.themeLight')}</option>
          <option value="dark">{t('profile.themeDark')}</option>
        </select>
      </label>
    </div>
  );
}
