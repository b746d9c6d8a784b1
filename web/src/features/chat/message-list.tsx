import { useVirtualizer } from '@tanstack/react-virtual';
import { useEffect, useLayoutEffect, useRef } from 'react';
import { useI18n } from '../../i18n/i18n';
import { MessageItem, type MessageActions } from './message-item';
import type { UiMessage } from './turn-events';

/**
 * The conversation, virtualized: only the messages near the viewport are
 * in the DOM, so a 2,000-message session scrolls like a short one. It
 * follows the newest text while the reader is at the bottom, and stays put
 * when they have scrolled up to read.
 */
export function MessageList({
  messages,
  actionsFor,
  hasOlder,
  onLoadOlder,
  loadingOlder,
}: {
  messages: UiMessage[];
  actionsFor: (m: UiMessage, index: number) => MessageActions;
  hasOlder: boolean;
  onLoadOlder: () => void;
  loadingOlder: boolean;
}) {
  const { t } = useI18n();
  const scrollRef = useRef<HTMLDivElement>(null);
  const pinned = useRef(true);
  const virtualizer = useVirtualizer({
    count: messages.length,
    getScrollElement: () => scrollRef.current,
    estimateSize: () => 140,
    overscan: 6,
    getItemKey: (i) => messages[i]?.id ?? i,
  });

  const last = messages[messages.length - 1];
  const tail = `${messages.length}:${last?.content.length ?? 0}:${last?.reasoning.length ?? 0}:${last?.status ?? ''}`;
  useLayoutEffect(() => {
    if (pinned.current && messages.length > 0) virtualizer.scrollToIndex(messages.length - 1, { align: 'end' });
  }, [tail, messages.length, virtualizer]);

  // Keep the first paint at the bottom of a long conversation.
  useEffect(() => {
    pinned.current = true;
  }, []);

  return (
    <div
      ref={scrollRef}
      className="message-scroll"
      onScroll={(e) => {
        const el = e.currentTarget;
        pinned.current = el.scrollHeight - el.scrollTop - el.clientHeight < 80;
      }}
    >
      {hasOlder && (
        <div className="load-older">
          <button type="button" onClick={onLoadOlder} disabled={loadingOlder}>
            {loadingOlder ? t('common.loading') : t('chat.loadOlder')}
          </button>
        </div>
      )}
      <div role="log" aria-label={t('chat.messages')} aria-live="off" className="message-canvas" style={{ height: virtualizer.getTotalSize() }} data-count={messages.length}>
        {virtualizer.getVirtualItems().map((item) => {
          const message = messages[item.index];
          if (!message) return null;
          return (
            <div key={item.key} data-index={item.index} ref={virtualizer.measureElement} className="message-row" style={{ transform: `translateY(${item.start}px)` }}>
              <MessageItem message={message} actions={actionsFor(message, item.index)} />
            </div>
          );
        })}
      </div>
    </div>
  );
}
