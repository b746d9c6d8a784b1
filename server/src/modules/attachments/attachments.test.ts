import crypto from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createMockUpstream } from '../../../../tools/src/mock-upstream/index.js';
import { bearer, buildTestApp, createUserAndLogin, login, type TestApp } from '../../test/app.js';
import { backendNames } from '../../test/backends.js';
import { createAttachmentRepository } from './attachment-repository.js';
import { minimalPdf, ONE_PIXEL_PNG } from './test-files.js';

/**
 * Attachments (issue 18, item 1; README "Attachments"): uploads checked by
 * content, size and quota; served to their owner only, with headers that
 * keep a file from running as a page; refused for agents that do not take
 * them, with nothing written; and what reached each provider, proven by the
 * mock upstream's echo (type, size and SHA-256, or the file's text).
 */

const sha256 = (bytes: Buffer) => crypto.createHash('sha256').update(bytes).digest('hex');
const PDF_TEXT = 'Quarterly figures attached as PDF';
const PDF = minimalPdf(PDF_TEXT);

interface Uploaded {
  id: string;
  url: string;
  kind: string;
  contentType: string;
  size: number;
  sha256: string;
}

let mock: Awaited<ReturnType<typeof createMockUpstream>>;

beforeAll(async () => {
  mock = await createMockUpstream({ port: 0, host: '127.0.0.1', defaultChunks: 2, defaultIntervalMs: 0 });
});
afterAll(async () => {
  await mock.close();
});

