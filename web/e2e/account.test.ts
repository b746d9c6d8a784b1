import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { Browser, BrowserContext, Page } from 'playwright-core';
import { ADMIN_PASSWORD, apiCall, apiLogin, createUser, launchBrowser, newContext, screenshot, seriousViolations, signIn, startServer, type RunningServer } from './harness.js';

/**
 * Journeys around the account: sign-in failures, registration, the session
 * surviving reloads, sign-out, the admin console's guard, profile settings
 * (password, API keys, theme, language), the keyboard and a 375 px screen.
 * axe-core runs on every page in both themes.
 */

let server: RunningServer;
let browser: Browser;
let adminToken: string;
const contexts: BrowserContext[] = [];
let current: Page | undefined;

async function freshPage(options: Parameters<typeof newContext>[2] = {}): Promise<Page> {
  const context = await newContext(browser, server.url, options);
  contexts.push(context);
  current = await context.newPage();
  return current;
}

async function expectNoSeriousViolations(page: Page, where: string): Promise<void> {
  expect(await seriousViolations(page), where).toEqual([]);
}

beforeAll(async () => {
  // A low per-account cap, so the sign-in test can spend it with a few failures (the default is 100 an hour).
  server = await startServer({ OPEN_REGISTRATION: 'true', LOGIN_FAILURES_PER_ACCOUNT_PER_HOUR: '3' });
  adminToken = await apiLogin(server.url, 'admin', ADMIN_PASSWORD);
  await createUser(server.url, adminToken, 'bob', 'bob-password-123');
  await createUser(server.url, adminToken, 'carol', 'carol-password-123');
  await createUser(server.url, adminToken, 'locky', 'locky-password-123');
  browser = await launchBrowser();
});

afterEach(async (ctx) => {
  if (ctx.task.result?.state === 'fail' && current) await screenshot(current, `failed-${ctx.task.name.slice(0, 40).replace(/\W+/g, '-')}`).catch(() => undefined);
});

afterAll(async () => {
  for (const c of contexts) await c.close().catch(() => undefined);
  await browser?.close();
  await server?.stop();
});

describe('signing in', () => {
  it('says so clearly on a wrong password and on a delayed account, which an admin can clear', async () => {
    const page = await freshPage();
    await page.goto('/');
    await page.waitForURL('**/login');
    await expectNoSeriousViolations(page, 'sign-in page, light');
    await page.locator('#username').fill('bob');
    await page.locator('#password').fill('not-his-password');
    await page.locator('form button[type=submit]').click();
    await page.getByRole('alert').getByText('Wrong username or password.').waitFor();
    await screenshot(page, 'sign-in-bad-password');

    for (let i = 0; i < 3; i++) {
      const res = await fetch(`${server.url}/api/auth/login`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ username: 'locky', password: `wrong-${i}` }) });
      expect(res.status).toBe(401);
    }
    // The hourly cap is spent: even the right password is refused, with the wait the server sent.
    await page.locator('#username').fill('locky');
    await page.locator('#password').fill('locky-password-123');
    await page.locator('form button[type=submit]').click();
    await page.getByRole('alert').getByText(/^Wrong username or password, or too many failed attempts\. Try again in \d+ s\.$/).waitFor();
    await screenshot(page, 'sign-in-delayed');

    const locky = (await apiCall<{ items: { id: string }[] }>(server.url, adminToken, 'GET', '/api/admin/users?q=locky')).items[0];
    await apiCall(server.url, adminToken, 'DELETE', `/api/admin/users/${locky?.id ?? ''}/sign-in-delay`);
    await page.locator('form button[type=submit]').click();
    await page.locator('#chat-input').waitFor();
  });

  it('registers a new account where the server allows it', async () => {
    const page = await freshPage();
    await page.goto('/login');
    await page.getByRole('button', { name: 'No account yet? Create one' }).click();
    await page.getByRole('heading', { name: 'Create an account' }).waitFor();
    await page.locator('#username').fill('newcomer');
    await page.locator('#password').fill('newcomer-password-1');
    await page.locator('#displayName').fill('New Comer');
    await page.locator('form button[type=submit]').click();
    await page.locator('#chat-input').waitFor();
    await page.getByText('Profile · New Comer').waitFor();
  });

  it('stays signed in across a reload and is signed out for good after signing out', async () => {
    const page = await freshPage();
    await signIn(page, 'bob', 'bob-password-123');
    await page.reload();
    await page.locator('#chat-input').waitFor();
    expect(new URL(page.url()).pathname).toBe('/');
    await page.getByRole('button', { name: 'Sign out' }).click();
    await page.waitForURL('**/login');
    await page.reload();
    await page.locator('#username').waitFor();
    expect(new URL(page.url()).pathname).toBe('/login');
  });
});

