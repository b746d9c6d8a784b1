import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { Browser, BrowserContext, Page } from 'playwright-core';
import { ADMIN_PASSWORD, apiCall, apiLogin, backends, createUser, launchBrowser, newContext, screenshot, seriousViolations, signIn, startProxy, startServer, type RunningServer } from './harness.js';

/**
 * Chat journeys in a real browser against the built app, the server process
 * and its simulated upstream. `[[mock …]]` directives in a question shape
 * the simulated answer (slow it down, give it reasoning, an interactive
 * node, or an exact text). Every wait is for a condition, never a duration.
 */

const USER = 'alice';
const PASSWORD = 'alice-password-123';
/**
 * The relay agent's primary breaks off after a few chunks of this answer; its
 * fallback (set to restart, not continue) then answers in full.
 */
const PRIMARY_ANSWER = 'Primary draft of the answer that breaks off before it is finished.';
const FALLBACK_ANSWER = 'Fallback answer, complete and whole.';
/** The continuing agent's primary breaks off inside this answer; its fallback continues it from the cut. */
const CONTINUED_ANSWER = 'One answer that breaks off on the primary and goes on from the same word on the fallback.';

interface StoredMessage {
  id: string;
  role: string;
  content: string;
  status: string;
  feedback: { rating: string; comment: string | null } | null;
}

let server: RunningServer;
let browser: Browser;
let context: BrowserContext;
let page: Page;
let userToken: string;
let pageErrors: string[] = [];
/** Screenshots of the PostgreSQL + Redis run get their own names. */
let suffix = '';
const shot = (p: Page, name: string) => screenshot(p, `${name}${suffix}`);

const lastAnswer = () => page.locator('article[data-role=assistant]').last();
const sessionIdOf = (p: Page) => /\/c\/([0-9a-f-]{36})/.exec(p.url())?.[1];

/** Records every text the last answer shows on its way, as the page renders it (read with answerTextsSeen). */
async function watchAnswerTexts(): Promise<void> {
  await page.evaluate(() => {
    const seen: string[] = [];
    (window as unknown as { answerTexts: string[] }).answerTexts = seen;
    new MutationObserver(() => {
      const answers = document.querySelectorAll('article[data-role=assistant]');
      const text = answers.item(answers.length - 1)?.querySelector('.markdown, .plain-text')?.textContent ?? '';
      if (text && seen.at(-1) !== text) seen.push(text);
    }).observe(document.body, { subtree: true, childList: true, characterData: true });
  });
}

const answerTextsSeen = () => page.evaluate(() => (window as unknown as { answerTexts: string[] }).answerTexts);

async function storedMessages(sessionId: string): Promise<StoredMessage[]> {
  return (await apiCall<{ messages: StoredMessage[] }>(server.url, userToken, 'GET', `/api/chat-sessions/${sessionId}?limit=500`)).messages;
}

async function ask(text: string): Promise<void> {
  await page.locator('#chat-input').fill(text);
  await page.keyboard.press('Enter');
}

async function waitForAnswer(status: 'complete' | 'stopped' | 'error' = 'complete'): Promise<void> {
  await page.locator(`article[data-role=assistant][data-status=${status}]`).last().waitFor();
  await page.locator('article[data-role=assistant][data-status=streaming]').waitFor({ state: 'detached' });
}

async function newChat(): Promise<void> {
  await page.locator('[data-testid=new-chat]').click();
  await page.locator('fieldset.agent-picker').waitFor();
}

