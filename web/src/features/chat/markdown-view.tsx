import { lazy, Suspense } from 'react';

/**
 * The markdown renderer (react-markdown + GFM, ~50 KB gzipped) is its own
 * chunk: the chat shows an answer as plain text for the moment it takes to
 * load, so it stays off the chat page's first download.
 */
const MarkdownLazy = lazy(() => import('./markdown').then((m) => ({ default: m.MarkdownView })));

export function MarkdownView({ text }: { text: string }) {
  return (
    <Suspense fallback={<div className="markdown plain-text">{text}</div>}>
      <MarkdownLazy text={text} />
    </Suspense>
  );
}
