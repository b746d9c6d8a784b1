import { describe, expect, it } from 'vitest';
import { OpenAIChunkReader, openAIChunkFields, type OpenAIChunk, type OpenAIChunkFields } from './openai-chunk.js';
import { UpstreamError } from './upstream-error.js';

/** What the reference (JSON.parse, then the fields) makes of a chunk: its fields, or why it has none. */
function reference(data: string): OpenAIChunkFields | 'invalid' | 'error' {
  let parsed: unknown;
  try {
    parsed = JSON.parse(data);
  } catch {
    return 'invalid';
  }
  if (typeof parsed !== 'object' || parsed === null) return 'invalid';
  const chunk = parsed as OpenAIChunk;
  if (chunk.error !== undefined && chunk.error !== null) return 'error';
  return openAIChunkFields(chunk);
}

/** One stream read by one reader: every chunk's fields must be the reference's, and bad chunks must throw. Returns the reader. */
function readStream(chunks: readonly string[]): OpenAIChunkReader {
  const reader = new OpenAIChunkReader('http://up/v1', 'openai', 'sk-secret-123');
  for (const data of chunks) {
    const expected = reference(data);
    let got: OpenAIChunkFields | 'invalid' | 'error';
    try {
      got = reader.read(data);
    } catch (err) {
      got = err instanceof UpstreamError && err.kind === 'protocol' ? 'invalid' : 'error';
    }
    expect({ data, got }).toEqual({ data, got: expected });
  }
  return reader;
}

/** The chunks a stream of `pieces` sends, in the mock's (and OpenAI's) form. */
function openAIStream(pieces: readonly string[], slot: 'content' | 'reasoning_content' = 'content'): string[] {
  const head = '{"id":"chatcmpl-1","object":"chat.completion.chunk","created":1764892800,"model":"gpt-4o-mini","system_fingerprint":null,"choices":[';
  const choice = (delta: string, finish: string) => `${head}{"index":0,"delta":${delta},"logprobs":null,"finish_reason":${finish}}],"usage":null}`;
  return [
    choice('{"role":"assistant","content":"","refusal":null}', 'null'),
    ...pieces.map((p) => choice(`{"${slot}":${JSON.stringify(p)}}`, 'null')),
    choice('{}', '"stop"'),
    `${head}],"usage":{"prompt_tokens":3,"completion_tokens":${pieces.length},"total_tokens":${3 + pieces.length}}}`,
  ];
}

const HEAD = '"id":"chatcmpl-0123456789abcdef","object":"chat.completion.chunk","created":1764892800,"model":"gpt-4o-mini","system_fingerprint":"fp_1"';

