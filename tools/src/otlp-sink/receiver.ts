import http from 'node:http';
import type { AddressInfo } from 'node:net';

/** One span as an OTLP/HTTP JSON export carries it, flattened for assertions. */
export interface ReceivedSpan {
  traceId: string;
  spanId: string;
  parentSpanId: string | undefined;
  name: string;
  /** OTLP SpanKind: 1 internal, 2 server, 3 client. */
  kind: number;
  attributes: Record<string, string | number | boolean | undefined>;
  events: string[];
  links: { traceId: string; spanId: string; attributes: Record<string, string | number | boolean | undefined> }[];
  /** OTLP status code: 0 unset, 1 ok, 2 error. */
  statusCode: number;
  resource: Record<string, string | number | boolean | undefined>;
}

export interface OtlpReceiver {
  /** Base URL, as OTEL_EXPORTER_OTLP_ENDPOINT takes it. */
  url: string;
  /** The spans received, when `keepSpans` (the default); else empty. */
  readonly spans: ReceivedSpan[];
  /** Spans received so far, kept or not. */
  readonly spanCount: number;
  /** Export requests received so far. */
  readonly exportCount: number;
  /** Content types of the export requests received. */
  readonly contentTypes: string[];
  close(): Promise<void>;
}

interface AnyValue {
  stringValue?: string;
  intValue?: string | number;
  doubleValue?: number;
  boolValue?: boolean;
}
interface KeyValue {
  key: string;
  value: AnyValue;
}
interface WireSpan {
  traceId: string;
  spanId: string;
  parentSpanId?: string;
  name: string;
  kind: number;
  attributes?: KeyValue[];
  events?: { name: string }[];
  links?: { traceId: string; spanId: string; attributes?: KeyValue[] }[];
  status?: { code?: number };
}
interface ExportBody {
  resourceSpans?: { resource?: { attributes?: KeyValue[] }; scopeSpans?: { spans?: WireSpan[] }[] }[];
}

function valueOf(value: AnyValue): string | number | boolean | undefined {
  if (value.stringValue !== undefined) return value.stringValue;
  if (value.intValue !== undefined) return Number(value.intValue);
  if (value.doubleValue !== undefined) return value.doubleValue;
  return value.boolValue;
}

function attributesOf(list: KeyValue[] | undefined): Record<string, string | number | boolean | undefined> {
  return Object.fromEntries((list ?? []).map((kv) => [kv.key, valueOf(kv.value)]));
}

/** Hex (the OTLP JSON encoding) or base64 (protobuf's JSON mapping) ids as lower-case hex. */
function hexId(id: string | undefined): string | undefined {
  if (id === undefined || id === '') return undefined;
  return /^[0-9a-f]+$/i.test(id) ? id.toLowerCase() : Buffer.from(id, 'base64').toString('hex');
}

export interface OtlpReceiverOptions {
  /** A loopback port below 32768 in tests (local-cluster/ports.ts); 0 picks any. */
  port: number;
  host?: string;
  /** Keep every span for inspection (tests); false only counts them (a long benchmark). Default true. */
  keepSpans?: boolean;
}

/**
 * An OTLP/HTTP trace receiver: accepts `POST /v1/traces` with a JSON body
 * (what the server's exporter sends, OTEL_EXPORTER_OTLP_PROTOCOL=http/json),
 * decodes it, and keeps or counts the spans. Tests check span trees with it;
 * `otlp-sink/cli.ts` is a sink for the benchmark with tracing on.
 */
export async function startOtlpReceiver(options: OtlpReceiverOptions): Promise<OtlpReceiver> {
  const keep = options.keepSpans ?? true;
  const spans: ReceivedSpan[] = [];
  const contentTypes: string[] = [];
  let spanCount = 0;
  let exportCount = 0;
  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      if (req.method !== 'POST' || req.url !== '/v1/traces') {
        res.writeHead(404).end();
        return;
      }
      exportCount++;
      if (keep || contentTypes.length < 100) contentTypes.push(String(req.headers['content-type']));
      let body: ExportBody;
      try {
        body = JSON.parse(Buffer.concat(chunks).toString('utf8')) as ExportBody;
      } catch {
        res.writeHead(400).end();
        return;
      }
      for (const resourceSpans of body.resourceSpans ?? []) {
        const resource = attributesOf(resourceSpans.resource?.attributes);
        for (const scope of resourceSpans.scopeSpans ?? []) {
          for (const s of scope.spans ?? []) {
            spanCount++;
            if (!keep) continue;
            spans.push({
              traceId: hexId(s.traceId) ?? '',
              spanId: hexId(s.spanId) ?? '',
              parentSpanId: hexId(s.parentSpanId),
              name: s.name,
              kind: s.kind,
              attributes: attributesOf(s.attributes),
              events: (s.events ?? []).map((e) => e.name),
              links: (s.links ?? []).map((l) => ({ traceId: hexId(l.traceId) ?? '', spanId: hexId(l.spanId) ?? '', attributes: attributesOf(l.attributes) })),
              statusCode: s.status?.code ?? 0,
              resource,
            });
          }
        }
      }
      res.writeHead(200, { 'content-type': 'application/json' }).end('{}');
    });
  });
  const host = options.host ?? '127.0.0.1';
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(options.port, host, resolve);
  });
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://${host}:${port}`,
    spans,
    get spanCount() {
      return spanCount;
    },
    get exportCount() {
      return exportCount;
    },
    contentTypes,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