describe.each(await backends())('chat journeys on %s', (backend) => {
  beforeAll(async () => {
    suffix = backend === 'embedded' ? '' : '-postgres';
    pageErrors = [];
    server = await startServer({}, backend);
    const admin = await apiLogin(server.url, 'admin', ADMIN_PASSWORD);
    await createUser(server.url, admin, USER, PASSWORD);
    userToken = await apiLogin(server.url, USER, PASSWORD);
    // A FastGPT agent on the same simulated upstream as the demo agent.
    const demo = await apiCall<{ endpoint: string }>(server.url, admin, 'GET', '/api/agents/demo');
    const mockBase = new URL(demo.endpoint).origin;
    await apiCall(server.url, admin, 'POST', '/api/agents', {
      id: 'flow',
      name: 'Flow assistant',
      description: 'A FastGPT workflow',
      provider: 'fastgpt',
      endpoint: `${mockBase}/api/v1/chat/completions`,
      apiKey: 'flow-key',
      appId: '0123456789abcdef01234567',
      features: { supportsChatId: true, supportsDetail: true },
      welcomeText: 'Welcome to the **flow** assistant.',
      capabilities: [],
      isActive: true,
    });
    // An OpenAI-style agent whose primary cuts the stream mid-answer (the mock drops the socket after 5 of 12
    // chunks, 400 ms apart, so the partial text is on screen for a while) and whose fallback answers in full.
    const fault = (spec: string) => `${mockBase}/fault/${spec}/v1/chat/completions`;
    await apiCall(server.url, admin, 'POST', '/api/agents', {
      id: 'relay',
      name: 'Relay assistant',
      description: 'Breaks off on its primary endpoint, finishes on its fallback',
      provider: 'openai',
      endpoint: fault(`answer=${encodeURIComponent(PRIMARY_ANSWER)},chunks=12,interval=400,cutAfter=5`),
      apiKey: 'relay-key',
      model: 'relay-primary',
      // Restart, not continue (issue 17's default for a mock host): this agent shows the `reset` journey.
      continuation: 'restart',
      fallbacks: [{ provider: 'openai', endpoint: fault(`answer=${encodeURIComponent(FALLBACK_ANSWER)},chunks=6,interval=150`), apiKey: 'relay-key', model: 'relay-fallback', continuation: 'restart' }],
      capabilities: [],
      isActive: true,
    });
    // The same cut, on an agent whose fallback continues the answer (the default; named to sort after the demo
    // agent, which new chats pick first): the mock continues a prefill
    // of its planned answer from where it ends, so both endpoints plan the same text.
    await apiCall(server.url, admin, 'POST', '/api/agents', {
      id: 'stitching',
      name: 'Stitching assistant',
      description: 'Breaks off on its primary endpoint, goes on from the cut on its fallback',
      provider: 'openai',
      endpoint: fault(`answer=${encodeURIComponent(CONTINUED_ANSWER)},chunks=12,interval=400,cutAfter=5`),
      apiKey: 'relay-key',
      model: 'continuing-primary',
      fallbacks: [{ provider: 'openai', endpoint: fault(`answer=${encodeURIComponent(CONTINUED_ANSWER)},chunks=12,interval=150`), apiKey: 'relay-key', model: 'continuing-fallback' }],
      capabilities: [],
      isActive: true,
    });
    browser = await launchBrowser();
    context = await newContext(browser, server.url);
    page = await context.newPage();
    page.on('pageerror', (e) => pageErrors.push(e.message));
    await signIn(page, USER, PASSWORD);
  });

  afterEach(async (ctx) => {
    // A failed journey leaves its screen behind for whoever reads the failure.
    if (ctx.task.result?.state === 'fail' && page) await shot(page, `failed-${ctx.task.name.slice(0, 40).replace(/\W+/g, '-')}`).catch(() => undefined);
  });

  afterAll(async () => {
    await browser?.close();
    await server?.stop();
  });

  it('streams an answer, keeps it, and meets axe on the chat page', async () => {
    await ask('[[mock chunks=30 interval=60]] Tell me about streams');
    // The answer is visibly streaming before it completes.
    await page.locator('article[data-role=assistant][data-status=streaming] .markdown, article[data-role=assistant][data-status=streaming] .plain-text').first().waitFor();
    await page.waitForURL(/\/c\/[0-9a-f-]{36}$/);
    await waitForAnswer();
    const sessionId = sessionIdOf(page)!;
    const stored = await storedMessages(sessionId);
    expect(stored.map((m) => m.role)).toEqual(['user', 'assistant']);
    expect(stored[0]?.content).toBe('[[mock chunks=30 interval=60]] Tell me about streams');
    expect(await lastAnswer().locator('.markdown').innerText()).toBe(stored[1]?.content);
    expect(stored[1]?.content).toContain('Simulated answer to: Tell me about streams');
    await page.locator('nav .session-list a', { hasText: 'Tell me about streams' }).waitFor();
    await shot(page, 'chat-streaming-answer');
    expect(await seriousViolations(page)).toEqual([]);
  });

  it('renders GFM tables and highlighted code with a copy button, and shows raw HTML as text', async () => {
    const answer = [
      '| name | score |',
      '|---|---|',
      '| ada | 10 |',
      '',
      '- one',
      '- two',
      '',
      '```js',
      'const answer = 42;',
      '```',
      '',
      'raw: <img src=x onerror="window.__pwned=1"> <script>window.__pwned=2</script>',
    ].join('\n');
    await newChat();
    await ask(`[[mock answer=${encodeURIComponent(answer)}]] format please`);
    await waitForAnswer();
    const message = lastAnswer();
    await message.locator('table').waitFor();
    expect(await message.locator('table td').allInnerTexts()).toEqual(['ada', '10']);
    expect(await message.locator('ul li').allInnerTexts()).toEqual(['one', 'two']);
    await message.locator('.code-block code.hljs .hljs-keyword').first().waitFor();
    await message.locator('.code-block button', { hasText: 'Copy' }).click();
    await message.locator('.code-block button', { hasText: 'Copied' }).waitFor();
    expect(await page.evaluate(() => navigator.clipboard.readText())).toBe('const answer = 42;');
    // The HTML is text: no element was made from it and no script ran.
    expect(await message.locator('img').count()).toBe(0);
    expect(await message.locator('script').count()).toBe(0);
    expect(await message.innerText()).toContain('<img src=x onerror="window.__pwned=1">');
    expect(await page.evaluate(() => (window as unknown as { __pwned?: number }).__pwned)).toBeUndefined();
    await shot(page, 'chat-markdown');
    expect(await seriousViolations(page)).toEqual([]);
  });

  it('stops an answer, regenerates it, edits and resends the last question', async () => {
    await newChat();
    await ask('[[mock chunks=50 interval=80]] a long story');
    await page.locator('article[data-role=assistant][data-status=streaming] .markdown, article[data-role=assistant][data-status=streaming] .plain-text').first().waitFor();
    await page.locator('[data-testid=stop]').click();
    await waitForAnswer('stopped');
    await lastAnswer().getByTestId('stopped').waitFor();
    const sessionId = sessionIdOf(page)!;
    const stopped = await storedMessages(sessionId);
    expect(stopped[1]?.status).toBe('stopped');

    await lastAnswer().locator('button', { hasText: 'Regenerate' }).click();
    await waitForAnswer();
    const regenerated = await storedMessages(sessionId);
    expect(regenerated.map((m) => m.role)).toEqual(['user', 'assistant']);
    expect(regenerated[1]?.id).not.toBe(stopped[1]?.id);
    expect(regenerated[1]?.status).toBe('complete');
    expect(await lastAnswer().locator('.markdown').innerText()).toBe(regenerated[1]?.content);

    await page.locator('article[data-role=user]').last().locator('button', { hasText: 'Edit' }).click();
    await page.locator('#edit-question').fill('a short story instead');
    await page.locator('button', { hasText: 'Send again' }).click();
    await waitForAnswer();
    const edited = await storedMessages(sessionId);
    expect(edited.map((m) => m.content.slice(0, 21))).toEqual(['a short story instead', expect.stringContaining('Simulated answer to:')]);
    expect(edited[1]?.content).toContain('Simulated answer to: a short story instead');
    expect(await page.locator('article[data-role=user]').last().innerText()).toContain('a short story instead');
    await shot(page, 'chat-stop-regenerate-edit');
  });

  it('takes thumbs up/down with a comment and copies a message', async () => {
    const sessionId = sessionIdOf(page)!;
    await lastAnswer().getByRole('button', { name: 'Bad answer' }).click();
    await lastAnswer().locator('input[placeholder^="What could be better"]').fill('too short');
    await lastAnswer().locator('.feedback-form button[type=submit]').click();
    await lastAnswer().getByText('Thanks for the feedback.').waitFor();
    await expect.poll(async () => (await storedMessages(sessionId))[1]?.feedback).toEqual({ rating: 'down', comment: 'too short' });
    expect(await lastAnswer().getByRole('button', { name: 'Bad answer' }).getAttribute('aria-pressed')).toBe('true');

    await lastAnswer().getByRole('button', { name: 'Copy message' }).click();
    const stored = await storedMessages(sessionId);
    await expect.poll(() => page.evaluate(() => navigator.clipboard.readText())).toBe(stored[1]?.content);
  });

  it('searches conversations with a highlighted snippet and opens the match', async () => {
    await newChat();
    await ask('the zebracorn question');
    await waitForAnswer();
    const target = sessionIdOf(page)!;
    await newChat();
    await page.keyboard.press('Control+k');
    await expect.poll(() => page.evaluate(() => document.activeElement?.id)).toBe('session-search');
    await page.keyboard.type('zebracorn');
    const hit = page.locator('[data-testid=search-results] a').first();
    await hit.waitFor();
    expect(await hit.locator('mark').first().innerText()).toMatch(/zebracorn/i);
    await shot(page, 'chat-search');
    await hit.click();
    await page.waitForURL(`**/c/${target}`);
    await page.locator('article[data-role=user]', { hasText: 'the zebracorn question' }).waitFor();
  });

  it('renames, archives with undo, and deletes with confirmation', async () => {
    const sessionId = sessionIdOf(page)!;
    await page.locator('#session-search').fill('');
    const row = () => page.locator('nav .session-list li', { has: page.locator(`a[href="/c/${sessionId}"]`) });
    await row().getByRole('button', { name: /Actions for/ }).click();
    await row().getByRole('button', { name: 'Rename' }).click();
    await page.locator(`#rename-${sessionId}`).fill('Zebracorn notes');
    await page.keyboard.press('Enter');
    await row().getByText('Zebracorn notes').waitFor();
    await expect.poll(async () => (await apiCall<{ title: string }>(server.url, userToken, 'GET', `/api/chat-sessions/${sessionId}`)).title).toBe('Zebracorn notes');

    await row().getByRole('button', { name: /Actions for/ }).click();
    await row().getByRole('button', { name: 'Archive' }).click();
    await page.locator('.toast', { hasText: 'Archived' }).getByRole('button', { name: 'Undo' }).click();
    await row().waitFor();
    await expect.poll(async () => (await apiCall<{ archived: boolean }>(server.url, userToken, 'GET', `/api/chat-sessions/${sessionId}`)).archived).toBe(false);

    await row().getByRole('button', { name: /Actions for/ }).click();
    await row().getByRole('button', { name: 'Delete' }).click();
    const dialog = page.locator('dialog[open]');
    await dialog.getByText('Delete “Zebracorn notes”?').waitFor();
    await shot(page, 'chat-delete-confirmation');
    expect(await seriousViolations(page)).toEqual([]);
    await dialog.getByRole('button', { name: 'Delete' }).click();
    await row().waitFor({ state: 'detached' });
    await page.waitForURL((url) => url.pathname === '/');
    const res = await fetch(`${server.url}/api/chat-sessions/${sessionId}`, { headers: { authorization: `Bearer ${userToken}` } });
    expect(res.status).toBe(404);
  });

  it('keeps streaming across a reload mid-answer, with no text lost or repeated', async () => {
    await newChat();
    await ask('[[mock chunks=40 interval=100]] survive a reload');
    await page.waitForURL(/\/c\/[0-9a-f-]{36}$/);
    const sessionId = sessionIdOf(page)!;
    await page.locator('article[data-role=assistant][data-status=streaming]').getByText('Simulated answer').waitFor();
    await page.reload();
    // After the reload the answer is still being followed, then completes.
    await page.locator('article[data-role=assistant]').first().waitFor();
    await waitForAnswer();
    const stored = await storedMessages(sessionId);
    expect(stored[1]?.status).toBe('complete');
    const shown = await lastAnswer().locator('.markdown').innerText();
    expect(shown).toBe(stored[1]?.content);
    expect(shown.split('Simulated answer to:').length).toBe(2);
    await shot(page, 'chat-after-reload');
  });

  it('reconnects on its own after the connection drops, with no text lost or repeated', async () => {
    // This journey goes through a proxy that can cut the connection mid-answer.
    const proxy = await startProxy(server.url);
    const dropContext = await newContext(browser, proxy.url);
    const dropPage = await dropContext.newPage();
    try {
      await signIn(dropPage, USER, PASSWORD);
      await dropPage.locator('#chat-input').fill('[[mock chunks=40 interval=100]] survive a drop');
      await dropPage.keyboard.press('Enter');
      await dropPage.waitForURL(/\/c\/[0-9a-f-]{36}$/);
      const sessionId = sessionIdOf(dropPage)!;
      const streaming = dropPage.locator('article[data-role=assistant][data-status=streaming]');
      await streaming.getByText('Simulated answer').waitFor();
      expect(proxy.dropAll()).toBeGreaterThan(0);
      await dropPage.locator('article[data-role=assistant][data-status=complete]').waitFor();
      const stored = await storedMessages(sessionId);
      const shown = await dropPage.locator('article[data-role=assistant]').last().locator('.markdown').innerText();
      expect(shown).toBe(stored[1]?.content);
      expect(shown.split('Simulated answer to:').length).toBe(2);
      await shot(dropPage, 'chat-after-drop');
    } finally {
      await dropContext.close();
      await proxy.close();
    }
  });

  it('drops the partial text when the answer restarts on the fallback (reset), and keeps only the fallback’s answer after a reload', async () => {
    await newChat();
    await page.locator('label.agent-card', { hasText: 'Relay assistant' }).click();
    await watchAnswerTexts();
    await ask('tell me something that survives a failover');
    await page.waitForURL(/\/c\/[0-9a-f-]{36}$/);
    const sessionId = sessionIdOf(page)!;
    // The primary's first chunks are on screen while it streams…
    await page.locator('article[data-role=assistant][data-status=streaming]').getByText('Primary draft').waitFor();
    // …then it breaks off, the server sends `reset`, and the fallback's answer replaces that text.
    await waitForAnswer();
    expect(await lastAnswer().locator('.markdown').innerText()).toBe(FALLBACK_ANSWER);
    expect(await lastAnswer().innerText()).not.toContain('Primary');
    const texts = await answerTextsSeen();
    // First parts of the primary's answer, then from the first text that is not one, only parts of the fallback's:
    // nothing of the primary's text was left in front of it.
    const firstFallback = texts.findIndex((t) => !PRIMARY_ANSWER.startsWith(t));
    expect(firstFallback, JSON.stringify(texts)).toBeGreaterThan(0);
    expect(texts.slice(firstFallback).every((t) => FALLBACK_ANSWER.startsWith(t)), JSON.stringify(texts)).toBe(true);
    expect(texts.at(-1)).toBe(FALLBACK_ANSWER);
    const stored = await storedMessages(sessionId);
    expect(stored.map((m) => [m.role, m.status])).toEqual([
      ['user', 'complete'],
      ['assistant', 'complete'],
    ]);
    expect(stored[1]?.content).toBe(FALLBACK_ANSWER);
    await shot(page, 'chat-reset-fallback');

    // After a reload the stored answer is the same one.
    await page.reload();
    await page.locator('article[data-role=assistant][data-status=complete]').last().waitFor();
    expect(await lastAnswer().locator('.markdown').innerText()).toBe(FALLBACK_ANSWER);
    expect(await lastAnswer().innerText()).not.toContain('Primary');
  });

  it('keeps the partial text when the answer continues on the fallback: the text only ever grows, and the stored answer is whole', async () => {
    await newChat();
    await page.locator('label.agent-card', { hasText: 'Stitching assistant' }).click();
    await watchAnswerTexts();
    await ask('tell me something that goes on after a cut');
    await page.waitForURL(/\/c\/[0-9a-f-]{36}$/);
    const sessionId = sessionIdOf(page)!;
    await page.locator('article[data-role=assistant][data-status=streaming]').getByText('breaks off').waitFor();
    await waitForAnswer();
    expect(await lastAnswer().locator('.markdown').innerText()).toBe(CONTINUED_ANSWER);
    const texts = await answerTextsSeen();
    // Every text on the way is a start of the one answer, each at least as long as the one before: nothing was taken back.
    expect(texts.every((t) => CONTINUED_ANSWER.startsWith(t)), JSON.stringify(texts)).toBe(true);
    expect(texts.every((t, i) => i === 0 || t.length >= (texts[i - 1]?.length ?? 0)), JSON.stringify(texts)).toBe(true);
    const stored = await storedMessages(sessionId);
    expect(stored.map((m) => [m.role, m.status, m.content])).toEqual([
      ['user', 'complete', 'tell me something that goes on after a cut'],
      ['assistant', 'complete', CONTINUED_ANSWER],
    ]);
    await shot(page, 'chat-continued-fallback');
  });

  it('shows the agent picker with welcome text, reasoning, flow status and a FastGPT select node', async () => {
    await newChat();
    const card = page.locator('label.agent-card', { hasText: 'Flow assistant' });
    await expect(card.innerText()).resolves.toContain('Provider: fastgpt');
    await card.click();
    await page.locator('[data-testid=welcome]', { hasText: 'Welcome to the flow assistant.' }).waitFor();
    await shot(page, 'chat-agent-picker');
    await ask('[[mock interactive=select reasoning=3 chunks=8 interval=150]] choose one');
    await page.locator('details.reasoning summary', { hasText: 'Reasoning' }).waitFor();
    await lastAnswer().locator('.flow-status', { hasText: 'running' }).waitFor();
    await waitForAnswer();
    const select = lastAnswer().locator('[data-testid=interactive-select]');
    await select.waitFor();
    await shot(page, 'chat-interactive-select');
    await select.getByRole('button', { name: 'B' }).click();
    await page.locator('article[data-role=user]', { hasText: /^B/ }).waitFor();
    await waitForAnswer();
    expect(await lastAnswer().innerText()).toContain('Simulated answer to: B');
  });

  it('answers a FastGPT form node with the values as JSON', async () => {
    await newChat();
    await page.locator('label.agent-card', { hasText: 'Flow assistant' }).click();
    await ask('[[mock interactive=form chunks=4 interval=50]] fill it');
    await waitForAnswer();
    const form = lastAnswer().locator('[data-testid=interactive-form]');
    await form.waitFor();
    await form.getByLabel('Name *').fill('Ada');
    await form.getByLabel('Company').fill('Engines Ltd');
    await shot(page, 'chat-interactive-form');
    await form.getByRole('button', { name: 'Submit' }).click();
    await page.locator('article[data-role=user] .bubble', { hasText: '{"name":"Ada","company":"Engines Ltd"}' }).waitFor();
    await waitForAnswer();
    expect(await lastAnswer().innerText()).toContain('Simulated answer to: {"name":"Ada","company":"Engines Ltd"}');
  });

  it('keeps a 2,000-message session virtualized: every message loaded, few in the DOM', async () => {
    // 1,000 turns = 2,000 messages, made through the API in one session.
    const first = await apiCall<{ chatId: string }>(server.url, userToken, 'POST', '/api/chat/completions', { agentId: 'demo', messages: [{ role: 'user', content: '[[mock chunks=1 interval=0]] message 0' }] });
    const sessionId = first.chatId;
    for (let batch = 1; batch < 1000; batch += 8) {
      await Promise.all(
        Array.from({ length: Math.min(8, 1000 - batch) }, (_, i) =>
          apiCall(server.url, userToken, 'POST', '/api/chat/completions', { agentId: 'demo', chatId: sessionId, messages: [{ role: 'user', content: `[[mock chunks=1 interval=0]] message ${batch + i}` }] }),
        ),
      );
    }
    await page.goto(`/c/${sessionId}`);
    const canvas = page.locator('[role=log]');
    await canvas.waitFor();
    while (await page.locator('.load-older button').count()) {
      const before = await canvas.getAttribute('data-count');
      await page.locator('.load-older button').click();
      await expect.poll(() => canvas.getAttribute('data-count')).not.toBe(before);
    }
    expect(await canvas.getAttribute('data-count')).toBe('2000');
    expect(await page.locator('.message-row').count()).toBeLessThan(60);
    await page.locator('.message-scroll').evaluate((el) => (el.scrollTop = 0));
    await page.locator('article[data-role=user] .bubble', { hasText: /message 0$/ }).waitFor();
    expect(await page.locator('.message-row').count()).toBeLessThan(60);
    await shot(page, 'chat-2000-messages');
  });

  it('raised no uncaught errors in the page', () => {
    expect(pageErrors).toEqual([]);
  });
});