/** Chunks as providers send them: OpenAI, DeepSeek (reasoning_content), OpenRouter (reasoning), vLLM, usage and finish chunks. */
const REAL_CHUNKS = [
  `{${HEAD},"choices":[{"index":0,"delta":{"role":"assistant","content":"","refusal":null},"logprobs":null,"finish_reason":null}],"usage":null}`,
  `{${HEAD},"choices":[{"index":0,"delta":{"content":"Hello"},"logprobs":null,"finish_reason":null}],"usage":null}`,
  `{${HEAD},"choices":[{"index":0,"delta":{"content":" wor\\"ld\\n\\u4f60\\u597d \\ud83d\\ude00 / \\/"},"logprobs":null,"finish_reason":null}]}`,
  `{${HEAD},"choices":[{"index":0,"delta":{"content":"你好，世界 😀"},"finish_reason":null}]}`,
  `{${HEAD},"choices":[{"index":0,"delta":{},"logprobs":null,"finish_reason":"stop"}],"usage":null}`,
  `{${HEAD},"choices":[],"usage":{"prompt_tokens":12,"completion_tokens":34,"total_tokens":46,"prompt_tokens_details":{"cached_tokens":0},"completion_tokens_details":{"reasoning_tokens":0}}}`,
  `{"id":"x","object":"chat.completion.chunk","created":1,"model":"deepseek-reasoner","choices":[{"index":0,"delta":{"content":null,"reasoning_content":"Let me think"},"logprobs":null,"finish_reason":null}]}`,
  `{"id":"x","model":"r1","choices":[{"index":0,"delta":{"content":"","reasoning":"step 1"},"finish_reason":null}]}`,
  `{"id":"x","model":"r1","choices":[{"index":0,"delta":{"reasoning_content":null,"reasoning":"via reasoning"}}]}`,
  `{"id":"x","model":"r1","choices":[{"index":0,"delta":{"reasoning_content":"","reasoning":"ignored: reasoning_content is not null"}}]}`,
  `{"id":"x","choices":[{"index":0,"delta":{"content":"a"},"finish_reason":null},{"index":1,"delta":{"content":"second choice"},"finish_reason":null}]}`,
  `{"id":"x","choices":[{"delta":{"content":"a","tool_calls":[{"index":0,"id":"call_1","type":"function","function":{"name":"f","arguments":"{\\"x\\":1}"}}]},"logprobs":{"content":[{"token":"a","logprob":-0.1e-3,"bytes":[97],"top_logprobs":[]}]}}]}`,
  `{"id":"x","model":"m","choices":[{"index":0,"delta":{"content":"x"},"finish_reason":"length"}],"usage":{"prompt_tokens":1,"completion_tokens":2,"total_tokens":3}}`,
  `  {\n  "model" : "spaced" ,\r\n\t"choices" : [ { "delta" : { "content" : "ws" } , "finish_reason" : null } ] }  `,
  JSON.stringify({ model: 'pretty', choices: [{ index: 0, delta: { content: 'indented' }, finish_reason: null }] }, null, 2),
  `{"model":"dup","model":"dup2","choices":[{"delta":{"content":"one","content":"two"}}],"choices":[{"delta":{"reasoning":"last choices wins"}}]}`,
  `{"choices":[{"delta":{"content":"x"},"delta":{"reasoning":"second delta wins"}}]}`,
  `{"usage":{"prompt_tokens":1},"usage":null}`,
  `{"usage":0}`,
  `{"usage":"text"}`,
  `{"model":"","choices":[{"delta":null,"finish_reason":null}]}`,
  `{"error":null,"choices":[{"delta":{"content":"error null is no error"}}]}`,
  `{"model":7,"choices":[{"delta":{"content":42,"reasoning_content":false,"reasoning":"r"}}]}`,
  `{"n":[-0,0.5,1e10,-2E-3,1.5e+2,true,false,null,{},[],[[]],{"a":{"b":[1,{"c":"d"}]}}],"choices":[{"delta":{"content":"numbers"}}]}`,
  '{}',
];

