/**
 * `node dist/mock-upstream/cli.js [--port 3099] [--host 127.0.0.1] [--chunks 20] [--interval 5] [--tls-key FILE --tls-cert FILE]`
 *
 * Prints the base URL as its first stdout line (scripts wait for it). The CLI
 * defaults are the benchmark's: more, faster chunks than the library's.
 */

import { readFileSync } from 'node:fs';
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
      'tls-key': { type: 'string' },
      'tls-cert': { type: 'string' },
      help: { type: 'boolean', short: 'h' },
    },
  });
  if (values.help === true) {
    console.log('usage: mock-upstream [--port 3099] [--host 127.0.0.1] [--chunks 20] [--interval 5] [--tls-key FILE --tls-cert FILE]');
    return;
  }
  const mock = await createMockUpstream({
    port: integerArg('port', values.port),
    host: values.host,
    defaultChunks: integerArg('chunks', values.chunks),
    defaultIntervalMs: integerArg('interval', values.interval),
    // HTTPS offering HTTP/2 and HTTP/1.1, with this key and certificate (PEM files).
    ...(values['tls-key'] !== undefined && values['tls-cert'] !== undefined ? { tls: { key: readFileSync(values['tls-key'], 'utf8'), cert: readFileSync(values['tls-cert'], 'utf8') } } : {}),
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
