import type { Logger } from 'pino';
import { MemoryState } from './memory-state.js';
import { RedisState } from './redis-state.js';
import type { SharedState } from './shared-state.js';

export * from './shared-state.js';

export function createSharedState(options: { url?: string | undefined; prefix: string; logger?: Logger }): SharedState {
  return options.url ? new RedisState(options.url, options.prefix, options.logger) : new MemoryState();
}
