/**
 * `node dist/mock-upstream/cli.js [--port 3099] [--host 127.0.0.1] [--chunks 20] [--interval 5]`
 *
 * Prints the base URL as its first stdout line (scripts wait for it). The CLI
 * defaults are the benchmark's: more, faster chunks than the library's.
 */

import { parseArgs } from 'node:util';
import { createMockUpstream } from './index.js';

function integerArg(name: string, value: string | undefined): number | undefined {
  if (value === undefined) return undefined;
  if (!/^\d+$/.test(value)) {
    console.error(`mock upstream: --${name} must be a non-negative integer, got "${value}"`);
    process.exit(2);
  }
  return Number(value);
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      port: { type: 'string', default: '3099' },
      host: { type: 'string', default: '127.0.0.1' },
      chunks: { type: 'string', default: '20' },
      interval: { type: 'string', default: '5' },
      help: { type: 'boolean', short: 'h' },
    },
  });
  if (values.help === true) {
    console.log('usage: mock-upstream [--port 3099] [--host 127.0.0.1] [--chunks 20] [--interval 5]');
    return;
  }
  const mock = await createMockUpstream({
    port: integerArg('port', values.port),
    host: values.host,
    defaultChunks: integerArg('chunks', values.chunks),
    defaultIntervalMs: integerArg('interval', values.interval),
  });
  console.log(mock.url);
  const shutdown = (): void => {
    mock.close().then(
      () => process.exit(0),
      (error: unknown) => {
        console.error('mock upstream: close failed', error);
        process.exit(1);
      },
    );
  };
  process.once('SIGINT', shutdown);
  process.once('SIGTERM', shutdown);
}

main().catch((error: unknown) => {
  console.error('mock upstream:', error instanceof Error ? error.message : error);
  process.exit(1);
});