describe.each(await backendNames())('attachments on %s', (backendName) => {
  let t: TestApp;
  let owner: string;
  let other: string;

  beforeAll(async () => {
    // A small quota, so the test can reach it with small files.
    // Signed links for FastGPT name a base the test never reaches: it follows their paths through inject().
    t = await buildTestApp(backendName, { ATTACHMENT_MAX_BYTES: '4096', ATTACHMENT_USER_QUOTA_BYTES: String(64 * 1024), ATTACHMENT_LINK_BASE_URL: 'http://llmchat.test/', ATTACHMENT_LINK_TTL_SECONDS: '60' });
    const admin = await login(t.app);
    const features = { supportsImages: true, supportsFiles: true };
    const agents = [
      { id: 'att-openai', name: 'OpenAI', provider: 'openai', endpoint: `${mock.url}/v1/chat/completions`, apiKey: 'k', model: 'vision', features },
      { id: 'att-anthropic', name: 'Anthropic', provider: 'anthropic', endpoint: `${mock.url}/v1/messages`, apiKey: 'k', model: 'claude', features },
      { id: 'att-fastgpt', name: 'FastGPT', provider: 'fastgpt', endpoint: `${mock.url}/api/v1/chat/completions`, apiKey: 'k', features },
      { id: 'att-dify', name: 'Dify', provider: 'dify', endpoint: `${mock.url}/v1`, apiKey: 'k', features },
      { id: 'att-text-only', name: 'Text only', provider: 'openai', endpoint: `${mock.url}/v1/chat/completions`, apiKey: 'k', model: 'text' },
      { id: 'att-images-only', name: 'Images only', provider: 'openai', endpoint: `${mock.url}/v1/chat/completions`, apiKey: 'k', model: 'vision', features: { supportsImages: true } },
    ];
    for (const agent of agents) {
      const res = await t.app.inject({ method: 'POST', url: '/api/agents', headers: bearer(admin), payload: agent });
      expect(res.statusCode, res.body).toBe(201);
    }
    const suffix = crypto.randomUUID().slice(0, 8);
    owner = (await createUserAndLogin(t.app, admin, `attach-${suffix}`)).token;
    other = (await createUserAndLogin(t.app, admin, `attach-other-${suffix}`)).token;
  });
  afterAll(async () => {
    await t?.close();
  });

  async function upload(token: string, bytes: Buffer, contentType: string, name: string) {
    return t.app.inject({ method: 'POST', url: `/api/attachments?name=${encodeURIComponent(name)}`, headers: { ...bearer(token), 'content-type': contentType }, payload: bytes });
  }
  async function uploaded(bytes: Buffer, contentType: string, name: string): Promise<Uploaded> {
    const res = await upload(owner, bytes, contentType, name);
    expect(res.statusCode, res.body).toBe(201);
    return res.json<{ data: Uploaded }>().data;
  }
  async function ask(agentId: string, content: unknown, chatId?: string, token = owner) {
    return t.app.inject({ method: 'POST', url: '/api/chat/completions', headers: bearer(token), payload: { agentId, chatId, stream: false, messages: [{ role: 'user', content }] } });
  }
  async function answer(agentId: string, content: unknown, chatId?: string): Promise<{ text: string; chatId: string }> {
    const res = await ask(agentId, content, chatId);
    expect(res.statusCode, res.body).toBe(200);
    const body = res.json<{ data: { chatId: string; choices: Array<{ message: { content: string } }> } }>();
    return { text: body.data.choices[0]!.message.content, chatId: body.data.chatId };
  }
  async function sessionCount(token: string): Promise<number> {
    const res = await t.app.inject({ method: 'GET', url: '/api/chat-sessions?pageSize=100', headers: bearer(token) });
    expect(res.statusCode, res.body).toBe(200);
    return res.json<{ data: unknown[] }>().data.length;
  }

  it('decides the type by content: a PNG sent as a PNG is kept as an image, a text file with its text type', async () => {
    const png = await uploaded(ONE_PIXEL_PNG, 'image/png', 'dot.png');
    expect(png).toMatchObject({ kind: 'image', contentType: 'image/png', size: ONE_PIXEL_PNG.length, sha256: sha256(ONE_PIXEL_PNG), url: `/api/attachments/${png.id}` });
    const pdf = await uploaded(PDF, 'application/octet-stream', 'figures.pdf');
    expect(pdf).toMatchObject({ kind: 'file', contentType: 'application/pdf' });
    const notes = await uploaded(Buffer.from('# Notes\n\nplain text'), 'text/markdown', 'notes.md');
    expect(notes).toMatchObject({ kind: 'file', contentType: 'text/markdown' });
  });

  it('refuses a claim the bytes contradict, a type it does not take, and a file over the limit, storing nothing', async () => {
    const before = await t.app.inject({ method: 'GET', url: '/api/attachments', headers: bearer(owner) });
    const mismatch = await upload(owner, ONE_PIXEL_PNG, 'image/jpeg', 'dot.jpg');
    expect([mismatch.statusCode, mismatch.json<{ error: { code: string } }>().error.code]).toEqual([415, 'ATTACHMENT_TYPE_MISMATCH']);
    const pdfAsText = await upload(owner, PDF, 'text/plain', 'figures.txt');
    expect(pdfAsText.json<{ error: { code: string } }>().error.code).toBe('ATTACHMENT_TYPE_MISMATCH');
    // A ZIP named and sent as a PNG is still a ZIP.
    const zip = await upload(owner, Buffer.from([0x50, 0x4b, 0x03, 0x04, 0x14, 0x00, 0x00, 0x00, 0x08, 0x00, 0xff, 0xfe]), 'image/png', 'photo.png');
    expect([zip.statusCode, zip.json<{ error: { code: string } }>().error.code]).toEqual([415, 'ATTACHMENT_TYPE_REFUSED']);
    const large = await upload(owner, Buffer.alloc(4097, 0x61), 'text/plain', 'large.txt');
    expect([large.statusCode, large.json<{ error: { code: string } }>().error.code]).toEqual([413, 'ATTACHMENT_TOO_LARGE']);
    const after = await t.app.inject({ method: 'GET', url: '/api/attachments', headers: bearer(owner) });
    expect(after.json<{ data: { usedBytes: number; items: unknown[] } }>().data).toEqual(before.json<{ data: { usedBytes: number; items: unknown[] } }>().data);
  });

  it('refuses an upload past the user\'s quota, even among uploads sent at once, and takes it again once the user removed some', async () => {
    const crowded = (await createUserAndLogin(t.app, await login(t.app), `attach-quota-${crypto.randomUUID().slice(0, 8)}`)).token;
    // 16 files of 4000 bytes fill 64000 of the 65536 bytes: of 20 sent at once, exactly 16 fit.
    const results = await Promise.all(Array.from({ length: 20 }, (_, i) => upload(crowded, Buffer.alloc(4000, 0x61 + (i % 26)), 'text/plain', `part-${i}.txt`)));
    expect(results.map((r) => r.statusCode).sort()).toEqual([...Array<number>(16).fill(201), ...Array<number>(4).fill(413)]);
    for (const refused of results.filter((r) => r.statusCode === 413)) expect(refused.json<{ error: { code: string } }>().error.code).toBe('ATTACHMENT_QUOTA_EXCEEDED');
    const ids = results.filter((r) => r.statusCode === 201).map((r) => r.json<{ data: { id: string } }>().data.id);
    const over = await upload(crowded, Buffer.alloc(4000, 0x7a), 'text/plain', 'over.txt');
    expect([over.statusCode, over.json<{ error: { code: string } }>().error.code]).toEqual([413, 'ATTACHMENT_QUOTA_EXCEEDED']);
    const listed = await t.app.inject({ method: 'GET', url: '/api/attachments?limit=500', headers: bearer(crowded) });
    const list = listed.json<{ data: { usedBytes: number; quotaBytes: number; items: Array<{ id: string; name: string }> } }>().data;
    expect([list.usedBytes, list.quotaBytes, list.items.length]).toEqual([64_000, 64 * 1024, 16]);
    expect(list.items.map((item) => item.id).sort()).toEqual([...ids].sort());
    const removed = await t.app.inject({ method: 'DELETE', url: `/api/attachments/${ids[0]}`, headers: bearer(crowded) });
    expect(removed.statusCode, removed.body).toBe(200);
    expect((await upload(crowded, Buffer.alloc(4000, 0x7a), 'text/plain', 'over.txt')).statusCode).toBe(201);
  });

  it('keeps a user within the quota when uploads race each other in the database (the check holds the user\'s row)', async () => {
    const racer = await createUserAndLogin(t.app, await login(t.app), `attach-race-${crypto.randomUUID().slice(0, 8)}`);
    const repo = createAttachmentRepository(t.backend.database);
    const row = (i: number) => ({ userId: racer.userId, name: `r${i}.txt`, contentType: 'text/plain', size: 1000, sha256: String(i), data: Buffer.alloc(1000, 0x61), textContent: null });
    // Ten at once against a quota of 5000 bytes: each reads the total, then writes; only five may land.
    const stored = await Promise.all(Array.from({ length: 10 }, (_, i) => repo.insertWithinQuota(row(i), 5000)));
    expect(stored.filter((r) => r !== undefined)).toHaveLength(5);
    expect(await repo.usedBytes(racer.userId)).toBe(5000);
  });

  it('serves an attachment to its owner only, never as a page: nosniff, private no-store, a sandboxing CSP, non-images as downloads', async () => {
    const png = await uploaded(ONE_PIXEL_PNG, 'image/png', 'dot.png');
    const pdf = await uploaded(PDF, 'application/pdf', 'figures.pdf');
    const image = await t.app.inject({ method: 'GET', url: png.url, headers: bearer(owner) });
    expect(image.statusCode).toBe(200);
    expect(image.rawPayload.equals(ONE_PIXEL_PNG)).toBe(true);
    expect(image.headers).toMatchObject({ 'content-type': 'image/png', 'x-content-type-options': 'nosniff', 'cache-control': 'private, no-store' });
    expect(image.headers['content-security-policy']).toMatch(/default-src 'none'.*sandbox/);
    expect(image.headers['content-disposition']).toMatch(/^inline; filename="dot.png"/);
    const file = await t.app.inject({ method: 'GET', url: pdf.url, headers: bearer(owner) });
    expect(file.headers['content-type']).toBe('application/pdf');
    expect(file.headers['content-disposition']).toMatch(/^attachment; filename="figures.pdf"/);
    for (const url of [png.url, `${png.url}/thumbnail`]) {
      const stranger = await t.app.inject({ method: 'GET', url, headers: bearer(other) });
      expect([stranger.statusCode, stranger.json<{ error: { code: string } }>().error.code]).toEqual([404, 'ATTACHMENT_NOT_FOUND']);
    }
    const strangerDelete = await t.app.inject({ method: 'DELETE', url: png.url, headers: bearer(other) });
    expect(strangerDelete.statusCode).toBe(404);
    expect((await t.app.inject({ method: 'GET', url: png.url, headers: bearer(owner) })).statusCode).toBe(200);
  });

  it('keeps a thumbnail only when its bytes are an image, and serves it in place of the image', async () => {
    const png = await uploaded(ONE_PIXEL_PNG, 'image/png', 'dot.png');
    const before = await t.app.inject({ method: 'GET', url: `${png.url}/thumbnail`, headers: bearer(owner) });
    expect(before.rawPayload.equals(ONE_PIXEL_PNG)).toBe(true);
    const notImage = await t.app.inject({ method: 'PUT', url: `${png.url}/thumbnail`, headers: { ...bearer(owner), 'content-type': 'image/png' }, payload: Buffer.from('not an image') });
    expect(notImage.json<{ error: { code: string } }>().error.code).toBe('ATTACHMENT_TYPE_REFUSED');
    const gif = Buffer.from('R0lGODlhAQABAIAAAP///wAAACwAAAAAAQABAAACAkQBADs=', 'base64');
    const set = await t.app.inject({ method: 'PUT', url: `${png.url}/thumbnail`, headers: { ...bearer(owner), 'content-type': 'image/gif' }, payload: gif });
    expect(set.statusCode, set.body).toBe(200);
    const after = await t.app.inject({ method: 'GET', url: `${png.url}/thumbnail`, headers: bearer(owner) });
    expect(after.headers['content-type']).toBe('image/gif');
    expect(after.rawPayload.equals(gif)).toBe(true);
  });

  it('refuses images for an agent without supportsImages, files for one without supportsFiles, and another user\'s attachment, writing nothing', async () => {
    const png = await uploaded(ONE_PIXEL_PNG, 'image/png', 'dot.png');
    const pdf = await uploaded(PDF, 'application/pdf', 'figures.pdf');
    const sessions = await sessionCount(owner);
    const noImages = await ask('att-text-only', [{ type: 'text', text: 'what is this?' }, { type: 'image_url', image_url: { url: png.url } }]);
    expect([noImages.statusCode, noImages.json<{ error: { code: string } }>().error.code]).toEqual([422, 'AGENT_TAKES_NO_IMAGES']);
    const noFiles = await ask('att-images-only', [{ type: 'text', text: 'summarise' }, { type: 'file_url', name: 'figures.pdf', url: pdf.url }]);
    expect([noFiles.statusCode, noFiles.json<{ error: { code: string } }>().error.code]).toEqual([422, 'AGENT_TAKES_NO_FILES']);
    const outside = await ask('att-text-only', [{ type: 'text', text: 'and this?' }, { type: 'image_url', image_url: { url: 'https://example.com/cat.png' } }]);
    expect(outside.json<{ error: { code: string } }>().error.code).toBe('AGENT_TAKES_NO_IMAGES');
    const othersSessions = await sessionCount(other);
    const notTheirs = await ask('att-openai', [{ type: 'text', text: 'mine now?' }, { type: 'image_url', image_url: { url: png.url } }], undefined, other);
    expect([notTheirs.statusCode, notTheirs.json<{ error: { code: string } }>().error.code]).toEqual([404, 'ATTACHMENT_NOT_FOUND']);
    expect(await sessionCount(owner)).toBe(sessions);
    expect(await sessionCount(other)).toBe(othersSessions);
  });

  it('sends OpenAI-compatible endpoints the image as a data URL and the PDF as its extracted text', async () => {
    const png = await uploaded(ONE_PIXEL_PNG, 'image/png', 'dot.png');
    const pdf = await uploaded(PDF, 'application/pdf', 'figures.pdf');
    const { text } = await answer('att-openai', [{ type: 'text', text: 'look' }, { type: 'image_url', image_url: { url: png.url } }, { type: 'file_url', name: 'figures.pdf', url: pdf.url }]);
    expect(text).toContain(`image image/png ${ONE_PIXEL_PNG.length} bytes sha256 ${sha256(ONE_PIXEL_PNG)}`);
    expect(text).toContain(`Attached file figures.pdf (application/pdf):\n\n${PDF_TEXT}`);
  });

  it('sends Anthropic the image as a base64 image block and the PDF and a text file as document blocks', async () => {
    const png = await uploaded(ONE_PIXEL_PNG, 'image/png', 'dot.png');
    const pdf = await uploaded(PDF, 'application/pdf', 'figures.pdf');
    const notes = await uploaded(Buffer.from('Meeting notes: ship on Friday'), 'text/plain', 'notes.txt');
    const { text } = await answer('att-anthropic', [{ type: 'text', text: 'look' }, { type: 'image_url', image_url: { url: png.url } }, { type: 'file_url', name: 'figures.pdf', url: pdf.url }, { type: 'file_url', name: 'notes.txt', url: notes.url }]);
    expect(text).toContain(`image image/png ${ONE_PIXEL_PNG.length} bytes sha256 ${sha256(ONE_PIXEL_PNG)}`);
    expect(text).toContain(`document application/pdf ${PDF.length} bytes sha256 ${sha256(PDF)}`);
    expect(text).toContain('document text/plain text "Meeting notes: ship on Friday"');
  });

  it('sends FastGPT the image as a data URL and the PDF as a signed, expiring link that needs no sign-in', async () => {
    const png = await uploaded(ONE_PIXEL_PNG, 'image/png', 'dot.png');
    const pdf = await uploaded(PDF, 'application/pdf', 'figures.pdf');
    const { text } = await answer('att-fastgpt', [{ type: 'text', text: 'look' }, { type: 'image_url', image_url: { url: png.url } }, { type: 'file_url', name: 'figures.pdf', url: pdf.url }]);
    expect(text).toContain(`image image/png ${ONE_PIXEL_PNG.length} bytes sha256 ${sha256(ONE_PIXEL_PNG)}`);
    const link = new RegExp(`file url http://llmchat\\.test(/api/attachment-links/${pdf.id}\\?expires=\\d+&signature=[\\w-]+)`).exec(text)?.[1];
    expect(link, text).toBeDefined();
    // What FastGPT fetches: the PDF's bytes, with no credentials at all.
    const fetched = await t.app.inject({ method: 'GET', url: link! });
    expect(fetched.statusCode, fetched.body).toBe(200);
    expect(fetched.rawPayload.equals(PDF)).toBe(true);
    expect(fetched.headers['content-disposition']).toMatch(/^attachment;/);
    // Another id under the same signature, an altered signature, and an expired link all find nothing.
    const other = await uploaded(ONE_PIXEL_PNG, 'image/png', 'other.png');
    for (const forged of [link!.replace(pdf.id, other.id), link!.replace(/signature=./, (s) => `${s.slice(0, -1)}${s.endsWith('A') ? 'B' : 'A'}`)]) {
      const res = await t.app.inject({ method: 'GET', url: forged });
      expect([res.statusCode, res.json<{ error: { code: string } }>().error.code]).toEqual([404, 'ATTACHMENT_NOT_FOUND']);
    }
    const expired = t.app.deps.attachments.signedLink(pdf.id, Date.now() - 61_000)!;
    expect((await t.app.inject({ method: 'GET', url: expired.replace('http://llmchat.test', '') })).statusCode).toBe(404);
    const fresh = t.app.deps.attachments.signedLink(pdf.id)!;
    expect((await t.app.inject({ method: 'GET', url: fresh.replace('http://llmchat.test', '') })).statusCode).toBe(200);
  });

  it('uploads to Dify\'s file store and names the files by their upload ids (local_file)', async () => {
    const png = await uploaded(ONE_PIXEL_PNG, 'image/png', 'dot.png');
    const pdf = await uploaded(PDF, 'application/pdf', 'figures.pdf');
    const { text } = await answer('att-dify', [{ type: 'text', text: 'look' }, { type: 'image_url', image_url: { url: png.url } }, { type: 'file_url', name: 'figures.pdf', url: pdf.url }]);
    expect(text).toContain(`image image/png ${ONE_PIXEL_PNG.length} bytes sha256 ${sha256(ONE_PIXEL_PNG)}`);
    expect(text).toContain(`file application/pdf ${PDF.length} bytes sha256 ${sha256(PDF)}`);
    const chat = mock.requests.filter((r) => r.path.endsWith('/v1/chat-messages')).at(-1);
    expect((chat?.body as { files?: Array<{ transfer_method: string }> }).files?.map((f) => f.transfer_method)).toEqual(['local_file', 'local_file']);
  });

  it('takes attachments on /v1/chat/completions too, with a personal API key', async () => {
    const png = await uploaded(ONE_PIXEL_PNG, 'image/png', 'dot.png');
    const key = await t.app.inject({ method: 'POST', url: '/api/auth/api-keys', headers: bearer(owner), payload: { name: 'sdk' } });
    expect(key.statusCode, key.body).toBe(201);
    const res = await t.app.inject({ method: 'POST', url: '/v1/chat/completions', headers: bearer(key.json<{ data: { key: string } }>().data.key), payload: { model: 'att-openai', messages: [{ role: 'user', content: [{ type: 'text', text: 'look' }, { type: 'image_url', image_url: { url: png.url } }] }] } });
    expect(res.statusCode, res.body).toBe(200);
    expect(res.json<{ choices: Array<{ message: { content: string } }> }>().choices[0]?.message.content).toContain(`image image/png ${ONE_PIXEL_PNG.length} bytes sha256 ${sha256(ONE_PIXEL_PNG)}`);
    const refused = await t.app.inject({ method: 'POST', url: '/v1/chat/completions', headers: bearer(key.json<{ data: { key: string } }>().data.key), payload: { model: 'att-text-only', messages: [{ role: 'user', content: [{ type: 'image_url', image_url: { url: png.url } }] }] } });
    expect(refused.statusCode).toBe(422);
  });

  it('keeps the attachments with the stored question: history shows them, and the next turn sends them again as context', async () => {
    const png = await uploaded(ONE_PIXEL_PNG, 'image/png', 'dot.png');
    const first = await answer('att-openai', [{ type: 'text', text: 'remember this picture' }, { type: 'image_url', image_url: { url: png.url } }]);
    const history = await t.app.inject({ method: 'GET', url: `/api/chat-sessions/${first.chatId}`, headers: bearer(owner) });
    const question = history.json<{ data: { messages: Array<{ role: string; content: string }> } }>().data.messages.find((m) => m.role === 'user');
    expect(JSON.parse(question?.content ?? 'null')).toEqual([{ type: 'text', text: 'remember this picture' }, { type: 'image_url', image_url: { url: png.url } }]);
    // Export and share links read the question as text and name its attachments (a link never serves them).
    const markdown = await t.app.inject({ method: 'GET', url: `/api/chat-sessions/${first.chatId}/export?format=markdown`, headers: bearer(owner) });
    expect(markdown.body).toContain('remember this picture\n\n[Attached image]');
    const json = await t.app.inject({ method: 'GET', url: `/api/chat-sessions/${first.chatId}/export?format=json`, headers: bearer(owner) });
    expect(json.json<{ messages: Array<{ role: string; content: string; attachments?: unknown }> }>().messages[0]).toMatchObject({ role: 'user', content: 'remember this picture', attachments: [{ kind: 'image', name: null, url: png.url }] });
    const share = await t.app.inject({ method: 'POST', url: `/api/chat-sessions/${first.chatId}/shares`, headers: bearer(owner) });
    const shared = await t.app.inject({ method: 'GET', url: `/api/shared/${share.json<{ data: { token: string } }>().data.token}`, headers: bearer(other) });
    expect(shared.json<{ data: { messages: Array<{ content: string }> } }>().data.messages[0]?.content).toBe('remember this picture\n\n[Attached image]');
    await answer('att-openai', 'what was in the picture?', first.chatId);
    const sent = mock.requests.filter((r) => r.path.endsWith('/v1/chat/completions')).at(-1)?.body as { messages: Array<{ role: string; content: unknown }> };
    const earlier = sent.messages.find((m) => Array.isArray(m.content));
    expect(earlier?.content).toEqual([{ type: 'text', text: 'remember this picture' }, { type: 'image_url', image_url: { url: `data:image/png;base64,${ONE_PIXEL_PNG.toString('base64')}` } }]);
  });

  it('searches a question with attachments by its text and file names, never by its stored JSON', async () => {
    const notes = await uploaded(Buffer.from('plain notes'), 'text/plain', 'budget-notes.txt');
    const asked = await answer('att-openai', [{ type: 'text', text: 'summarise the walrus memo' }, { type: 'file_url', name: 'budget-notes.txt', url: notes.url }]);
    const search = async (q: string) =>
      (await t.app.inject({ method: 'GET', url: `/api/chat-sessions/search?q=${encodeURIComponent(q)}`, headers: bearer(owner) }))
        .json<{ data: Array<{ sessionId: string; messageId: string | null; snippet: string }> }>()
        .data.filter((h) => h.sessionId === asked.chatId && h.messageId !== null);
    const byText = await search('walrus');
    expect(byText.map((h) => h.snippet)).toContain('summarise the <mark>walrus</mark> memo\n\n[Attached file: budget-notes.txt]');
    expect((await search('budget-notes.txt')).length).toBeGreaterThan(0);
    // Words of the stored JSON alone (its keys, the attachment's address) find nothing.
    for (const q of ['file_url', 'type', notes.id]) expect(await search(q), q).toEqual([]);
  });
});
