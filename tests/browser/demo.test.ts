import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { useBrowser, watchPage } from './harness.ts';

const env = useBrowser();

describe('demo page', () => {
  it('generates the reference greedy tokens with the built-in model', async () => {
    // The built-in model is a copy of the tiny-molm golden; the demo's default prompt is its input.
    const expected = JSON.parse(readFileSync(join(__dirname, '..', 'fixtures', 'golden', 'tiny-molm', 'expected.json'), 'utf8'));
    const page = await env.browser.newPage();
    const problems = watchPage(page);
    await page.goto(`${env.base}/demo/`);
    await page.getByLabel('New tokens').fill(String(expected.greedy_new_tokens.length));
    await page.getByRole('button', { name: 'Generate' }).click();
    await page.waitForFunction(() => /tokens ·/.test(document.getElementById('status')?.textContent ?? ''), null, { timeout: 60_000 });
    const text = await page.locator('#output').textContent();
    expect(text?.split(', ').map(Number)).toEqual(expected.greedy_new_tokens);
    expect(await page.locator('#status').textContent()).toMatch(/swiftshader/i);
    expect(problems).toEqual([]);
    await page.close();
  });

  it('says so when WebGPU is missing', async () => {
    const page = await env.browser.newPage();
    await page.addInitScript(() => Object.defineProperty(Navigator.prototype, 'gpu', { get: () => undefined }));
    await page.goto(`${env.base}/demo/`);
    await page.getByRole('button', { name: 'Generate' }).click();
    await expect.poll(() => page.locator('#status').textContent()).toMatch(/WebGPU is not available/);
    await page.close();
  });
});
