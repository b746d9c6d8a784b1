import crypto from 'node:crypto';
import zlib from 'node:zlib';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { Browser, BrowserContext, Page } from 'playwright-core';
import { minimalPdf } from '../../server/src/modules/attachments/test-files.js';
import { ADMIN_PASSWORD, apiLogin, closeAll, createUser, horizontalOverflow, LAYOUTS, launchBrowser, newContext, screenshot, screenshotIfFailed, seriousViolations, signIn, simulatedAgent, startServer, type RunningServer } from './harness.js';

/**
 * Attachments (issue 18, item 1) in a real browser, in English and Chinese,
 * at 375 px and 1280 px: a file comes in by the paper-clip button, by
 * dropping it on the page and by pasting it; chips show each (one is
 * removed); the question goes out with the rest, the simulated upstream's
 * answer proves what reached it, and the conversation shows the image's
 * thumbnail and the file, after a reload too. axe finds nothing serious on
 * the composer with attachments; no page is wider than the window.
 */

const USER = 'attacher';
const PASSWORD = 'attacher-password-123';
const PDF_TEXT = 'Browser journey PDF text';

/** A solid-colour PNG of `width`×`height` (a real image for the browser to decode and thumbnail). */
function solidPng(width: number, height: number): Buffer {
  const chunk = (type: string, data: Buffer) => {
    const body = Buffer.concat([Buffer.from(type, 'latin1'), data]);
    const out = Buffer.alloc(12 + data.length);
    out.writeUInt32BE(data.length, 0);
    body.copy(out, 4);
    out.writeUInt32BE(zlib.crc32(body), 8 + data.length);
    return out;
  };
  const header = Buffer.alloc(13);
  header.writeUInt32BE(width, 0);
  header.writeUInt32BE(height, 4);
  header.set([8, 2, 0, 0, 0], 8);
  const row = Buffer.concat([Buffer.from([0]), Buffer.alloc(width * 3, Buffer.from([0x2f, 0x6f, 0xd0]))]);
  const pixels = zlib.deflateSync(Buffer.concat(Array.from({ length: height }, () => row)));
  return Buffer.concat([Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]), chunk('IHDR', header), chunk('IDAT', pixels), chunk('IEND', Buffer.alloc(0))]);
}

const PNG = solidPng(640, 400);
const PDF = minimalPdf(PDF_TEXT);

let server: RunningServer;
let browser: Browser;
const contexts: BrowserContext[] = [];
let current: Page | undefined;

/** Drops (or pastes) a file on an element, as the browser's own drag and drop and clipboard would hand it over. */
async function handOver(page: Page, selector: string, event: 'drop' | 'paste', file: { name: string; type: string; base64: string }): Promise<void> {
  await page.locator(selector).evaluate(
    (el, { event, file }) => {
      const bytes = Uint8Array.from(atob(file.base64), (c) => c.charCodeAt(0));
      const data = new DataTransfer();
      data.items.add(new File([bytes], file.name, { type: file.type }));
      if (event === 'drop') {
        el.dispatchEvent(new DragEvent('dragover', { dataTransfer: data, bubbles: true, cancelable: true }));
        el.dispatchEvent(new DragEvent('drop', { dataTransfer: data, bubbles: true, cancelable: true }));
      } else {
        el.dispatchEvent(new ClipboardEvent('paste', { clipboardData: data, bubbles: true, cancelable: true }));
      }
    },
    { event, file },
  );
}

beforeAll(async () => {
  server = await startServer();
  const admin = await apiLogin(server.url, 'admin', ADMIN_PASSWORD);
  await createUser(server.url, admin, USER, PASSWORD);
  await simulatedAgent(server.url, admin, { id: 'vision', name: 'Vision assistant', description: 'Takes images and files (simulated upstream)', model: 'vision-model', features: { supportsImages: true, supportsFiles: true } });
  browser = await launchBrowser();
});

afterEach((ctx) => screenshotIfFailed(ctx, current));

afterAll(() => closeAll(contexts, browser, server));