describe('the admin console', () => {
  it('is closed to a non-admin in the page and on the server', async () => {
    const page = await freshPage();
    await signIn(page, 'bob', 'bob-password-123');
    expect(await page.getByRole('link', { name: 'Admin console' }).count()).toBe(0);
    await page.goto('/admin/users');
    await page.locator('[data-testid=admin-forbidden]').waitFor();
    expect(await page.locator('[data-testid=admin-users]').count()).toBe(0);
    await screenshot(page, 'admin-forbidden');
    const bobToken = await apiLogin(server.url, 'bob', 'bob-password-123');
    const res = await fetch(`${server.url}/api/admin/users`, { headers: { authorization: `Bearer ${bobToken}` } });
    expect(res.status).toBe(403);
  });

  it('lets an admin create an agent with a fallback, test it, and a user chat with it', async () => {
    const demo = await apiCall<{ endpoint: string }>(server.url, adminToken, 'GET', '/api/agents/demo');
    const mock = new URL(demo.endpoint).origin;
    const page = await freshPage();
    await signIn(page, 'admin', ADMIN_PASSWORD);
    await page.getByRole('link', { name: 'Admin console' }).click();
    await page.locator('[data-testid=admin-agents] tr[data-agent=demo]').waitFor();
    await expectNoSeriousViolations(page, 'admin agents, light');
    await page.getByRole('button', { name: 'New agent' }).click();
    await page.locator('#agent-id').fill('helper');
    await page.locator('#agent-name').fill('Helper bot');
    await page.locator('#agent-description').fill('Answers through a fallback');
    await page.locator('#agent-provider').selectOption('openai');
    // The primary always fails; the fallback answers.
    await page.locator('#agent-endpoint').fill(`${mock}/fault/status=503/v1/chat/completions`);
    await page.locator('#agent-apiKey').fill('primary-key');
    await page.locator('#agent-model').fill('mock-model');
    await page.locator('#agent-welcomeText').fill('Hi, I am the helper.');
    // It takes images (attachments), not files.
    await page.getByLabel('Takes images (attachments)').check();
    await page.getByRole('button', { name: 'Add fallback' }).click();
    await page.getByLabel('Fallback 1: Endpoint URL').fill(`${mock}/v1/chat/completions`);
    await page.getByLabel('Fallback 1: API key').fill('fallback-key');
    await page.getByLabel('Fallback 1: Model').fill('mock-model');
    await page.getByLabel('Fallback 1: Continue a broken-off answer').selectOption('restart');
    await expectNoSeriousViolations(page, 'agent form');
    await screenshot(page, 'admin-agent-form');
    await page.getByRole('button', { name: 'Save' }).click();
    const row = page.locator('[data-testid=admin-agents] tr[data-agent=helper]');
    await row.waitFor();
    expect(await row.locator('td').nth(2).innerText()).toBe('2');
    await row.getByRole('button', { name: 'Test connection' }).click();
    const checks = page.locator('[data-testid=check-helper] li');
    await expect.poll(() => checks.count()).toBe(2);
    expect(await checks.nth(0).getAttribute('class')).toBe('form-error');
    expect(await checks.nth(1).innerText()).toMatch(/OK in \d+ ms/);
    const stored = await apiCall<{ fallbacks: { endpoint: string; hasApiKey: boolean }[]; hasApiKey: boolean; features: Record<string, unknown> }>(server.url, adminToken, 'GET', '/api/agents/helper');
    expect(stored.hasApiKey).toBe(true);
    expect(stored.features).toMatchObject({ supportsImages: true, supportsFiles: false, supportsStream: true });
    expect(stored.fallbacks).toEqual([expect.objectContaining({ endpoint: `${mock}/v1/chat/completions`, hasApiKey: true, continuation: 'restart' })]);

    // Disable hides it from people; enable brings it back.
    await row.getByRole('button', { name: 'Disable' }).click();
    await row.getByRole('cell', { name: 'Disabled' }).waitFor();
    const bobToken = await apiLogin(server.url, 'bob', 'bob-password-123');
    expect((await apiCall<{ id: string }[]>(server.url, bobToken, 'GET', '/api/agents')).map((a) => a.id)).not.toContain('helper');
    await row.getByRole('button', { name: 'Enable' }).click();
    await row.getByRole('cell', { name: 'Enabled' }).waitFor();

    const user = await freshPage();
    await signIn(user, 'bob', 'bob-password-123');
    const card = user.locator('label.agent-card', { hasText: 'Helper bot' });
    await card.click();
    await user.locator('[data-testid=welcome]', { hasText: 'Hi, I am the helper.' }).waitFor();
    // An agent that takes images offers the paper clip, for images only.
    await user.getByRole('button', { name: 'Attach images' }).waitFor();
    await user.locator('#chat-input').fill('hello helper');
    await user.keyboard.press('Enter');
    await user.locator('article[data-role=assistant][data-status=complete]').getByText('Simulated answer to: hello helper').waitFor();
    await screenshot(user, 'user-chats-with-new-agent');
  });

  it('imports agents.json and reports a bad file', async () => {
    const page = await freshPage();
    await signIn(page, 'admin', ADMIN_PASSWORD);
    await page.goto('/admin/agents');
    const input = page.locator('[data-testid=import-agents]');
    await input.setInputFiles({ name: 'agents.json', mimeType: 'application/json', buffer: Buffer.from(JSON.stringify({ agents: [{ id: 'imported', name: 'Imported agent', provider: 'openai', endpoint: 'https://llm.example.com/v1/chat/completions', model: 'm' }] })) });
    await page.getByRole('status').getByText('Imported 1 agents (1 new, 0 updated).').waitFor();
    await page.locator('[data-testid=admin-agents] tr[data-agent=imported]').waitFor();
    await input.setInputFiles({ name: 'agents.json', mimeType: 'application/json', buffer: Buffer.from('{ not json') });
    await page.getByRole('alert').getByText('The file is not valid JSON.').waitFor();
    await input.setInputFiles({ name: 'agents.json', mimeType: 'application/json', buffer: Buffer.from(JSON.stringify({ agents: [{ id: 'bad' }] })) });
    await page.getByRole('alert').filter({ hasText: /AGENTS_CONFIG_INVALID|VALIDATION_FAILED/ }).waitFor();
    expect((await apiCall<{ id: string }[]>(server.url, adminToken, 'GET', '/api/agents?includeInactive=true')).map((a) => a.id)).not.toContain('bad');
  });

  it('manages users: search, create, reset password, change role, disable', async () => {
    const page = await freshPage();
    await signIn(page, 'admin', ADMIN_PASSWORD);
    await page.goto('/admin/users');
    await page.getByRole('button', { name: 'New user' }).click();
    await page.locator('#new-user-name').fill('dave');
    await page.locator('#new-user-password').fill('dave2024');
    await page.locator('#new-user-password-hint[data-level=weak]').getByText('Too close to the username.').waitFor();
    await page.locator('#new-user-password').fill('dave-password-123');
    await page.locator('#new-user-password-hint[data-level=strong]').waitFor();
    await page.getByRole('button', { name: 'Save' }).click();
    await page.locator('#user-search').fill('dav');
    const row = page.locator('[data-testid=admin-users] tr[data-user=dave]');
    await row.waitFor();
    await expect.poll(() => page.locator('[data-testid=admin-users] tbody tr').count()).toBe(1);
    await expectNoSeriousViolations(page, 'admin users');

    await row.getByRole('button', { name: 'Reset password' }).click();
    await page.locator('#reset-password').fill('dave-new-password-456');
    await page.locator('dialog[open]').getByRole('button', { name: 'Save' }).click();
    await page.getByRole('status').getByText('Password reset for dave.').waitFor();
    await apiLogin(server.url, 'dave', 'dave-new-password-456');

    await row.getByLabel('Role: dave').selectOption('admin');
    await expect.poll(async () => (await apiCall<{ items: { username: string; role: string }[] }>(server.url, adminToken, 'GET', '/api/admin/users?q=dave')).items[0]?.role).toBe('admin');

    await row.getByRole('button', { name: 'Disable' }).click();
    await row.getByRole('cell', { name: 'Disabled' }).waitFor();
    const login = await fetch(`${server.url}/api/auth/login`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ username: 'dave', password: 'dave-new-password-456' }) });
    expect(login.status).toBe(403);
    await row.getByRole('button', { name: 'Clear sign-in delay' }).click();
    await page.getByRole('status').getByText('Sign-in delays cleared for dave: they can sign in again from anywhere.').waitFor();
    await screenshot(page, 'admin-users');
  });

  it('sets a token quota in the users list; the user sees what is used and left in the profile, and is refused past it', async () => {
    await createUser(server.url, adminToken, 'quinn', 'quinn-password-123');
    const page = await freshPage();
    await signIn(page, 'admin', ADMIN_PASSWORD);
    await page.goto('/admin/users');
    await page.locator('#user-search').fill('quinn');
    const row = page.locator('[data-testid=admin-users] tr[data-user=quinn]');
    await row.waitFor();
    await row.getByRole('button', { name: 'Quota: quinn' }).click();
    await page.locator('#quota-daily').fill('1');
    await page.locator('dialog[open]').getByRole('button', { name: 'Save' }).click();
    await page.getByRole('status').getByText('Token quota of quinn saved.').waitFor();
    await row.getByTestId('user-tokens').getByText('0 of 1 used · 1 left').waitFor();
    await expectNoSeriousViolations(page, 'admin users with token usage');

    // Turns go through while the budget has room (one), then are refused: 429 QUOTA_EXCEEDED.
    const quinn = await apiLogin(server.url, 'quinn', 'quinn-password-123');
    const turn = () => fetch(`${server.url}/api/chat/completions`, { method: 'POST', headers: { authorization: `Bearer ${quinn}`, 'content-type': 'application/json' }, body: JSON.stringify({ agentId: 'demo', messages: [{ role: 'user', content: '[[mock chunks=2 interval=0]] count me' }] }) });
    await expect.poll(async () => (await turn()).status).toBe(429);
    const refused = await turn();
    expect(refused.status).toBe(429);
    expect(((await refused.json()) as { error: { code: string } }).error.code).toBe('QUOTA_EXCEEDED');

    const own = await freshPage();
    await signIn(own, 'quinn', 'quinn-password-123');
    await own.goto('/profile');
    const budget = own.getByTestId('token-budget');
    await budget.getByText(/of 1 used · 0 left/).waitFor();
    await budget.getByText('Unlimited').waitFor();
    await expectNoSeriousViolations(own, 'profile with token budget');
    await screenshot(own, 'profile-token-budget');

    // In the chat, the refusal says what it is, not an error code.
    await own.goto('/');
    await own.locator('#chat-input').fill('one more');
    await own.keyboard.press('Enter');
    await own.getByRole('alert').getByText('Your token budget is used up. Your profile shows when it starts again.').waitFor();
  });

  it('filters the audit log and exports it as CSV, in both themes without serious axe violations', async () => {
    const page = await freshPage();
    await signIn(page, 'admin', ADMIN_PASSWORD);
    await page.goto('/admin/audit');
    const table = page.locator('[data-testid=admin-audit]');
    await table.locator('tbody tr').first().waitFor();
    await page.locator('#audit-action').fill('agent.create');
    await page.getByRole('button', { name: 'Apply filters' }).click();
    await expect.poll(async () => [...new Set(await table.locator('tbody tr td:nth-child(3)').allInnerTexts())]).toEqual(['agent.create']);
    const download = page.waitForEvent('download');
    await page.locator('[data-testid=export-csv]').click();
    const file = await download;
    const csv = await new Promise<string>((resolve, reject) => {
      void file.createReadStream().then((stream) => {
        let text = '';
        stream.on('data', (d: Buffer) => (text += d.toString()));
        stream.on('end', () => resolve(text));
        stream.on('error', reject);
      });
    });
    const lines = csv.trim().split(/\r?\n/);
    expect(lines.length).toBeGreaterThan(1);
    expect(lines.slice(1).every((l) => l.includes('agent.create'))).toBe(true);
    await expectNoSeriousViolations(page, 'admin audit, light');
    await page.evaluate(() => localStorage.setItem('llmchat.theme', 'dark'));
    await page.reload();
    await table.locator('tbody tr').first().waitFor();
    expect(await page.evaluate(() => document.documentElement.dataset.theme)).toBe('dark');
    await expectNoSeriousViolations(page, 'admin audit, dark');
    await screenshot(page, 'admin-audit-dark');
  });
});

