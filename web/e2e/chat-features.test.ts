import fs from 'node:fs';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { Browser, BrowserContext, Page } from 'playwright-core';
import { ADMIN_PASSWORD, apiCall, apiLogin, closeAll, createUser, horizontalOverflow, LAYOUTS, launchBrowser, newContext, screenshot, screenshotIfFailed, seriousViolations, signIn, simulatedAgent, startServer, type RunningServer } from './harness.js';

/**
 * Issue 18's chat features in a real browser, in English and Chinese, at
 * 375 px and 1280 px: the polish (44 px touch targets, copy code with
 * feedback, long code scrolling inside its block, the stopped state), agent
 * switching mid-conversation, export as Markdown and JSON, and read-only
 * share links (signed-in viewers, revocation; anyone when an admin allows).
 * axe runs on every new page and dialog; no page is wider than the window.
 */

const OWNER = 'sharer';
const VIEWER = 'viewer';
const PASSWORD = 'sharer-password-123';
const LONG_CODE = ['```js', `const line = '${'x'.repeat(300)}';`, '```'].join('\n');

let server: RunningServer;
let browser: Browser;
let ownerToken: string;
const contexts: BrowserContext[] = [];
let current: Page | undefined;

interface StoredMessage {
  id: string;
  role: string;
  status: string;
  agentId: string | null;
  content: string;
  versions: string[] | null;
}

async function freshPage(locale: string, width: number): Promise<Page> {
  const context = await newContext(browser, server.url, { locale, width });
  contexts.push(context);
  current = await context.newPage();
  return current;
}

const lastAnswer = (page: Page) => page.locator('article[data-role=assistant]').last();
const sessionIdOf = (page: Page) => /\/c\/([0-9a-f-]{36})/.exec(page.url())?.[1];

async function ask(page: Page, text: string): Promise<void> {
  await page.locator('#chat-input').fill(text);
  await page.keyboard.press('Enter');
}

async function settledAnswer(page: Page, status: 'complete' | 'stopped' = 'complete'): Promise<void> {
  await page.locator(`article[data-role=assistant][data-status=${status}]`).last().waitFor();
  await page.locator('article[data-role=assistant][data-status=streaming]').waitFor({ state: 'detached' });
}

async function noOverflowNorViolations(page: Page, where: string): Promise<void> {
  expect(await horizontalOverflow(page), where).toEqual([]);
  expect(await seriousViolations(page), where).toEqual([]);
}

beforeAll(async () => {
  server = await startServer();
  const admin = await apiLogin(server.url, 'admin', ADMIN_PASSWORD);
  await createUser(server.url, admin, OWNER, PASSWORD);
  await createUser(server.url, admin, VIEWER, PASSWORD);
  ownerToken = await apiLogin(server.url, OWNER, PASSWORD);
  await simulatedAgent(server.url, admin, { id: 'second', name: 'Second assistant', description: 'Another agent on the simulated upstream', model: 'second-model', capabilities: [], isActive: true });
  browser = await launchBrowser();
});

afterEach((ctx) => screenshotIfFailed(ctx, current));

afterAll(() => closeAll(contexts, browser, server));

