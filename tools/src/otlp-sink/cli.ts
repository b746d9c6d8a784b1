/**
 * `node dist/otlp-sink/cli.js [--port 4318] [--host 127.0.0.1]`
 *
 * An OTLP/HTTP (JSON) trace receiver that counts spans and keeps none: the
 * receiving end for measuring the server with tracing on, e.g.
 *
 *   node tools/dist/otlp-sink/cli.js --port 24318 &
 *   npm run bench -- --server-env OTEL_EXPORTER_OTLP_ENDPOINT=http://127.0.0.1:24318 \
 *     --server-env OTEL_TRACES_SAMPLER=parentbased_traceidratio --server-env OTEL_TRACES_SAMPLER_ARG=0.1
 *
 * Prints the base URL as its first stdout line; on SIGINT/SIGTERM prints the
 * counts (`spans N, exports M`) and exits 0.
 */

import { parseArgs } from 'node:util';
import { startOtlpReceiver } from './receiver.js';

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      port: { type: 'string', default: '4318' },
      host: { type: 'string', default: '127.0.0.1' },
      help: { type: 'boolean', short: 'h' },
    },
  });
  if (values.help === true) {
    console.log('usage: otlp-sink [--port 4318] [--host 127.0.0.1]');
    return;
  }
  if (!/^\d+$/.test(values.port) || Number(values.port) > 65_535) {
    console.error(`otlp sink: --port must be a port number, got "${values.port}"`);
    process.exit(2);
  }
  const receiver = await startOtlpReceiver({ port: Number(values.port), host: values.host, keepSpans: false });
  console.log(receiver.url);
  const shutdown = (): void => {
    console.log(`spans ${receiver.spanCount}, exports ${receiver.exportCount}`);
    receiver.close().then(
      () => process.exit(0),
      (error: unknown) => {
        console.error('otlp sink: close failed', error);
        process.exit(1);
      },
    );
  };
  process.once('SIGINT', shutdown);
  process.once('SIGTERM', shutdown);
}

main().catch((error: unknown) => {
  console.error('otlp sink:', error instanceof Error ? error.message : error);
  process.exit(1);
});