describe('usage and system status', () => {
  it('charts usage over a chosen range and shows system status, in both themes without serious axe violations', async () => {
    const page = await freshPage();
    await signIn(page, 'admin', ADMIN_PASSWORD);
    // One answer that fails, so the error rate has something to count.
    await page.locator('#chat-input').fill('[[mock status=500]] this one fails');
    await page.keyboard.press('Enter');
    await page.locator('article[data-role=assistant][data-status=error]').waitFor();
    await page.locator('[role=alert]', { hasText: 'The answer failed' }).waitFor();

    const report = await apiCall<{ totals: { answers: number; errors: number; conversations: number } }>(
      server.url,
      adminToken,
      'GET',
      `/api/admin/usage?from=${encodeURIComponent(new Date(Date.now() - 86_400_000).toISOString())}&to=${encodeURIComponent(new Date(Date.now() + 60_000).toISOString())}&bucket=hour`,
    );
    expect(report.totals.errors).toBeGreaterThanOrEqual(1);

    await page.goto('/admin/usage');
    await page.locator('#usage-range').selectOption('24h');
    await expect.poll(async () => Number(await page.locator('[data-testid=stat-answers] .stat-value').innerText())).toBe(report.totals.answers);
    expect(Number(await page.locator('[data-testid=stat-conversations] .stat-value').innerText())).toBe(report.totals.conversations);
    expect(await page.locator('[data-testid=stat-error-rate] .stat-value').innerText()).not.toBe('0.0 %');
    expect(await page.locator('figure.chart svg[role=img]').count()).toBe(4);
    expect(await page.locator('figure.chart polyline').count()).toBe(4);
    await expectNoSeriousViolations(page, 'usage, light');
    await screenshot(page, 'admin-usage');

    await page.getByRole('link', { name: 'System' }).click();
    const status = page.locator('[data-testid=system-status]');
    await status.waitFor();
    expect(await status.innerText()).toContain('0.1.0');
    expect(await page.locator('[data-testid=dep-database]').innerText()).toMatch(/^Healthy \(pglite, [\d.]+ ms\)$/);
    expect(await page.locator('[data-testid=dep-shared-state]').innerText()).toMatch(/^Healthy \(memory, [\d.]+ ms\)$/);
    await expectNoSeriousViolations(page, 'system, light');

    await page.evaluate(() => localStorage.setItem('llmchat.theme', 'dark'));
    await page.goto('/admin/usage');
    await page.locator('figure.chart svg[role=img]').first().waitFor();
    await expectNoSeriousViolations(page, 'usage, dark');
    await screenshot(page, 'admin-usage-dark');
    await page.goto('/admin/system');
    await page.locator('[data-testid=system-status]').waitFor();
    await expectNoSeriousViolations(page, 'system, dark');
    await page.evaluate(() => localStorage.removeItem('llmchat.theme'));
  });
});

