import { afterAll, beforeAll, expect, it } from 'vitest';
import type { Browser } from 'playwright-core';
import { ADMIN_PASSWORD, launchBrowser, newContext, screenshot, seriousViolations, signIn, startServer, type RunningServer } from './harness';

let server: RunningServer;
let browser: Browser;
beforeAll(async () => {
  server = await startServer();
  browser = await launchBrowser();
});
afterAll(async () => {
  await browser?.close();
  await server?.stop();
});

it('smoke', async () => {
  const context = await newContext(browser, server.url);
  const page = await context.newPage();
  const errors: string[] = [];
  page.on('console', (m) => { if (m.type() === 'error') errors.push(m.text()); });
  page.on('pageerror', (e) => errors.push(e.message));
  await signIn(page, 'admin', ADMIN_PASSWORD);
  await screenshot(page, 'smoke-1');
  await page.locator('#chat-input').fill('Hello there');
  await page.keyboard.press('Enter');
  await page.locator('article[data-role=assistant][data-status=complete]').waitFor({ timeout: 30000 });
  await screenshot(page, 'smoke-2');
  console.log(page.url(), errors, await seriousViolations(page));
  expect(errors).toEqual([]);
});
