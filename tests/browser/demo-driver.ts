import type { Page } from 'playwright-core';
import { expect } from 'vitest';

/**
 * Sends a message in the demo (Enter in the message box) and waits for the reply's summary
 * line; fails at once, with the page's own message, when the demo reports an error instead.
 */
export async function sendMessage(page: Page, text: string): Promise<string> {
  const replies = page.locator('.message.assistant');
  const before = await replies.count();
  const box = page.getByRole('textbox', { name: 'Message' });
  await box.fill(text);
  await box.press('Enter');
  await page.waitForFunction(
    (n) => {
      const meta = document.querySelectorAll('.message.assistant .meta')[n];
      return (meta?.textContent ?? '') !== '' || document.getElementById('status')?.classList.contains('error');
    },
    before,
    { timeout: 120_000 },
  );
  const status = page.locator('#status');
  expect(await status.evaluate((s) => s.classList.contains('error')), (await status.textContent()) ?? '').toBe(false);
  expect(await replies.nth(before).locator('.meta').textContent()).toMatch(/tokens \(/);
  return (await replies.nth(before).locator('.text').textContent()) ?? '';
}
