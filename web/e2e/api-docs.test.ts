import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Browser } from 'playwright-core';
import { launchBrowser, newContext, startServer, type RunningServer } from './harness.js';

/**
 * The API reference at /docs in a real browser, under its strict CSP: Swagger
 * UI loads /docs/json and renders every route, and the browser reports no
 * CSP violation (an inline script or a foreign origin would be one).
 */

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

describe('the API reference', () => {
  it('renders at /docs with no Content-Security-Policy violation', async () => {
    const context = await newContext(browser, server.url);
    const page = await context.newPage();
    const violations: string[] = [];
    page.on('console', (message) => {
      if (/Content Security Policy/i.test(message.text())) violations.push(message.text());
    });
    await page.addInitScript(() => {
      document.addEventListener('securitypolicyviolation', (event) => {
        // Runs in the page: its console is how the test hears of the violation.
        // eslint-disable-next-line no-console
        console.error(`Content Security Policy violation: ${event.violatedDirective} ${event.blockedURI}`);
      });
    });
    const response = await page.goto(`${server.url}/docs/`);
    expect(response?.status()).toBe(200);
    await expect.poll(() => page.locator('.swagger-ui .info .title').textContent()).toContain('LLMChat API');
    await expect.poll(() => page.locator('.opblock').count()).toBeGreaterThan(50);
    expect(await page.locator('.opblock-summary-path[data-path="/api/chat/completions"]').count()).toBeGreaterThan(0);
    expect(violations).toEqual([]);
    await context.close();
  });
});