describe.each(LAYOUTS)('attachments in %s at %i px', (locale, width, t) => {
  const name = `${locale}-${width}`;
  let page: Page;

  beforeAll(async () => {
    const context = await newContext(browser, server.url, { locale, width });
    contexts.push(context);
    // The new chat opens on the agent that takes attachments.
    await context.addInitScript(() => localStorage.getItem('llmchat.agent') ?? localStorage.setItem('llmchat.agent', 'vision'));
    page = await context.newPage();
    current = page;
    await signIn(page, USER, PASSWORD);
  });

  it('takes files by the button, by drop and by paste, shows them as chips, and removes one', async () => {
    await page.getByTestId('attach-input').setInputFiles({ name: 'blue.png', mimeType: 'image/png', buffer: PNG });
    // Dropped on the conversation, not on the message box: the whole page takes files.
    await handOver(page, 'main', 'drop', { name: 'report.pdf', type: 'application/pdf', base64: PDF.toString('base64') });
    await handOver(page, '#chat-input', 'paste', { name: 'notes.txt', type: 'text/plain', base64: Buffer.from('pasted notes').toString('base64') });
    const chips = page.getByTestId('attachment-chip');
    await expect.poll(() => chips.count()).toBe(3);
    for (const file of ['blue.png', 'report.pdf', 'notes.txt']) await page.locator('[data-testid=attachment-chip][data-state=ready]', { hasText: file }).waitFor();
    await page.getByRole('button', { name: t['attach.remove'].replace('{name}', 'notes.txt') }).click();
    await expect.poll(() => chips.count()).toBe(2);
    await screenshot(page, `attachments-composer-${name}`);
    expect(await horizontalOverflow(page), 'composer with attachments').toEqual([]);
    expect(await seriousViolations(page), 'composer with attachments').toEqual([]);
  });

  it('sends them with the question: the provider got the image and the PDF\'s text, and the question shows a thumbnail and the file, after a reload too', async () => {
    await page.locator('#chat-input').fill('What do these show?');
    await page.keyboard.press('Enter');
    await page.waitForURL(/\/c\/[0-9a-f-]{36}$/);
    const answer = page.locator('article[data-role=assistant][data-status=complete]').last();
    await answer.waitFor();
    const text = await answer.innerText();
    expect(text).toContain(`image image/png ${PNG.length} bytes sha256 ${crypto.createHash('sha256').update(PNG).digest('hex')}`);
    expect(text).toContain(PDF_TEXT);
    expect(await page.getByTestId('attachment-chip').count()).toBe(0);
    for (const pass of ['sent', 'reloaded']) {
      if (pass === 'reloaded') await page.reload();
      const question = page.locator('article[data-role=user]').last();
      const thumbnail = question.getByTestId('attachment-thumbnail').locator('img');
      await thumbnail.waitFor();
      await expect.poll(() => thumbnail.evaluate((img: HTMLImageElement) => img.complete && img.naturalWidth)).toBeGreaterThan(0);
      // The browser made a thumbnail at upload: at most 320 px on its longer side, not the 640 px original.
      expect(await thumbnail.evaluate((img: HTMLImageElement) => img.naturalWidth)).toBeLessThanOrEqual(320);
      expect(await thumbnail.getAttribute('alt')).toBe(t['attach.imageN'].replace('{n}', '1'));
      await question.getByRole('button', { name: t['attach.download'].replace('{name}', 'report.pdf') }).waitFor();
      expect(await horizontalOverflow(page), `conversation with attachments (${pass})`).toEqual([]);
    }
    await screenshot(page, `attachments-conversation-${name}`);
    expect(await seriousViolations(page), 'conversation with attachments').toEqual([]);
  });

  it('lists them on the profile page with what they take of the quota, and deletes one; the removed chip\'s upload is gone', async () => {
    await page.goto('/profile');
    const section = page.getByTestId('attachments');
    await section.getByTestId('attachments-used').waitFor();
    const rows = (file: string) => section.locator('li', { hasText: file });
    await rows('report.pdf').first().waitFor();
    expect(await rows('report.pdf').count()).toBe(1);
    expect(await rows('blue.png').count()).toBeGreaterThanOrEqual(1);
    expect(await rows('notes.txt').count()).toBe(0);
    expect(await seriousViolations(page), 'profile with attachments').toEqual([]);
    expect(await horizontalOverflow(page), 'profile with attachments').toEqual([]);
    await section.scrollIntoViewIfNeeded();
    await screenshot(page, `attachments-profile-${name}`);
    await section.getByRole('button', { name: t['profile.deleteAttachment'].replace('{name}', 'report.pdf') }).click();
    await expect.poll(() => rows('report.pdf').count()).toBe(0);
  });

  it('offers no attachments to an agent that takes none', async () => {
    await page.evaluate(() => localStorage.setItem('llmchat.agent', 'demo'));
    await page.goto('/');
    await page.locator('#chat-input').waitFor();
    expect(await page.getByTestId('attach').count()).toBe(0);
    await page.evaluate(() => localStorage.setItem('llmchat.agent', 'vision'));
  });
});