describe('profile', () => {
  it('switches language and theme, everywhere and across reloads, with no serious axe violations in either theme', async () => {
    const page = await freshPage();
    await signIn(page, 'carol', 'carol-password-123');
    await page.getByRole('link', { name: /^Profile/ }).click();
    await page.getByRole('heading', { name: 'Profile', level: 1 }).waitFor();
    await expectNoSeriousViolations(page, 'profile, light, en');

    await page.locator('[data-testid=language-select]').selectOption('zh-CN');
    await page.getByRole('heading', { name: '个人设置', level: 1 }).waitFor();
    expect(await page.evaluate(() => document.documentElement.lang)).toBe('zh-CN');
    await page.getByRole('button', { name: '退出登录' }).waitFor();

    await page.locator('[data-testid=theme-select]').selectOption('dark');
    await expect.poll(() => page.evaluate(() => document.documentElement.dataset.theme)).toBe('dark');
    const background = await page.evaluate(() => getComputedStyle(document.body).backgroundColor);
    expect(background).toBe('rgb(15, 17, 21)');
    await screenshot(page, 'profile-zh-dark');
    await expectNoSeriousViolations(page, 'profile, dark, zh-CN');

    await page.reload();
    await page.getByRole('heading', { name: '个人设置', level: 1 }).waitFor();
    expect(await page.evaluate(() => document.documentElement.dataset.theme)).toBe('dark');

    // The chat page in Chinese and dark, then light.
    await page.getByRole('link', { name: '+ 新建对话' }).click();
    await page.getByRole('group', { name: '选择智能体' }).waitFor();
    await expectNoSeriousViolations(page, 'new chat, dark, zh-CN');
    await screenshot(page, 'chat-zh-dark');
    await page.evaluate(() => localStorage.setItem('llmchat.theme', 'system'));
    await page.reload();
    await page.getByRole('group', { name: '选择智能体' }).waitFor();
    expect(await page.evaluate(() => document.documentElement.dataset.theme)).toBe('light');
    await expectNoSeriousViolations(page, 'new chat, light (system), zh-CN');
    await page.evaluate(() => localStorage.setItem('llmchat.language', 'en'));
  });

  it('follows the system theme when set to system', async () => {
    const page = await freshPage({ colorScheme: 'dark' });
    await signIn(page, 'carol', 'carol-password-123');
    expect(await page.evaluate(() => document.documentElement.dataset.theme)).toBe('dark');
    await expectNoSeriousViolations(page, 'new chat, dark (system)');
    await page.goto('/login');
  });

  it('creates a personal API key shown once, which works on /v1, and revokes it', async () => {
    const page = await freshPage();
    await signIn(page, 'carol', 'carol-password-123');
    await page.goto('/profile');
    await page.locator('#key-name').fill('my script');
    await page.getByRole('button', { name: 'Create key' }).click();
    const shown = page.locator('[data-testid=new-key] code');
    await shown.waitFor();
    const key = await shown.innerText();
    const models = await fetch(`${server.url}/v1/models`, { headers: { authorization: `Bearer ${key}` } });
    expect(models.status).toBe(200);
    await screenshot(page, 'profile-api-key');
    await page.reload();
    await page.getByText('my script').waitFor();
    expect(await page.locator('[data-testid=new-key]').count()).toBe(0);
    expect(await page.content()).not.toContain(key);
    await page.getByRole('button', { name: 'Revoke my script' }).click();
    await page.getByText('Revoked').waitFor();
    const after = await fetch(`${server.url}/v1/models`, { headers: { authorization: `Bearer ${key}` } });
    expect(after.status).toBe(401);
  });

  it('changes the password: wrong current password refused, then the new one signs in', async () => {
    const page = await freshPage();
    await signIn(page, 'carol', 'carol-password-123');
    await page.goto('/profile');
    await page.locator('#current-password').fill('not-the-password');
    await page.locator('#new-password').fill('carol-new-password-456');
    await page.locator('#repeat-password').fill('carol-new-password-456');
    await page.getByRole('button', { name: 'Change password' }).click();
    await page.getByRole('alert').getByText('The current password is wrong.').waitFor();
    // A key made before the change dies with it: the box to revoke keys is ticked by default.
    const carolToken = await apiLogin(server.url, 'carol', 'carol-password-123');
    const made = await fetch(`${server.url}/api/auth/api-keys`, { method: 'POST', headers: { 'content-type': 'application/json', authorization: `Bearer ${carolToken}` }, body: JSON.stringify({ name: 'before the change' }) });
    const { key } = ((await made.json()) as { data: { key: string } }).data;
    expect(await page.locator('#revoke-keys').isChecked()).toBe(true);
    await page.locator('#current-password').fill('carol-password-123');
    await page.getByRole('button', { name: 'Change password' }).click();
    await page.getByRole('status').getByText('Password changed.').waitFor();
    expect((await fetch(`${server.url}/v1/models`, { headers: { authorization: `Bearer ${key}` } })).status).toBe(401);
    // The access token the page held before the change is revoked, and so is the one made above.
    expect((await fetch(`${server.url}/api/auth/profile`, { headers: { authorization: `Bearer ${carolToken}` } })).status).toBe(401);
    // The page carries on with the token the change handed back.
    await page.getByRole('button', { name: 'Create key' }).isVisible();
    await page.locator('#key-name').fill('after the change');
    await page.getByRole('button', { name: 'Create key' }).click();
    await page.locator('[data-testid=new-key] code').waitFor();
    const old = await fetch(`${server.url}/api/auth/login`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ username: 'carol', password: 'carol-password-123' }) });
    expect(old.status).toBe(401);
    await apiLogin(server.url, 'carol', 'carol-new-password-456');
  });
});