describe.each(LAYOUTS)('chat features in %s at %i px', (locale, width, t) => {
  const name = `${locale}-${width}`;
  let page: Page;
  let sessionId: string;
  let shareUrl: string;

  beforeAll(async () => {
    page = await freshPage(locale, width);
    await signIn(page, OWNER, PASSWORD);
  });

  it('stops an answer and shows it as stopped, with the continue action', async () => {
    await ask(page, '[[mock chunks=60 interval=80]] a long story');
    await page.waitForURL(/\/c\/[0-9a-f-]{36}$/);
    sessionId = sessionIdOf(page)!;
    await page.locator('article[data-role=assistant][data-status=streaming] .markdown, article[data-role=assistant][data-status=streaming] .plain-text').first().waitFor();
    await page.locator('[data-testid=stop]').click();
    await settledAnswer(page, 'stopped');
    const note = lastAnswer(page).getByTestId('stopped');
    await note.getByText(t['chat.stopped'], { exact: true }).waitFor();
    // The demo agent's simulated upstream continues answers, so the action is offered.
    expect(await note.innerText()).toContain(t['chat.stoppedNoteContinue']);
    await note.getByRole('button', { name: t['chat.continue'] }).waitFor();
    await screenshot(page, `features-stopped-${name}`);
    await noOverflowNorViolations(page, 'a stopped answer');
  });

  it('gives message actions 44 px touch targets, copies code with feedback, and scrolls long code inside its block', async () => {
    await ask(page, `[[mock answer=${encodeURIComponent(LONG_CODE)}]] long code`);
    await settledAnswer(page);
    const answer = lastAnswer(page);
    await answer.locator('.code-block code.hljs').waitFor();
    const boxes = await answer.locator('.message-actions button, .code-header button').evaluateAll((buttons) => buttons.map((b) => ({ label: b.getAttribute('aria-label') ?? b.textContent, ...b.getBoundingClientRect().toJSON() as { width: number; height: number } })));
    expect(boxes.length).toBeGreaterThanOrEqual(4);
    for (const box of boxes) {
      expect(box.width, `${box.label} width`).toBeGreaterThanOrEqual(44);
      expect(box.height, `${box.label} height`).toBeGreaterThanOrEqual(44);
    }
    await answer.locator('.code-header button', { hasText: t['common.copy'] }).click();
    await answer.locator('.code-header button', { hasText: t['common.copied'] }).waitFor();
    await answer.locator('.code-header [role=status]', { hasText: t['common.copied'] }).waitFor({ state: 'attached' });
    expect(await page.evaluate(() => navigator.clipboard.readText())).toBe(`const line = '${'x'.repeat(300)}';`);
    const pre = await answer.locator('.code-block pre').evaluate((el) => ({ content: el.scrollWidth, shown: el.clientWidth, page: document.documentElement.scrollWidth, window: document.documentElement.clientWidth }));
    expect(pre.content).toBeGreaterThan(pre.shown);
    expect(pre.page).toBeLessThanOrEqual(pre.window);
    await screenshot(page, `features-code-${name}`);
  });

  it('switches agents mid-conversation: the header shows the current one, each answer names its agent', async () => {
    const select = page.getByTestId('agent-switch');
    expect(await select.inputValue()).toBe('demo');
    expect(await page.getByLabel(t['chat.agentLabel']).count()).toBe(1);
    // The agent list, Export and Share sit on one row under the title, on a phone too.
    const tops = await page.locator('.conversation-tools').evaluate((el) => [...el.children].map((c) => Math.round(c.getBoundingClientRect().top)));
    expect(new Set(tops).size, `tops of the header's tools: ${tops.join(', ')}`).toBe(1);
    await select.selectOption('second');
    await expect.poll(async () => (await apiCall<{ agentId: string }>(server.url, ownerToken, 'GET', `/api/chat-sessions/${sessionId}`)).agentId).toBe('second');
    await ask(page, 'who answers now?');
    await settledAnswer(page);
    await lastAnswer(page).getByTestId('answer-agent').getByText(t['chat.answeredBy'].replace('{agent}', 'Second assistant')).waitFor();
    await page.locator('article[data-role=assistant]').first().getByTestId('answer-agent').getByText(t['chat.answeredBy'].replace('{agent}', 'Demo assistant (simulated)')).waitFor();
    const stored = (await apiCall<{ messages: StoredMessage[] }>(server.url, ownerToken, 'GET', `/api/chat-sessions/${sessionId}`)).messages;
    expect(stored.filter((m) => m.role === 'assistant').map((m) => m.agentId)).toEqual(['demo', 'demo', 'second']);
    // After a reload the header still shows the agent the conversation switched to.
    await page.reload();
    await settledAnswer(page);
    expect(await page.getByTestId('agent-switch').inputValue()).toBe('second');
    await screenshot(page, `features-agent-switch-${name}`);
    await noOverflowNorViolations(page, 'a conversation with two agents');
  });

  it('exports the conversation as Markdown and as JSON', async () => {
    const exportAs = async (testId: string) => {
      await page.locator('details.menu summary').click();
      const [download] = await Promise.all([page.waitForEvent('download'), page.getByTestId(testId).click()]);
      return { name: download.suggestedFilename(), body: fs.readFileSync(await download.path(), 'utf8') };
    };
    await page.locator('details.menu summary').click();
    await noOverflowNorViolations(page, 'the export menu');
    await page.locator('details.menu summary').click();
    await page.getByTestId('export-markdown').waitFor({ state: 'hidden' });
    const md = await exportAs('export-markdown');
    expect(md.name).toBe('mock-chunks-60-interval-80-a-long-story.md');
    expect(md.body).toContain('## Second assistant');
    expect(md.body).toContain('## Demo assistant (simulated) (stopped)');
    const json = await exportAs('export-json');
    expect(json.name.endsWith('.json')).toBe(true);
    const doc = JSON.parse(json.body) as { format: string; messages: { role: string; agentId: string | null; status: string }[] };
    expect(doc.format).toBe('llmchat.conversation.v1');
    expect(doc.messages.filter((m) => m.role === 'assistant').map((m) => [m.agentId, m.status])).toEqual([
      ['demo', 'stopped'],
      ['demo', 'complete'],
      ['second', 'complete'],
    ]);
  });

  it('makes a share link another signed-in person reads, and meets axe on the dialog', async () => {
    await page.getByTestId('share').click();
    const dialog = page.locator('dialog[open]');
    await dialog.getByText(t['share.title']).waitFor();
    await dialog.getByText(t['share.none']).waitFor();
    await noOverflowNorViolations(page, 'the share dialog');
    await dialog.getByTestId('share-create').click();
    shareUrl = await dialog.getByTestId('share-link').inputValue();
    expect(shareUrl).toMatch(new RegExp(`^${server.url}/s/[A-Za-z0-9_-]{43}$`));
    await dialog.getByTestId('share-list').locator('li').first().waitFor();
    await screenshot(page, `features-share-dialog-${name}`);
    await noOverflowNorViolations(page, 'the share dialog with a link');
    await dialog.getByRole('button', { name: t['common.close'] }).click();

    // Someone signed out is sent to sign in, and lands on the conversation after.
    const viewer = await freshPage(locale, width);
    await viewer.goto(shareUrl);
    await viewer.waitForURL('**/login');
    await viewer.locator('#username').fill(VIEWER);
    await viewer.locator('#password').fill(PASSWORD);
    await viewer.locator('form button[type=submit]').click();
    await viewer.waitForURL(shareUrl);
    await viewer.getByTestId('shared-title').waitFor();
    expect(await viewer.getByTestId('shared-title').innerText()).toBe('[[mock chunks=60 interval=80]] a long story');
    await viewer.getByText(t['chat.answeredBy'].replace('{agent}', 'Second assistant')).waitFor();
    expect(await viewer.locator('[data-role=user]').count()).toBe(3);
    // Read-only: no message box, no actions.
    expect(await viewer.locator('#chat-input, .message-actions, [data-testid=share]').count()).toBe(0);
    await screenshot(viewer, `features-shared-page-${name}`);
    await noOverflowNorViolations(viewer, 'the shared page');
    current = page;
  });

  it('revokes the link: the viewer’s next load says it is gone', async () => {
    await page.getByTestId('share').click();
    const dialog = page.locator('dialog[open]');
    await dialog.getByRole('button', { name: t['share.revoke'] }).click();
    await dialog.locator('.badge', { hasText: t['share.revoked'].split('{date}')[0]!.trim() || t['share.revoked'].replace('{date}', '').trim() }).first().waitFor();
    await dialog.getByRole('button', { name: t['common.close'] }).click();
    const viewer = await freshPage(locale, width);
    await signIn(viewer, VIEWER, PASSWORD);
    await viewer.goto(shareUrl);
    await viewer.getByRole('alert').getByText(t['share.gone']).waitFor();
    await noOverflowNorViolations(viewer, 'a revoked link');
  });

  it('continues a stopped answer where it stopped: its text stays, the rest follows, one answer is stored', async () => {
    current = page;
    await page.goto(`${server.url}/`);
    await ask(page, '[[mock chunks=40 interval=60]] a story to go on with');
    await page.waitForURL(/\/c\/[0-9a-f-]{36}$/);
    const id = sessionIdOf(page)!;
    await page.locator('article[data-role=assistant][data-status=streaming] .markdown, article[data-role=assistant][data-status=streaming] .plain-text').first().waitFor();
    await page.locator('[data-testid=stop]').click();
    await settledAnswer(page, 'stopped');
    const stored = async () => (await apiCall<{ messages: StoredMessage[] }>(server.url, ownerToken, 'GET', `/api/chat-sessions/${id}`)).messages;
    const stopped = (await stored())[1]!;
    expect(stopped.status).toBe('stopped');
    await lastAnswer(page).getByTestId('stopped').getByRole('button', { name: t['chat.continue'] }).click();
    await settledAnswer(page);
    await expect.poll(async () => (await stored()).map((m) => [m.role, m.status])).toEqual([
      ['user', 'complete'],
      ['assistant', 'complete'],
    ]);
    const [, continued] = await stored();
    expect(continued!.content.startsWith(stopped.content)).toBe(true);
    expect(continued!.content.length).toBeGreaterThan(stopped.content.length);
    // The page shows the whole answer once, as stored (the words of the simulated answer render as they are).
    const shown = (await lastAnswer(page).locator('.markdown, .plain-text').first().innerText()).replace(/\s+/g, ' ').trim();
    expect(shown).toBe(continued!.content.replace(/\s+/g, ' ').trim());
    expect(await lastAnswer(page).getByTestId('stopped').count()).toBe(0);
    await screenshot(page, `features-continued-${name}`);
    await noOverflowNorViolations(page, 'a continued answer');
  });

  it('keeps earlier versions on regenerate and on edit; ‹ n / total › shows each, and the conversation follows the one shown', async () => {
    current = page;
    const id = sessionIdOf(page)!;
    const stored = async () => (await apiCall<{ messages: StoredMessage[] }>(server.url, ownerToken, 'GET', `/api/chat-sessions/${id}`)).messages;
    const position = (n: number, total: number) => t['chat.versionPosition'].replace('{n}', String(n)).replace('{total}', String(total));
    const [question, first] = await stored();

    // Regenerate: the continued answer stays as version 1.
    await lastAnswer(page).getByRole('button', { name: t['chat.regenerate'] }).click();
    await expect.poll(async () => (await stored()).map((m) => [m.role, m.status, m.id === first!.id])).toEqual([
      ['user', 'complete', false],
      ['assistant', 'complete', false],
    ]);
    const second = (await stored())[1]!;
    expect(second.versions).toEqual([first!.id, second.id]);
    await page.locator(`article[data-role=assistant][data-message-id="${second.id}"][data-status=complete]`).waitFor();
    const answerVersions = () => lastAnswer(page).getByTestId('versions');
    await answerVersions().getByText(position(2, 2), { exact: true }).waitFor();
    await noOverflowNorViolations(page, 'an answer with two versions');
    await answerVersions().getByRole('button', { name: t['chat.previousVersion'] }).click();
    await page.locator(`article[data-role=assistant][data-message-id="${first!.id}"]`).waitFor();
    await answerVersions().getByText(position(1, 2), { exact: true }).waitFor();
    expect((await stored())[1]?.id).toBe(first!.id);
    await answerVersions().getByRole('button', { name: t['chat.nextVersion'] }).click();
    await page.locator(`article[data-role=assistant][data-message-id="${second.id}"]`).waitFor();

    // Edit and resend: the question gets a second version, with an answer of its own.
    await page.locator('article[data-role=user]').last().getByRole('button', { name: t['chat.edit'] }).click();
    await page.locator('#edit-question').fill('an edited story');
    await page.getByRole('button', { name: t['chat.resend'] }).click();
    await expect.poll(async () => (await stored()).map((m) => [m.role, m.status, m.content.includes('an edited story')])).toEqual([
      ['user', 'complete', true],
      ['assistant', 'complete', true],
    ]);
    const questionVersions = () => page.locator('article[data-role=user]').last().getByTestId('versions');
    await questionVersions().getByText(position(2, 2), { exact: true }).waitFor();
    await page.locator('article[data-role=user] .bubble', { hasText: 'an edited story' }).waitFor();
    await screenshot(page, `features-versions-${name}`);
    // Back to the original question: its answer comes back with it, as it was shown (the second version of two).
    await questionVersions().getByRole('button', { name: t['chat.previousVersion'] }).click();
    await page.locator('article[data-role=user] .bubble', { hasText: question!.content }).waitFor();
    await page.locator(`article[data-role=assistant][data-message-id="${second.id}"]`).waitFor();
    await answerVersions().getByText(position(2, 2), { exact: true }).waitFor();
    expect((await stored()).map((m) => m.id)).toEqual([question!.id, second.id]);
    await noOverflowNorViolations(page, 'a question with two versions');
  });
});

