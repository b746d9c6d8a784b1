import { useEffect, useState } from 'react';
import { useI18n } from '../../i18n/i18n';
import { CopyButton } from './copy-button';

let highlighter: Promise<typeof import('./highlight')> | undefined;

/** A fenced code block: the language, a copy button, and highlighting once the highlighter chunk has loaded. */
export function CodeBlock({ code, language }: { code: string; language: string | undefined }) {
  const { t } = useI18n();
  const [html, setHtml] = useState<string | undefined>();
  useEffect(() => {
    let live = true;
    if (!language) return;
    highlighter ??= import('./highlight');
    highlighter
      .then((m) => {
        if (live) setHtml(m.highlight(code, language));
      })
      .catch(() => undefined);
    return () => {
      live = false;
    };
  }, [code, language]);
  return (
    <div className="code-block">
      <div className="code-header">
        <span>{language ?? ''}</span>
        <CopyButton text={code} label={t('chat.codeCopy')} />
      </div>
      <pre tabIndex={0}>
        {html === undefined ? <code>{code}</code> : <code className="hljs" dangerouslySetInnerHTML={{ __html: html }} />}
      </pre>
    </div>
  );
}
