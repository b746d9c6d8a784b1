import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Browser, Page } from 'playwright-core';
import { ADMIN_PASSWORD, apiCall, apiLogin, horizontalOverflow, launchBrowser, newContext, screenshot, signIn, startServer, type RunningServer } from './harness.js';

/**
 * Issue 18's layout defect and its guard: no page is wider than the window,
 * at a phone's 375 px and a laptop's 1280 px, in both languages. The new-chat
 * page once was (the agent card's hidden radio took the window's width), and
 * the message box's placeholder wrapped onto a cut-off second line on phones.
 */

let server: RunningServer;
let browser: Browser;
let sessionPath: string;

/** A conversation with a long code line and a wide table: both scroll inside their own block, never the page. */
const WIDE_ANSWER = ['```text', `${'wide-line-'.repeat(40)}end`, '```', '', `| ${Array.from({ length: 12 }, (_, i) => `column ${i}`).join(' | ')} |`, `|${'---|'.repeat(12)}`, `| ${Array.from({ length: 12 }, (_, i) => `value ${i}`).join(' | ')} |`].join('\n');

/** Every page a signed-in admin can open (the sign-in page is checked signed out). */
const PAGES = ['/', () => sessionPath, '/profile', '/admin/agents', '/admin/users', '/admin/usage', '/admin/system', '/admin/audit', '/no-such-page'] as const;

beforeAll(async () => {
  server = await startServer();
  const admin = await apiLogin(server.url, 'admin', ADMIN_PASSWORD);
  const turn = await apiCall<{ chatId: string }>(server.url, admin, 'POST', '/api/chat/completions', { agentId: 'demo', messages: [{ role: 'user', content: `[[mock answer=${encodeURIComponent(WIDE_ANSWER)}]] wide things` }] });
  sessionPath = `/c/${turn.chatId}`;
  browser = await launchBrowser();
});

afterAll(async () => {
  await browser?.close();
  await server?.stop();
});

/** Waits until the page shows its main content (not the loading placeholder). */
async function settled(page: Page): Promise<void> {
  await page.locator('main#main').first().waitFor();
  await page.locator('.page-loading').waitFor({ state: 'detached' });
}

describe.each([
  ['en-US', 'English'],
  ['zh-CN', 'Chinese'],
])('no page is wider than the window (%s)', (locale) => {
  it.each([375, 1280])('at %i px', async (width) => {
    const context = await newContext(browser, server.url, { width, locale });
    const page = await context.newPage();
    try {
      await page.goto('/login');
      await page.locator('#username').waitFor();
      expect(await horizontalOverflow(page), 'sign-in page').toEqual([]);
      await signIn(page, 'admin', ADMIN_PASSWORD);
      for (const entry of PAGES) {
        const path = typeof entry === 'function' ? entry() : entry;
        await page.goto(path);
        await settled(page);
        if (path === sessionPath) await page.locator('article[data-role=assistant] table').waitFor();
        expect(await horizontalOverflow(page), `${path} at ${width} px (${locale})`).toEqual([]);
        if (path === '/') {
          await page.locator('fieldset.agent-picker').waitFor();
          // The placeholder fits on one line: the empty box needs no more height than it has.
          const box = await page.locator('#chat-input').evaluate((el) => ({ content: el.scrollHeight, shown: el.clientHeight }));
          expect(box.content, 'the empty message box holds its placeholder without cutting it').toBeLessThanOrEqual(box.shown);
          await screenshot(page, `layout-new-chat-${width}-${locale}`);
        }
        if (path === sessionPath) {
          // The long line scrolls inside its code block.
          const pre = await page.locator('.code-block pre').first().evaluate((el) => ({ content: el.scrollWidth, shown: el.clientWidth }));
          expect(pre.content).toBeGreaterThan(pre.shown);
          await screenshot(page, `layout-wide-answer-${width}-${locale}`);
        }
      }
    } finally {
      await context.close();
    }
  });
});
