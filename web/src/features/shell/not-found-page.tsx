import { Link } from 'react-router';
import { useI18n } from '../../i18n/i18n';

export function NotFoundPage() {
  const { t } = useI18n();
  return (
    <main id="main" className="page narrow">
      <h1>{t('error.notFoundPage')}</h1>
      <Link to="/">{t('error.backHome')}</Link>
    </main>
  );
}
