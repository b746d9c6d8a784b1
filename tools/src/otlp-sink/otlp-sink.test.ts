import { spawn } from 'node:child_process';
import path from 'node:path';
import readline from 'node:readline';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { portAllocator } from '../local-cluster/ports.js';
import { startOtlpReceiver } from './receiver.js';

const here = path.dirname(fileURLToPath(import.meta.url));

/** An OTLP/HTTP JSON export of two spans, as the server's exporter sends it (hex ids). */
const EXPORT = {
  resourceSpans: [
    {
      resource: { attributes: [{ key: 'service.name', value: { stringValue: 'llmchat' } }] },
      scopeSpans: [
        {
          spans: [
            { traceId: 'a'.repeat(32), spanId: 'b'.repeat(16), name: 'chat turn', kind: 1, attributes: [{ key: 'llmchat.turn.attempts', value: { intValue: '3' } }], events: [], links: [], status: { code: 0 } },
            { traceId: 'a'.repeat(32), spanId: 'c'.repeat(16), parentSpanId: 'b'.repeat(16), name: 'chat m', kind: 3, events: [{ name: 'first_token' }], status: { code: 2 } },
          ],
        },
      ],
    },
  ],
};

function post(url: string, body: unknown): Promise<Response> {
  return fetch(`${url}/v1/traces`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
}

describe('the OTLP receiver', () => {
  it('decodes an OTLP/HTTP JSON export into spans: ids, parents, attributes, events, status, resource', async () => {
    const receiver = await startOtlpReceiver({ port: await portAllocator(26_200).next() });
    try {
      expect((await post(receiver.url, EXPORT)).status).toBe(200);
      expect(receiver.spans).toEqual([
        { traceId: 'a'.repeat(32), spanId: 'b'.repeat(16), parentSpanId: undefined, name: 'chat turn', kind: 1, attributes: { 'llmchat.turn.attempts': 3 }, events: [], links: [], statusCode: 0, resource: { 'service.name': 'llmchat' } },
        { traceId: 'a'.repeat(32), spanId: 'c'.repeat(16), parentSpanId: 'b'.repeat(16), name: 'chat m', kind: 3, attributes: {}, events: ['first_token'], links: [], statusCode: 2, resource: { 'service.name': 'llmchat' } },
      ]);
      expect((await fetch(`${receiver.url}/v1/traces`, { method: 'POST', body: 'not json' })).status).toBe(400);
      expect((await fetch(`${receiver.url}/v1/metrics`, { method: 'POST', body: '{}' })).status).toBe(404);
    } finally {
      await receiver.close();
    }
  });

  it('as the CLI sink: prints its URL, counts spans without keeping them, prints the counts on SIGTERM', async () => {
    const port = await portAllocator(26_210).next();
    const child = spawn(process.execPath, ['--import', 'tsx', path.join(here, 'cli.ts'), '--port', String(port)], { stdio: ['ignore', 'pipe', 'inherit'] });
    const lines = readline.createInterface({ input: child.stdout });
    const output: string[] = [];
    const firstLine = new Promise<string>((resolve) => lines.once('line', resolve));
    const url = await firstLine;
    lines.on('line', (line) => output.push(line));
    expect(url).toBe(`http://127.0.0.1:${port}`);
    await post(url, EXPORT);
    await post(url, EXPORT);
    const exited = new Promise<number | null>((resolve) => child.once('close', resolve));
    child.kill('SIGTERM');
    expect(await exited).toBe(0);
    expect(output).toEqual(['spans 4, exports 2']);
  });
});