describe('keyboard and small screens', () => {
  it('has shortcuts for new chat, focus input, search, help and stop', async () => {
    const page = await freshPage();
    await signIn(page, 'bob', 'bob-password-123');
    await page.keyboard.press('Control+/');
    const help = page.locator('dialog[open]');
    await help.locator('[data-testid=shortcut-help]').waitFor();
    await screenshot(page, 'shortcuts-help');
    await expectNoSeriousViolations(page, 'shortcut help');
    await page.keyboard.press('Escape');
    await help.waitFor({ state: 'detached' });

    await page.keyboard.press('Control+k');
    await expect.poll(() => page.evaluate(() => document.activeElement?.id)).toBe('session-search');
    await page.keyboard.press('Shift+Escape');
    await expect.poll(() => page.evaluate(() => document.activeElement?.id)).toBe('chat-input');

    await page.keyboard.type('[[mock chunks=200 interval=50]] keyboard only');
    await page.keyboard.press('Enter');
    await page.waitForURL(/\/c\/[0-9a-f-]{36}$/);
    await page.locator('article[data-role=assistant][data-status=streaming]').getByText('Simulated answer').waitFor();
    await page.keyboard.press('Escape');
    await page.locator('article[data-role=assistant][data-status=stopped]').waitFor();

    await page.keyboard.press('Control+Shift+O');
    await page.waitForURL((url) => url.pathname === '/');
    await expect.poll(() => page.evaluate(() => document.activeElement?.id)).toBe('chat-input');
  });

  it('reaches the message box and sends with the keyboard alone', async () => {
    const page = await freshPage();
    await signIn(page, 'bob', 'bob-password-123');
    await page.locator('body').click({ position: { x: 1, y: 1 } });
    let reached = false;
    for (let i = 0; i < 40 && !reached; i++) {
      await page.keyboard.press('Tab');
      reached = (await page.evaluate(() => document.activeElement?.id)) === 'chat-input';
    }
    expect(reached).toBe(true);
    await page.keyboard.type('typed with keys');
    await page.keyboard.press('Enter');
    await page.locator('article[data-role=assistant][data-status=complete]').waitFor();
  });

  it('works at 375 px: the sidebar is a drawer, nothing overflows sideways', async () => {
    const page = await freshPage({ width: 375, height: 740 });
    await signIn(page, 'bob', 'bob-password-123');
    const sidebar = page.locator('#sidebar');
    expect(await sidebar.isVisible()).toBe(false);
    await page.locator('#chat-input').fill('small screen');
    await page.keyboard.press('Enter');
    await page.locator('article[data-role=assistant][data-status=complete]').waitFor();
    const overflow = await page.evaluate(() => document.documentElement.scrollWidth - document.documentElement.clientWidth);
    expect(overflow).toBeLessThanOrEqual(0);
    await expectNoSeriousViolations(page, 'chat at 375 px');
    await screenshot(page, 'mobile-chat');
    await page.getByRole('button', { name: 'Open menu' }).click();
    await sidebar.getByText('small screen').waitFor();
    expect(await sidebar.isVisible()).toBe(true);
    await screenshot(page, 'mobile-drawer');
    await expectNoSeriousViolations(page, 'drawer at 375 px');
    await sidebar.getByRole('link', { name: /^Profile/ }).click();
    await page.getByRole('heading', { name: 'Profile', level: 1 }).waitFor();
    expect(await sidebar.isVisible()).toBe(false);
    const profileOverflow = await page.evaluate(() => document.documentElement.scrollWidth - document.documentElement.clientWidth);
    expect(profileOverflow).toBeLessThanOrEqual(0);
  });
});

it('the API the journeys used kept answering', async () => {
  const agents = await apiCall<{ id: string }[]>(server.url, adminToken, 'GET', '/api/agents');
  expect(agents.map((a) => a.id)).toContain('demo');
});
