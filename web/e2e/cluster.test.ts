import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Browser } from 'playwright-core';
import { ADMIN_PASSWORD, apiCall, apiLogin, backends, createUser, launchBrowser, newContext, screenshot, servicesFor, signIn, startProxy, startServer, type RunningServer, type Services } from './harness.js';

/**
 * Two instances on one PostgreSQL and one Redis, behind a proxy standing in
 * for the load balancer. An answer starts on instance A; the connection
 * drops and the load balancer sends the reconnect to instance B, which
 * replays the missed events from the shared buffer and follows the rest.
 * Only where PostgreSQL and Redis answer (always in CI).
 */
const hasServices = (await backends()).includes('postgres+redis');

describe.skipIf(!hasServices)('two instances behind a load balancer', () => {
  let services: Services;
  let a: RunningServer;
  let b: RunningServer;
  let browser: Browser;

  beforeAll(async () => {
    services = await servicesFor();
    a = await startServer({}, 'postgres+redis', services);
    b = await startServer({}, 'postgres+redis', services);
    browser = await launchBrowser();
  });
  afterAll(async () => {
    await browser?.close();
    await a?.stop();
    await b?.stop();
    await services?.dispose();
  });

  it('a dropped answer reconnects through another instance, with no text lost or repeated', async () => {
    const admin = await apiLogin(a.url, 'admin', ADMIN_PASSWORD);
    await createUser(a.url, admin, 'erin', 'erin-password-123');
    const proxy = await startProxy(a.url);
    const context = await newContext(browser, proxy.url);
    try {
      const page = await context.newPage();
      await signIn(page, 'erin', 'erin-password-123');
      await page.locator('#chat-input').fill('[[mock chunks=40 interval=100]] across instances');
      await page.keyboard.press('Enter');
      await page.waitForURL(/\/c\/[0-9a-f-]{36}$/);
      const sessionId = /\/c\/([0-9a-f-]{36})/.exec(page.url())![1]!;
      await page.locator('article[data-role=assistant][data-status=streaming]').getByText('Simulated answer').waitFor();
      proxy.retarget(b.url);
      expect(proxy.dropAll()).toBeGreaterThan(0);
      await page.locator('article[data-role=assistant][data-status=complete]').waitFor();
      // The rest of the answer came through instance B.
      expect(proxy.connectionsTo(b.url)).toBeGreaterThan(0);
      const token = await apiLogin(b.url, 'erin', 'erin-password-123');
      const stored = (await apiCall<{ messages: { content: string; status: string }[] }>(b.url, token, 'GET', `/api/chat-sessions/${sessionId}`)).messages;
      expect(stored[1]?.status).toBe('complete');
      const shown = await page.locator('article[data-role=assistant]').last().locator('.markdown').innerText();
      expect(shown).toBe(stored[1]?.content);
      expect(shown.split('Simulated answer to:').length).toBe(2);
      await screenshot(page, 'cluster-reconnect-other-instance');
    } finally {
      await context.close();
      await proxy.close();
    }
  });
});
