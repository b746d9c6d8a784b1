import { useSyncExternalStore } from 'react';
import { turnStore, type LiveTurn } from './turn-store';

export function useLiveTurn(key: string): LiveTurn | undefined {
  const turns = useSyncExternalStore(turnStore.subscribe, turnStore.snapshot);
  return turns.get(key);
}
