import { useEffect, useState } from 'react';
import { useI18n } from '../../i18n/i18n';

export function CopyButton({ text, label, className }: { text: string; label: string; className?: string }) {
  const { t } = useI18n();
  const [copied, setCopied] = useState(false);
  useEffect(() => {
    if (!copied) return;
    const timer = setTimeout(() => setCopied(false), 1500);
    return () => clearTimeout(timer);
  }, [copied]);
  return (
    <>
    <button
      type="button"
      className={className ?? 'small-button'}
      // The visible text must stay part of the accessible name (WCAG 2.5.3, label in name): once copied, both say so.
      aria-label={copied ? t('common.copied') : label}
      onClick={() => {
        navigator.clipboard.writeText(text).then(() => setCopied(true), () => setCopied(false));
      }}
    >
      {copied ? t('common.copied') : t('common.copy')}
    </button>
    {/* Said aloud too: a changed label alone is not announced. */}
    <span className="visually-hidden" role="status">
      {copied ? t('common.copied') : ''}
    </span>
    </>
  );
}