describe('share links an admin opened to everyone', () => {
  it('open without signing in, never cached or indexed', async () => {
    const open = await startServer({ SHARE_LINKS_PUBLIC: 'true' });
    try {
      const admin = await apiLogin(open.url, 'admin', ADMIN_PASSWORD);
      const turn = await apiCall<{ chatId: string }>(open.url, admin, 'POST', '/api/chat/completions', { agentId: 'demo', messages: [{ role: 'user', content: 'an open question' }] });
      const link = await apiCall<{ path: string }>(open.url, admin, 'POST', `/api/chat-sessions/${turn.chatId}/shares`);
      const res = await fetch(`${open.url}${link.path}`);
      expect(res.headers.get('cache-control')).toBe('no-store');
      expect(res.headers.get('x-robots-tag')).toBe('noindex, nofollow');
      const context = await newContext(browser, open.url, { locale: 'zh-CN', width: 375 });
      contexts.push(context);
      const anonymous = await context.newPage();
      current = anonymous;
      await anonymous.goto(link.path);
      await anonymous.getByTestId('shared-title').getByText('an open question').waitFor();
      expect(anonymous.url()).toBe(`${open.url}${link.path}`);
      await screenshot(anonymous, 'features-shared-page-public');
      await noOverflowNorViolations(anonymous, 'the public shared page');
    } finally {
      await open.stop();
    }
  });
});