describe('OpenAIChunkReader', () => {
  it('reads a stream\'s chunks from its template once it has one, exactly as JSON.parse would', () => {
    const pieces = ['Hello', ' wor"ld\n', '你好 😀', '', 'a\\b', '\u0001 control', 'x'.repeat(300)];
    const reader = readStream(openAIStream(pieces));
    // The role chunk, the first piece, the finish and the usage chunk are parsed whole; the rest fit the template.
    expect(reader.hits).toBe(pieces.length - 1);
    expect(readStream(openAIStream(['think', 'ing', ' more'], 'reasoning_content')).hits).toBe(2);
  });

  it('reads every real-world chunk as the reference does, alone and in any order', () => {
    readStream(REAL_CHUNKS);
    readStream([...REAL_CHUNKS].reverse());
    readStream(REAL_CHUNKS.flatMap((c) => [c, c, c]));
  });

  it('takes a chunk that only looks like the template the long way', () => {
    const [, first] = openAIStream(['a']);
    const reader = readStream([
      first!,
      first!.replace('"a"', '"b"'),
      first!.replace('"a"', '"b" , "content":"c"'),
      first!.replace('"a"', '"b\\x"'),
      first!.replace('"a"', '"b'),
      first!.replace('"a"', '"b"').replace('"usage":null', '"usage":null,"error":{"message":"boom"}'),
      first!.replace('"finish_reason":null', '"finish_reason":"stop"'),
      first!.replace('"a"', '"b"x'),
      first!.replace('"a"', 'e"b"'),
      first!.replace('"a"', '"b"  '),
    ]);
    expect(reader.hits).toBe(1);
  });

  it('never makes a template of a slot that is not the delta', () => {
    // The first "content" is the logprobs' key, the last one wins among duplicates, reasoning_content outranks reasoning.
    readStream([
      '{"choices":[{"logprobs":{"content":"lp"},"delta":{"content":"real"}}]}',
      '{"choices":[{"logprobs":{"content":"lp2"},"delta":{"content":"real"}}]}',
    ]);
    readStream(['{"choices":[{"delta":{"content":"one","content":"two"}}]}', '{"choices":[{"delta":{"content":"three","content":"two"}}]}']);
    readStream(['{"choices":[{"delta":{"reasoning":"r","reasoning_content":"rc"}}]}', '{"choices":[{"delta":{"reasoning":"r2","reasoning_content":"rc"}}]}']);
  });

  it('stops making templates for a stream whose chunks never fit one', () => {
    const chunks = Array.from({ length: 20 }, (_, i) => `{"created":${i},"choices":[{"delta":{"content":"t${i}"}}]}`);
    expect(readStream(chunks).hits).toBe(0);
  });

  it('turns an in-stream error into the provider error, without the key', () => {
    const reader = new OpenAIChunkReader('http://up/v1', 'openai', 'sk-secret-123');
    let caught: unknown;
    try {
      reader.read('{"error":{"message":"bad key sk-secret-123","code":"server_error"}}');
    } catch (err) {
      caught = err;
    }
    expect(caught).toBeInstanceOf(UpstreamError);
    expect((caught as UpstreamError).message).toBe('openai stream error server_error: bad key [redacted]');
  });

  it('agrees with JSON.parse on 40,000 damaged and random chunks, in streams (seeded)', () => {
    let seed = 0x2f6e2b1;
    const random = (): number => {
      // mulberry32: small, seeded, good enough to spread the damage around.
      seed = (seed + 0x6d2b79f5) | 0;
      let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
      t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
      return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
    };
    const pick = <T>(list: readonly T[]): T => list[Math.floor(random() * list.length)] as T;
    const KEYS = ['choices', 'delta', 'content', 'reasoning_content', 'reasoning', 'finish_reason', 'model', 'usage', 'error', 'index', 'x'];
    const value = (depth: number): unknown => {
      const r = random();
      if (depth > 3 || r < 0.3) return pick(['', 'text', 'é"\\\n😀', 0, -1.5e3, true, false, null]);
      if (r < 0.6) return Array.from({ length: Math.floor(random() * 3) }, () => value(depth + 1));
      return Object.fromEntries(Array.from({ length: Math.floor(random() * 4) }, () => [pick(KEYS), value(depth + 1)]));
    };
    const CHARS = ['{', '}', '[', ']', '"', ',', ':', '\\', ' ', '0', '-', 'e', '.', 'n', 'u', 'l', '\u0001', 'é'];
    const damage = (data: string): string => {
      const at = Math.floor(random() * (data.length + 1));
      const op = random();
      if (op < 0.33) return data.slice(0, at) + data.slice(at + 1);
      if (op < 0.66) return data.slice(0, at) + pick(CHARS) + data.slice(at + 1);
      return data.slice(0, at) + pick(CHARS) + data.slice(at);
    };
    let hits = 0;
    for (let n = 0; n < 2000; n++) {
      const stream = n % 2 === 0 ? openAIStream(Array.from({ length: 16 }, () => pick(['a', 'b c', '"q"', '\\', '中文']))) : Array.from({ length: 20 }, () => JSON.stringify(value(0)));
      // One chunk in four damaged: a character removed, replaced or added.
      hits += readStream(stream.map((c) => (random() < 0.25 ? damage(c) : c))).hits;
    }
    expect(hits).toBeGreaterThan(5000);
  });
});
